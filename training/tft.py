"""Temporal Fusion Transformer (Lim et al., 2021) as a forecast family, from builtin Keras
layers only, so ``model.keras`` loads in the converter's child and every op is a LiteRT builtin.

The pieces, in the paper's order:

* **Variable selection** over the past inputs: each variable gets its own linear embedding
  (a 1×1 ``DepthwiseConv1D`` with ``depth_multiplier=hidden``: channel j → hidden channels of
  x_j·w_j + b_j), a GRN over the flattened embeddings gives per-step softmax weights over the
  F variables (layer ``variable_selection``), and the step's input is the weighted sum of the
  variables after a GRN. Deviation: the per-variable GRN shares its weights across variables
  (the embeddings are per variable); the weighted sum is two frozen 0/1 matrices (exact in
  int8).
* **Locality**: an LSTM encoder over the L past steps, an LSTM decoder over the H forecast steps
  started from the encoder's state, gated skip + layer norm over both. Without known-future
  inputs the decoder is fed a learned embedding per forecast step; with ``known_future``
  (calendar features, one (L + H, F + K) input: ``edge_runtime/calendar.py``) it is fed their
  own variable selection (layer ``future_variable_selection``).
* **Static covariate** (``static_column``, a constant tag): embedded, then four GRNs give the
  contexts c_s (conditions both variable selections), c_h and c_c (the encoder's initial
  state) and c_e (conditions the static enrichment); it is not among the past inputs.
* **Interpretable multi-head attention**: the H decoder steps attend over all L + H steps; each
  head has its own query and key projections, the value projection is shared, and the heads'
  softmax weights are averaged (layer ``tft_attention``) before they weight the values — so one
  (H, L + H) matrix says where the model looked. No causal mask: every decoder input is a
  function of the past window and learned constants, so no future observation can leak.
* **Position-wise GRN**, gated skip over the attention block, and the repo's head: a delta
  from the last observed value (persistence at initialisation) and, with ``quantiles``,
  :func:`training.forecasters.quantile_head` (quantiles never cross). ``head="step"`` is the
  paper's output layer, one linear map shared by the H decoder steps (hidden·T·Q weights);
  ``head="flat"`` (the default, the head of the figures measured so far) reads all H steps'
  features for every output, hidden·H²·T·Q weights (hidden 16, 7 targets, 3 quantiles:
  9.5 M at H = 168, 174 M at H = 720).

Recurrent layers are unrolled by default, the route by which Keras 3 LSTMs convert to builtin
int8 (see ``training/forecasters.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
from keras import layers

from training.channels import WRAPPER_SUFFIX as CHANNEL_WRAPPER
from training.forecasters import _head, _pick_channels, _targets, _time_linear
from training.registry import register
from training.tft_args import ATTENTION_HEADS, HEADS, HIDDEN, check_tft_args

SELECTION_LAYER = "variable_selection"  # (N, L, F) softmax weights over the input variables
ATTENTION_LAYER = "tft_attention"  # (N, H, L + H) mean of the heads' attention weights
FUTURE_SELECTION_LAYER = f"future_{SELECTION_LAYER}"  # (N, H, K) over the known-future inputs
STATIC_LAYER = "static_embedding"  # present when the model has a static covariate


class _Names:
    """Unique layer names per builder call (readable graphs, stable names for side models)."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}

    def __call__(self, stem: str) -> str:
        self.count[stem] = self.count.get(stem, -1) + 1
        return f"{stem}_{self.count[stem]}"


def glu(x, units: int, name, dropout: float = 0.0):
    """Gated linear unit: sigmoid(W4 x + b4) ⊙ (W5 x + b5); the gate lets a block switch
    itself off (the paper's way of skipping what the data do not need)."""
    if dropout:
        x = layers.Dropout(dropout)(x)
    gate = layers.Dense(units, activation="sigmoid", name=name("glu_gate"))(x)
    value = layers.Dense(units, name=name("glu_value"))(x)
    return layers.Multiply()([gate, value])


def gate_add_norm(x, skip, units: int, name, dropout: float = 0.0):
    """LayerNorm(skip + GLU(x)): the gated residual connection around every TFT block."""
    return layers.LayerNormalization(name=name("norm"))(
        layers.Add()([skip, glu(x, units, name, dropout)]))


