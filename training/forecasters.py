"""Forecasting families: a window (L, F) of scaled tags in, (H, T) scaled targets out.

Every builder has the signature ``(window, features, horizon, targets, target_columns=None,
**kw)``; ``target_columns`` says which input columns are the targets (default: the last
``targets`` columns, the ETT convention with ``OT`` last). Deep families forecast the change
from the last observed value: the persistence skip is an exact 0/1 selection, which survives
int8 quantization unchanged, and the network only has to learn the (small) delta.

Only built-in Keras layers are used (no Lambda, no custom classes), so a saved ``model.keras``
loads in the converter's child process without importing procedge, and every op maps to a
LiteRT builtin. Recurrent layers are unrolled by default: on this stack that is the one route
by which Keras 3 LSTM/GRU convert in every mode with builtin ops and a dynamic batch
(see ``REFERENCE.md``); pass ``unroll=False`` for long windows trained offline.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
from keras import layers

from edge_runtime.bundle import check_quantile_levels
from training.config import MEDIAN_LOSSES
from training.registry import register


def _targets(features: int, targets: int, target_columns: list[int] | None) -> list[int]:
    cols = list(range(features))[-targets:] if target_columns is None else list(target_columns)
    if len(cols) != targets:
        raise ValueError(f"{targets} targets but target_columns={cols}")
    return cols


def _select(features: int, cols: list[int]) -> np.ndarray:
    select = np.zeros((features, len(cols)), np.float32)
    select[cols, np.arange(len(cols))] = 1.0
    return select


def last_value_skip(inputs, window: int, horizon: int, target_columns: list[int]):
    """(N, L, F) → (N, H, T): the last observed value of each target, repeated H times."""
    features = inputs.shape[-1]
    last = layers.Flatten()(layers.Cropping1D((window - 1, 0))(inputs))
    picked = layers.Dense(len(target_columns), use_bias=False, trainable=False,
                          kernel_initializer=keras.initializers.Constant(
                              _select(features, target_columns)),
                          name="last_value")(last)
    return layers.RepeatVector(horizon)(picked)


def _head(x, horizon: int, targets: int, inputs, window: int, cols: list[int],
          quantiles: list[float] | None = None, skip=None):
    """Flat (N, D) or per-step (N, H, D) features → (N, H, T) delta, plus the last-value skip
    (and ``skip``, an extra (N, H, T) term, when given). Per-step features get one
    position-wise Dense shared by every step (D·T weights; a flat head has D·H·T, which grows
    as H² when D does). The delta layer starts at zero, so an untrained model is exactly
    persistence and training only learns the change. With ``quantiles`` the forecast is the
    median and :func:`quantile_head` adds the rest."""
    units = targets if len(x.shape) == 3 else horizon * targets
    delta = layers.Dense(units, kernel_initializer="zeros", name="delta")(x)
    out = layers.Reshape((horizon, targets))(delta)
    terms = [out, last_value_skip(inputs, window, horizon, cols)]
    median = layers.Add(name="forecast")(terms if skip is None else [*terms, skip])
    return quantile_head(x, median, quantiles) if quantiles else median


# ------------------------------------------------------------------------- quantile outputs


def quantile_matrix(levels: list[float]) -> np.ndarray:
    """(Q, Q) map from [P50, gap_1 .. gap_Q-1] to the Q quantiles, ascending. Each level
    below the median is P50 minus the gaps between it and the median, each level above P50
    plus them; gaps are ≥ 0, so the quantiles are ordered by construction."""
    q, m = len(levels), levels.index(0.5)
    matrix = np.zeros((q, q), np.float32)
    matrix[0] = 1.0
    for j in range(q):
        gaps = range(j, m) if j < m else range(m, j)
        for i in gaps:
            matrix[1 + i, j] = -1.0 if j < m else 1.0
    return matrix


def quantile_head(x, median, quantiles):
    """Flat (N, D) or per-step (N, H, D) features and the (N, H, T) median → (N, H, T, Q)
    quantiles that cannot cross: softplus gaps stacked outward from P50, combined by a frozen
    0/±1 matrix (exact in int8, so the quantized model keeps the order too). Gaps start at
    softplus(0) ≈ 0.69 std."""
    levels = check_quantile_levels(list(quantiles))
    horizon, targets = median.shape[1], median.shape[2]
    n_gaps = len(levels) - 1
    per_step = targets * n_gaps if len(x.shape) == 3 else horizon * targets * n_gaps
    raw = layers.Dense(per_step, kernel_initializer="zeros",
                       name="quantile_gaps")(x)
    gaps = layers.Activation("softplus")(layers.Reshape((horizon, targets, n_gaps))(raw))
    stacked = layers.Concatenate(axis=-1)([layers.Reshape((horizon, targets, 1))(median), gaps])
    return layers.Dense(len(levels), use_bias=False, trainable=False, name="quantiles",
                        kernel_initializer=keras.initializers.Constant(
                            quantile_matrix(levels)))(stacked)


class Pinball(keras.losses.Loss):
    """Pinball (quantile) loss, mean over levels: y (N, H, T) against quantiles (N, H, T, Q).

    ``median="mse"``: the 0.5 level's term is the squared error instead, so that head learns
    the conditional mean — the forecast that minimises MSE, the figure forecasts are scored
    on — while the other levels stay quantiles (``fit.median_loss``)."""

    def __init__(self, quantiles, median: str = "pinball", name: str = "pinball", **kwargs):
        super().__init__(name=name, **kwargs)
        self.quantiles = check_quantile_levels(list(quantiles))
        if median not in MEDIAN_LOSSES:  # every level list holds 0.5 (checked above)
            raise ValueError(f"fit.median_loss must be one of {list(MEDIAN_LOSSES)}, "
                             f"not {median!r}")
        self.median = median

    def call(self, y_true, y_pred):
        levels = keras.ops.convert_to_tensor(self.quantiles, dtype=y_pred.dtype)
        error = keras.ops.expand_dims(keras.ops.cast(y_true, y_pred.dtype), -1) - y_pred
        terms = keras.ops.maximum(levels * error, (levels - 1.0) * error)
        if self.median == "mse":
            is_median = keras.ops.convert_to_tensor([q == 0.5 for q in self.quantiles])
            terms = keras.ops.where(is_median, keras.ops.square(error), terms)
        return keras.ops.mean(terms, axis=-1)

    def get_config(self) -> dict:
        return super().get_config() | {"quantiles": self.quantiles, "median": self.median}


def _pick_channels(x, features: int, cols: list[int]):
    """(N, steps, F) → (N, steps, T) by a fixed 0/1 matrix (identity when every channel is a
    target)."""
    if cols == list(range(features)):
        return x
    return layers.Dense(len(cols), use_bias=False, trainable=False, name="pick_targets",
                        kernel_initializer=keras.initializers.Constant(_select(features, cols))
                        )(x)


# ----------------------------------------------------------------------------- linear family


def _time_linear(x, horizon: int, name: str, init: str):
    """Channel-independent linear map over time: (N, L, C) → (N, H, C), weights shared by all
    channels (DLinear's ``individual=False``). ``init``: ``"last"`` starts every step at the last
    input value (persistence), ``"zeros"`` at zero, ``"glorot"`` is Keras' random start."""
    x = layers.Permute((2, 1))(x)  # (N, C, L)
    window = x.shape[-1]
    if init == "last":
        kernel = np.zeros((window, horizon), np.float32)
        kernel[-1] = 1.0
        initializer = keras.initializers.Constant(kernel)
    elif init in ("zeros", "glorot"):
        initializer = "zeros" if init == "zeros" else "glorot_uniform"
    else:
        raise ValueError(f"init must be 'last', 'zeros' or 'glorot', not {init!r}")
    x = layers.Dense(horizon, kernel_initializer=initializer, name=name)(x)  # (N, C, H)
    return layers.Permute((2, 1))(x)


def _repeat_last(inputs, window: int, steps: int):
    """(N, L, C) → (N, steps, C): the last row, repeated."""
    return layers.UpSampling1D(steps)(layers.Cropping1D((window - 1, 0))(inputs))


def _linear_init(init: str | None, subtract_last: bool) -> str:
    return init or ("zeros" if subtract_last else "last")


@register("forecast", "linear")
def linear(window: int, features: int, horizon: int, targets: int,
           target_columns: list[int] | None = None, subtract_last: bool = False,
           init: str | None = None):
    """One linear layer over time per channel (LTSF "Linear"; NLinear with subtract_last)."""
    cols = _targets(features, targets, target_columns)
    inputs = keras.Input((window, features))
    x = inputs
    if subtract_last:  # NLinear: forecast relative to the last value, add it back
        x = layers.Subtract()([inputs, _repeat_last(inputs, window, window)])
    y = _time_linear(x, horizon, "time_linear", _linear_init(init, subtract_last))
    if subtract_last:
        y = layers.Add()([y, _repeat_last(inputs, window, horizon)])
    return keras.Model(inputs, _pick_channels(y, features, cols), name="linear")


def moving_average(x, window: int, kernel: int):
    """Trend by a centred moving average, edges padded by repeating the first/last value
    (as DLinear's ``series_decomp``); built from builtin layers only."""
    front, back = (kernel - 1) // 2, kernel // 2
    parts = []
    if front:
        parts.append(layers.UpSampling1D(front)(layers.Cropping1D((0, window - 1))(x)))
    parts.append(x)
    if back:
        parts.append(layers.UpSampling1D(back)(layers.Cropping1D((window - 1, 0))(x)))
    padded = layers.Concatenate(axis=1)(parts) if len(parts) > 1 else x
    return layers.AveragePooling1D(kernel, strides=1, padding="valid", name="trend")(padded)


@register("forecast", "dlinear", small={"subtract_last": True, "init": "zeros"})
def dlinear(window: int, features: int, horizon: int, targets: int,
            target_columns: list[int] | None = None, kernel: int = 25,
            subtract_last: bool = False, init: str = "glorot"):
    """DLinear: moving-average trend + seasonal remainder, one linear map over time each.

    Defaults are the paper's (random init, no normalisation); on ETTh1 they gave the lower
    validation MSE. ``subtract_last=True`` feeds the window minus its last value and adds it
    back through an exact skip (NLinear-style; same function class, starts at persistence
    with ``init="zeros"``), which trains faster on tiny data.
    """
    cols = _targets(features, targets, target_columns)
    inputs = keras.Input((window, features))
    x = inputs
    if subtract_last:
        x = layers.Subtract()([inputs, _repeat_last(inputs, window, window)])
    trend = moving_average(x, window, min(kernel, window))
    seasonal = layers.Subtract(name="seasonal")([x, trend])
    y = layers.Add()([_time_linear(seasonal, horizon, "seasonal_linear", init),
                      _time_linear(trend, horizon, "trend_linear", init)])
    if subtract_last:
        y = layers.Add()([y, _repeat_last(inputs, window, horizon)])
    return keras.Model(inputs, _pick_channels(y, features, cols), name="dlinear")


# -------------------------------------------------------------------------- recurrent family


def _stack(rnn, inputs, units: tuple[int, ...], dropout: float, unroll: bool, bidirectional=False):
    x = inputs
    for i, n in enumerate(units):
        layer = rnn(n, return_sequences=i < len(units) - 1, unroll=unroll, dropout=dropout)
        x = layers.Bidirectional(layer)(x) if bidirectional else layer(x)
    return x


def _recurrent(name: str, rnn, window, features, horizon, targets, target_columns, units,
               dropout, unroll, bidirectional=False, quantiles=None):
    cols = _targets(features, targets, target_columns)
    inputs = keras.Input((window, features))
    x = _stack(rnn, inputs, tuple(units), dropout, unroll, bidirectional)
    return keras.Model(inputs, _head(x, horizon, len(cols), inputs, window, cols, quantiles),
                       name=name)


@register("forecast", "lstm", small={"units": [8]})
def lstm(window: int, features: int, horizon: int, targets: int,
         target_columns: list[int] | None = None, units: tuple[int, ...] = (32,),
         dropout: float = 0.0, unroll: bool = True, quantiles: list[float] | None = None):
    """Stacked LSTM → dense multi-step head, plus the last-value skip. ``quantiles`` (e.g.
    [0.1, 0.5, 0.9]): output (N, H, T, Q) quantiles instead of (N, H, T), trained on pinball."""
    return _recurrent("lstm", layers.LSTM, window, features, horizon, targets, target_columns,
                      units, dropout, unroll, quantiles=quantiles)


@register("forecast", "gru", small={"units": [8]})
def gru(window: int, features: int, horizon: int, targets: int,
        target_columns: list[int] | None = None, units: tuple[int, ...] = (32,),
        dropout: float = 0.0, unroll: bool = True):
    """Stacked GRU → dense multi-step head, plus the last-value skip."""
    return _recurrent("gru", layers.GRU, window, features, horizon, targets, target_columns,
                      units, dropout, unroll)


@register("forecast", "bilstm", offline_only=True, small={"units": [8]})
def bilstm(window: int, features: int, horizon: int, targets: int,
           target_columns: list[int] | None = None, units: tuple[int, ...] = (32,),
           dropout: float = 0.0, unroll: bool = True):
    """Bidirectional LSTM; offline only: reads each window backwards too (evaluation use)."""
    return _recurrent("bilstm", layers.LSTM, window, features, horizon, targets, target_columns,
                      units, dropout, unroll, bidirectional=True)


@register("forecast", "seq2seq", small={"units": 8})
def seq2seq(window: int, features: int, horizon: int, targets: int,
            target_columns: list[int] | None = None, units: int = 32,
            attention: str = "additive", unroll: bool = True):
    """GRU encoder–decoder with additive (Bahdanau) or dot (Luong) attention over the window.

    The decoder is fed the encoder's final state at every step (no autoregression, so one
    invoke gives all H steps). The layer named ``attention`` returns its weights; see
    :func:`attention_model`.
    """
    if attention not in ("additive", "dot"):
        raise ValueError(f"attention must be 'additive' or 'dot', not {attention!r}")
    cols = _targets(features, targets, target_columns)
    inputs = keras.Input((window, features))
    enc_seq, enc_state = layers.GRU(units, return_sequences=True, return_state=True,
                                    unroll=unroll, name="encoder")(inputs)
    dec_in = layers.RepeatVector(horizon)(enc_state)
    dec_seq = layers.GRU(units, return_sequences=True, unroll=unroll, name="decoder")(
        dec_in, initial_state=enc_state)
    att = layers.AdditiveAttention if attention == "additive" else layers.Attention
    context, _ = att(name="attention")([dec_seq, enc_seq], return_attention_scores=True)
    x = layers.Concatenate()([dec_seq, context])
    delta = layers.Dense(len(cols), kernel_initializer="zeros", name="delta")(
        layers.Dense(units, activation="tanh")(x))
    skip = last_value_skip(inputs, window, horizon, cols)
    return keras.Model(inputs, layers.Add(name="forecast")([delta, skip]), name="seq2seq")


# ------------------------------------------------------------------------ attention families


def sinusoid(length: int, dim: int) -> np.ndarray:
    """Fixed sinusoidal positional encoding (Vaswani et al.), shape (length, dim)."""
    pos = np.arange(length)[:, None]
    rate = 1.0 / np.power(10000.0, (2 * (np.arange(dim)[None, :] // 2)) / dim)
    angle = pos * rate
    return np.where(np.arange(dim) % 2 == 0, np.sin(angle), np.cos(angle)).astype(np.float32)


def add_positional_encoding(x, inputs, window: int, dim: int):
    """x + PE, the constant built as a frozen Dense bias on a constant-one input (builtin
    layers only, so the model loads and converts without custom objects)."""
    first = layers.Flatten()(layers.Cropping1D((0, window - 1))(inputs))
    one = layers.Dense(1, kernel_initializer="zeros", bias_initializer="ones", trainable=False,
                       name="pe_one")(first)
    pe = layers.Dense(window * dim, use_bias=False, trainable=False, name="positional_encoding",
                      kernel_initializer=keras.initializers.Constant(
                          sinusoid(window, dim).reshape(1, -1)))(one)
    return layers.Add()([x, layers.Reshape((window, dim))(pe)])


@register("forecast", "transformer",
          small={"d_model": 8, "heads": 2, "ff": 16, "blocks": 1})
def transformer(window: int, features: int, horizon: int, targets: int,
                target_columns: list[int] | None = None, d_model: int = 32, heads: int = 4,
                ff: int = 64, blocks: int = 2, dropout: float = 0.0,
                quantiles: list[float] | None = None):
    """Transformer encoder: projection + positional encoding, blocks of multi-head
    self-attention and feed-forward, each with residual + layer norm; dense multi-step head.
    ``quantiles``: (N, H, T, Q) quantile outputs, as for ``lstm``."""
    cols = _targets(features, targets, target_columns)
    inputs = keras.Input((window, features))
    x = add_positional_encoding(layers.Dense(d_model)(inputs), inputs, window, d_model)
    for i in range(blocks):
        att = layers.MultiHeadAttention(heads, d_model // heads, dropout=dropout,
                                        name=f"attention_{i}")(x, x)
        x = layers.LayerNormalization()(layers.Add()([x, att]))
        y = layers.Dense(d_model)(layers.Dense(ff, activation="relu")(x))
        if dropout:
            y = layers.Dropout(dropout)(y)
        x = layers.LayerNormalization()(layers.Add()([x, y]))
    last = layers.Flatten()(layers.Cropping1D((window - 1, 0))(x))
    pooled = layers.GlobalAveragePooling1D()(x)
    x = layers.Concatenate()([last, pooled])
    return keras.Model(inputs, _head(x, horizon, len(cols), inputs, window, cols, quantiles),
                       name="transformer")


# ------------------------------------------------------------------------------- convolutional


@register("forecast", "tcn", small={"filters": 8, "dilations": [1, 2, 4]})
def tcn(window: int, features: int, horizon: int, targets: int,
        target_columns: list[int] | None = None, filters: int = 32, kernel_size: int = 3,
        dilations: tuple[int, ...] = (1, 2, 4, 8), dropout: float = 0.0):
    """Temporal convolutional network: dilated causal Conv1D blocks with residuals."""
    inputs = keras.Input((window, features))
    x = layers.Conv1D(filters, 1)(inputs)
    for rate in dilations:
        y = layers.Conv1D(filters, kernel_size, padding="causal", dilation_rate=rate,
                          activation="relu")(x)
        if dropout:
            y = layers.Dropout(dropout)(y)
        x = layers.Add()([x, y])
    last = layers.Flatten()(layers.Cropping1D((window - 1, 0), name="last_step")(x))
    if target_columns is not None:
        return keras.Model(inputs, _head(last, horizon, targets, inputs, window,
                                         list(target_columns)), name="tcn")
    out = layers.Reshape((horizon, targets))(layers.Dense(horizon * targets)(last))
    return keras.Model(inputs, out, name="tcn")


def attention_model(model: keras.Model) -> keras.Model | None:
    """A side model sharing the layers of ``seq2seq``: the attention weights (N, H, L), each
    forecast step's weights over the input window. None for other families."""
    if "attention" in [layer.name for layer in model.layers]:  # seq2seq: (context, scores)
        return keras.Model(model.inputs, model.get_layer("attention").output[1])
    return None


def _self_attention_layers(model: keras.Model) -> list:
    """The transformer's MultiHeadAttention blocks, in order (``attention_0``, ...)."""
    blocks = [layer for layer in model.layers if isinstance(layer, layers.MultiHeadAttention)]
    return sorted(blocks, key=lambda layer: int(layer.name.rsplit("_", 1)[-1]))


class AttentionMap(NamedTuple):
    title: str
    rows: str  # what the rows are: forecast steps or input steps
    weights: np.ndarray  # (rows, L), each row sums to 1


def attention_maps(model: keras.Model, window: np.ndarray) -> list[AttentionMap]:
    """One map per attention layer for one window (L, F); rows attend over columns
    (oldest → newest). ``seq2seq``: forecast steps over the window. ``transformer``: each
    block's input steps over the window, mean of the heads — a side model returns the
    block's query and each MultiHeadAttention is called once more with its scores returned
    (a Keras 3 functional graph does not carry the scores of a layer output it never used).
    Empty for families without attention."""
    x = np.asarray(window, np.float32)[None]
    seq2seq_side = attention_model(model)
    if seq2seq_side is not None:
        return [AttentionMap("decoder over encoder", "forecast step",
                             seq2seq_side.predict(x, verbose=0)[0])]
    blocks = _self_attention_layers(model)
    if not blocks:
        return []
    side = keras.Model(model.inputs, [layer.input[0] for layer in blocks])
    queries = side.predict(x, verbose=0)
    queries = queries if isinstance(queries, list) else [queries]
    maps = []
    for i, (layer, query) in enumerate(zip(blocks, queries, strict=True)):
        _, scores = layer(query, query, return_attention_scores=True)
        scores = keras.ops.convert_to_numpy(scores)[0]  # (heads, L, L)
        maps.append(AttentionMap(f"block {i}, mean of {scores.shape[0]} heads", "input step",
                                 scores.mean(axis=0)))
    return maps