def grn(a, units: int, name, dropout: float = 0.0, out: int | None = None, context=None):
    """Gated residual network: LayerNorm(skip(a) + GLU(W1 ELU(W2 a + W3 c + b2) + b1)).
    ``out``: output width when it differs from the input's (the skip is then a linear
    projection); ``context``: a static context vector c (N, d), repeated over ``a``'s steps."""
    out = out or units
    skip = a if a.shape[-1] == out else layers.Dense(out, name=name("grn_skip"))(a)
    if context is None:
        hidden = layers.Dense(units, activation="elu", name=name("grn_in"))(a)
    else:
        c = layers.Dense(units, use_bias=False, name=name("grn_context"))(context)
        if len(a.shape) == 3:
            c = layers.RepeatVector(a.shape[1])(c)
        hidden = layers.Activation("elu")(layers.Add()(
            [layers.Dense(units, name=name("grn_in"))(a), c]))
    hidden = layers.Dense(units, name=name("grn_hidden"))(hidden)
    return gate_add_norm(hidden, skip, out, name, dropout)


def _frozen(units: int, matrix: np.ndarray, name: str):
    return layers.Dense(units, use_bias=False, trainable=False, name=name,
                        kernel_initializer=keras.initializers.Constant(matrix))


def variable_selection(inputs, window: int, features: int, hidden: int, name,
                       dropout: float = 0.0, context=None, stem: str = ""):
    """(N, L, F) → (N, L, hidden) selected input and the (N, L, F) selection weights.
    ``context``: the static context c_s, which conditions the weights (paper eq. 6);
    ``stem``: prefix of the fixed layer names (the decoder's selection is ``future_…``)."""
    embedded = layers.DepthwiseConv1D(1, depth_multiplier=hidden,
                                      name=f"{stem}variable_embedding")(
        inputs)  # (N, L, F·hidden): channel j·hidden + k is x_j·w_jk + b_jk
    weights = grn(embedded, hidden, name, dropout, out=features, context=context)
    weights = layers.Softmax(name=f"{stem}{SELECTION_LAYER}")(weights)
    per_var = layers.Reshape((window * features, hidden))(embedded)
    per_var = layers.Reshape((window, features * hidden))(grn(per_var, hidden, name, dropout))
    expand = np.kron(np.eye(features), np.ones((1, hidden))).astype(np.float32)  # (F, F·h)
    spread = _frozen(features * hidden, expand, f"{stem}selection_spread")(weights)
    weighted = layers.Multiply()([per_var, spread])
    total = np.kron(np.ones((features, 1)), np.eye(hidden)).astype(np.float32)  # (F·h, h)
    return _frozen(hidden, total, f"{stem}selection_sum")(weighted), weights


def _columns(x, features: int, keep: list[int], name: str, offset: float = 0.0):
    """(…, features) → (…, len(keep)) by a frozen 0/1 matrix (exact in int8), plus a frozen
    ``offset``."""
    pick = np.zeros((features, len(keep)), np.float32)
    pick[keep, np.arange(len(keep))] = 1.0
    if not offset:
        return _frozen(len(keep), pick, name)(x)
    return layers.Dense(len(keep), trainable=False, name=name,
                        kernel_initializer=keras.initializers.Constant(pick),
                        bias_initializer=keras.initializers.Constant(offset))(x)


def static_contexts(value, hidden: int, name, dropout: float = 0.0):
    """The static covariate (N, 1) → the paper's four context vectors (N, hidden) each:
    c_s (variable selection), c_e (enrichment), c_h and c_c (the LSTM's initial state). One
    static variable: its selection weight is 1, so the static VSN is its embedding's GRN."""
    embedded = grn(layers.Dense(hidden, name="static_embedding")(value), hidden, name, dropout)
    return [grn(embedded, hidden, name, dropout) for _ in range(4)]


def _step_embedding(inputs, window: int, horizon: int, hidden: int):
    """(N, H, hidden) learned embedding per forecast step: a trainable Dense on a frozen
    constant one (builtin layers only; the decoder's input when no future is known)."""
    first = layers.Flatten()(layers.Cropping1D((0, window - 1))(inputs))
    one = layers.Dense(1, kernel_initializer="zeros", bias_initializer="ones",
                       trainable=False, name="step_one")(first)
    steps = layers.Dense(horizon * hidden, use_bias=False, name="step_embedding",
                         kernel_initializer=keras.initializers.RandomNormal(stddev=0.1))(one)
    return layers.Reshape((horizon, hidden))(steps)


def interpretable_attention(queries, keys, hidden: int, heads: int, name,
                            dropout: float = 0.0):
    """Heads with their own Q/K projections and one shared V; softmax weights averaged over
    heads (layer ``tft_attention``), then applied to V and projected back to ``hidden``."""
    d_head = max(hidden // heads, 1)
    scale = 1.0 / float(np.sqrt(d_head))
    value = layers.Dense(d_head, use_bias=False, name="attention_value")(keys)
    maps = []
    for h in range(heads):
        q = layers.Dense(d_head, use_bias=False, name=f"attention_query_{h}")(queries)
        k = layers.Dense(d_head, use_bias=False, name=f"attention_key_{h}")(keys)
        scores = layers.Rescaling(scale)(layers.Dot(axes=(2, 2))([q, k]))
        maps.append(layers.Softmax(axis=-1)(scores))
    weights = layers.Average(name=ATTENTION_LAYER)(maps) if heads > 1 else layers.Activation(
        "linear", name=ATTENTION_LAYER)(maps[0])
    if dropout:
        weights = layers.Dropout(dropout)(weights)
    context = layers.Dot(axes=(2, 1))([weights, value])  # (N, H, d_head)
    return layers.Dense(hidden, use_bias=False, name="attention_out")(context)


@register("forecast", "tft", small={"hidden": 8, "heads": 2})
def tft(window: int, features: int, horizon: int, targets: int,
        target_columns: list[int] | None = None, hidden: int = HIDDEN,
        heads: int = ATTENTION_HEADS,
        dropout: float = 0.0, unroll: bool = True, quantiles: list[float] | None = None,
        known_future: list[str] | None = None, static_column: int | None = None,
        head: str = HEADS[0], linear_skip: bool = False):
    """Temporal Fusion Transformer: variable selection, LSTM encoder–decoder, interpretable
    multi-head attention, gated residual blocks; last-value skip + delta head (``flat`` or
    per-``step``), optional non-crossing ``quantiles``, calendar ``known_future`` inputs and
    a static covariate. ``linear_skip``: a :func:`linear_skip_term` added to the forecast."""
    check_tft_args(hidden=hidden, heads=heads, head=head)
    cols = _targets(features, targets, target_columns)
    name = _Names()
    known = len(known_future or [])
    # with known-future inputs: one (L + H, F + K) input (edge_runtime/calendar.py)
    inputs = keras.Input((window + horizon, features + known) if known else (window, features))
    raw = layers.Cropping1D((0, horizon))(inputs) if known else inputs  # (N, L, F + K)
    contexts = [None] * 4
    past_cols = [j for j in range(features + known) if j != static_column]
    if static_column is not None:
        last = layers.Flatten()(layers.Cropping1D((window - 1, 0))(raw))
        # + 1: one series' static tag scales to exactly 0 in every window, and the int8
        # calibrator aborts (double free) on a tensor whose range is [0, 0]
        value = _columns(last, features + known, [static_column], "static_pick", offset=1.0)
        contexts = static_contexts(value, hidden, name, dropout)
    c_s, c_e, c_h, c_c = contexts
    past_in = raw if static_column is None else _columns(raw, features + known, past_cols,
                                                         "past_pick")
    past, _ = variable_selection(past_in, window, len(past_cols), hidden, name, dropout, c_s)
    enc_seq, h, c = layers.LSTM(hidden, return_sequences=True, return_state=True,
                                unroll=unroll, name="encoder")(
        past, initial_state=None if c_h is None else [c_h, c_c])
    if known:  # the decoder's input: the selected calendar features of the forecast steps
        ahead = _columns(layers.Cropping1D((window, 0))(inputs), features + known,
                         list(range(features, features + known)), "future_pick")
        future, _ = variable_selection(ahead, horizon, known, hidden, name, dropout, c_s,
                                       stem="future_")
    else:
        future = _step_embedding(raw, window, horizon, hidden)
    dec_seq = layers.LSTM(hidden, return_sequences=True, unroll=unroll, name="decoder")(
        future, initial_state=[h, c])
    enc = gate_add_norm(enc_seq, past, hidden, name, dropout)
    dec = gate_add_norm(dec_seq, future, hidden, name, dropout)
    temporal = layers.Concatenate(axis=1)([enc, dec])  # (N, L + H, hidden)
    enriched = grn(temporal, hidden, name, dropout, context=c_e)  # static enrichment
    enriched_dec = layers.Cropping1D((window, 0))(enriched)
    att = interpretable_attention(enriched_dec, enriched, hidden, heads, name, dropout)
    x = gate_add_norm(att, enriched_dec, hidden, name, dropout)
    x = grn(x, hidden, name, dropout)  # position-wise feed-forward
    x = gate_add_norm(x, dec, hidden, name)  # skip over the whole attention block
    features_out = layers.Flatten()(x) if head == "flat" else x
    skip = linear_skip_term(raw, features + known, horizon, cols) if linear_skip else None
    return keras.Model(inputs, _head(features_out, horizon, len(cols), raw, window, cols,
                                     quantiles, skip), name="tft")


def linear_skip_term(raw, columns: int, horizon: int, cols: list[int]):
    """(N, L, columns) past window → (N, H, T): the ``linear`` family's map over time, from
    each target's own L past values to its H future ones, shared by the targets. Not in the
    paper: the global linear residual of TiDE (Das et al., 2023), so the network learns what
    a linear forecast misses rather than the whole trajectory. Starts at zero (the model
    starts as persistence, like the delta head)."""
    return _time_linear(_pick_channels(raw, columns, cols), horizon, "linear_skip", "zeros")


# ------------------------------------------------------------------------ interpretability

IMPORTANCE_OUTPUT = "variable_importance"  # (N, F): a window's mean selection weight per tag


class Interpretation(NamedTuple):
    importance: np.ndarray  # (F,) mean selection weight per input variable, sums to 1
    attention: np.ndarray  # (H, L + H) mean over windows and heads, rows sum to 1
    windows: int
    future: np.ndarray | None = None  # (K,) decoder's mean weight per known-future input
    static: bool = False  # has a static covariate (one variable: its selection weight is 1)


def is_tft(model: keras.Model) -> bool:
    """A ``tft``, bare or inside a wrapper model (``model.norm``'s RevIN nests it). Not one
    run per channel (``model.channels: independent``): its selection is within each tag's
    own series (the tag against the calendar), so there is no weight per tag to show."""
    if model.name.endswith(CHANNEL_WRAPPER):
        return False
    return _is_bare(model) or _tft_child(model) is not None


def _is_bare(model: keras.Model) -> bool:
    return any(layer.name == SELECTION_LAYER for layer in model.layers)


def _tft_child(model: keras.Model) -> keras.Model | None:
    """The sub-model of ``model`` that is or holds the ``tft``, if any."""
    return next((layer for layer in model.layers
                 if isinstance(layer, keras.Model) and is_tft(layer)), None)


def _bare_tft(model: keras.Model) -> keras.Model:
    """The ``tft`` itself, wherever it sits in ``model`` (a ``tft`` by :func:`is_tft`)."""
    return model if _is_bare(model) else _bare_tft(_tft_child(model))


def _with_outputs(model: keras.Model, names: list[str]) -> keras.Model:
    """``model`` with the outputs of the ``tft``'s layers ``names`` after its first output.
    Where the ``tft`` is nested (RevIN around it), its inner layers are not reachable from
    the outer inputs, so the outer graph is re-traced (same layers, same weights) with the
    nested model replaced by one that also returns them."""
    if _is_bare(model):
        return keras.Model(model.inputs, [model.outputs[0],
                                          *[model.get_layer(n).output for n in names]],
                           name=model.name)
    child = _tft_child(model)
    side, found = _with_outputs(child, names), []

    def call(layer, *args, **kwargs):
        if layer is not child:
            return layer(*args, **kwargs)
        first, *extra = side(*args, **kwargs)
        found.append(extra)
        return first

    traced = keras.models.clone_model(model, clone_function=lambda layer: layer,
                                      call_function=call)
    return keras.Model(traced.inputs, [traced.outputs[0], *found[0]], name=model.name)


INTERPRET_BATCH = 64  # windows per forward pass of the interpretation


def interpretation(model: keras.Model, x: np.ndarray) -> Interpretation | None:
    """The variable-selection weights (encoder; decoder, with known-future inputs) and the
    attention over time of a trained ``tft`` on windows ``x`` (N, L, F), averaged over
    windows (and steps, for the weights). None for other families."""
    if not is_tft(model):
        return None
    names = {layer.name for layer in _bare_tft(model).layers}
    wanted = [n for n in (SELECTION_LAYER, ATTENTION_LAYER, FUTURE_SELECTION_LAYER)
              if n in names]
    traced = _with_outputs(model, wanted)
    side = keras.Model(traced.inputs, traced.outputs[1:])
    x = np.asarray(x, np.float32)
    # the mean over windows from batch means weighted by their size: all windows' attention
    # at once is N x H x (L + H) floats (6.6 GB for ETTh1's test windows at H = 720)
    axes = [(0, 1), (0,), (0, 1)]  # selection (N, L, F), attention (N, H, L+H), future (N, H, K)
    totals: list[np.ndarray] | None = None
    for start in range(0, len(x), INTERPRET_BATCH):
        batch = x[start : start + INTERPRET_BATCH]
        means = [np.asarray(o, np.float64).mean(axis=a) * len(batch)
                 for o, a in zip(side.predict_on_batch(batch), axes, strict=False)]
        totals = means if totals is None else [t + m for t, m in zip(totals, means, strict=True)]
    selection, attention, *future = (t / len(x) for t in totals)
    return Interpretation(selection, attention, len(x), future[0] if future else None,
                          STATIC_LAYER in names)


def with_importance_output(model: keras.Model) -> keras.Model:
    """The model to ship: a ``tft`` gets a second output, each window's selection weights
    averaged over its L steps (N, F), so the edge can name the variables behind every
    forecast. Any other model is returned as is. The forecast stays the first output (what
    the parity gate and every metric read)."""
    if not is_tft(model):
        return model
    traced = _with_outputs(model, [SELECTION_LAYER])
    weights = layers.GlobalAveragePooling1D(name=IMPORTANCE_OUTPUT)(traced.outputs[1])
    return keras.Model(traced.inputs, [traced.outputs[0], weights], name=model.name)


def interpretation_plots(run_dir, model: keras.Model, x: np.ndarray, tags: list[str],
                         title: str, static: str = "") -> Interpretation | None:
    """The pictures of a ``tft`` over windows ``x``: ``variable_importance.png`` (the
    encoder's selection over the past inputs ``tags``), ``decoder_selection.png`` (over the
    known-future inputs, the last of ``tags``), ``static_selection.png`` (the static covariate
    ``static``) and ``attention.png``; each selection plot only where the model has it."""
    from pathlib import Path

    from training import plots

    found = interpretation(model, x)
    if found is None:
        return None
    run_dir = Path(run_dir)
    mean = f"mean of {found.windows} windows"
    plots.variable_importance(found.importance, tags, run_dir / "variable_importance.png",
                              f"{title}: encoder variable selection ({mean})")
    if found.future is not None:
        plots.variable_importance(found.future, tags[-len(found.future):],
                                  run_dir / "decoder_selection.png",
                                  f"{title}: decoder selection ({mean})")
    if found.static:  # the paper's static VSN is a softmax over the static variables: one here
        plots.variable_importance(np.ones(1), [static or "static covariate"],
                                  run_dir / "static_selection.png",
                                  f"{title}: static selection (one variable: weight 1)")
    horizon = found.attention.shape[0]
    plots.attention_panels(
        [(f"{found.windows} windows; last {horizon} columns: forecast steps", "forecast step",
          found.attention)],
        run_dir / "attention.png", title)
    return found
