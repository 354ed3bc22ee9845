"""Informer (Zhou et al., AAAI 2021): ProbSparse self-attention, self-attention distilling
and a generative-style decoder, as forecast families ``informer`` and ``informer_full``
(Informer†: the same network with canonical full attention everywhere).

Built from builtin Keras layers plus ``keras.ops`` calls in the functional graph (no Lambda,
no custom class): a Keras 3 functional model saves such calls as operations, so
``model.keras`` loads in the converter's child process without importing procedge, and each
maps to a LiteRT builtin (``TOPK_V2``, ``GATHER``, ``ONE_HOT``, ``BATCH_MATMUL``, …).

What differs from the reference implementation, and why (also in docs/forecasting.md):

* the keys sampled for the sparsity measurement are drawn once, when the model is built
  (``seed``), and stored in the graph as a constant index set: the converter cannot ship a
  random op, and a fixed sample makes the edge model a deterministic function of its window;
  the reference draws a new sample at every forward pass;
* M(q, K̄) = max − mean over the *sampled* keys (the reference divides the sample's sum by
  L_K);
* the top-u queries are gathered and their attention scattered back by a one-hot matrix of
  the ``TOPK_V2`` indices (``ONE_HOT`` + ``BATCH_MATMUL``), the other queries take the mean of
  V (the cumulative sum of V in the masked decoder, as the reference);
* no calendar (temporal) embedding: a gateway window holds tag values only; circular padding
  of 1 in the distilling convolution (length L → ⌈L/2⌉);
* the repo's output convention: a delta head (starting at zero) plus the exact last-value
  skip, so an untrained Informer is persistence.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from training.forecasters import _targets, last_value_skip, sinusoid
from training.informer_args import check_informer_args, encoder_lengths, sparse_counts
from training.registry import register

MASK_DEPTH = 30.0  # masked scores sit this far below the row's maximum: exp(-30) ≈ 1e-13


def _circular_pad(x, length: int):
    """(N, L, C) → (N, L + 2, C): the last step in front, the first behind (circular padding
    of one, as the reference's token and distilling convolutions)."""
    return layers.Concatenate(axis=1)([layers.Cropping1D((length - 1, 0))(x), x,
                                       layers.Cropping1D((0, length - 1))(x)])


def _embed(x, length: int, d_model: int, dropout: float, name: str):
    """Token embedding (Conv1D, kernel 3, circular padding, no bias) + sinusoidal position."""
    tokens = layers.Conv1D(d_model, 3, use_bias=False, name=f"{name}_tokens")(
        _circular_pad(x, length))
    x = ops.add(tokens, sinusoid(length, d_model)[None])
    return layers.Dropout(dropout)(x) if dropout else x


def _split_heads(x, heads: int):
    """(N, L, D) → (N, heads, L, D / heads)."""
    length, dim = x.shape[1], x.shape[2]
    return layers.Permute((2, 1, 3))(layers.Reshape((length, heads, dim // heads))(x))


def _merge_heads(x):
    """(N, heads, L, d) → (N, L, heads · d)."""
    heads, length, dim = x.shape[1], x.shape[2], x.shape[3]
    return layers.Reshape((length, heads * dim))(layers.Permute((2, 1, 3))(x))


def _masked_softmax(scores, keep):
    """Softmax over keys where ``keep`` (0/1) is 1. Scores are shifted by their row maximum
    and masked ones set ``MASK_DEPTH`` below it, so the tensor keeps a range int8 can hold
    (an additive -1e9 would leave no resolution for the kept scores)."""
    shifted = ops.subtract(scores, ops.max(scores, axis=-1, keepdims=True))
    masked = ops.add(ops.multiply(shifted, keep), ops.multiply(ops.subtract(keep, 1.0),
                                                               MASK_DEPTH))
    return ops.softmax(masked, axis=-1)


def full_attention(q, k, v, causal: bool):
    """Canonical scaled dot-product attention over (N, h, L, d); causal: no later key."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = ops.multiply(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))), scale)
    if not causal:
        return ops.matmul(ops.softmax(scores, axis=-1), v)
    keep = np.tril(np.ones((q.shape[2], k.shape[2]), np.float32))[None, None]
    return ops.matmul(_masked_softmax(scores, keep), v)


def sample_indices(queries: int, keys: int, factor: int, seed: int) -> np.ndarray:
    """(queries, c·⌈ln L_K⌉) key indices per query, drawn once (with replacement, as the
    reference's ``torch.randint``) and stored in the graph as a constant."""
    rng = np.random.default_rng(seed)
    return rng.integers(keys, size=(queries, sparse_counts(keys, factor))).astype(np.int32)


def prob_attention(q, k, v, factor: int, causal: bool, seed: int):
    """ProbSparse attention over (N, h, L, d): the top-u queries by the sparsity measurement
    M(q, K̄) = max − mean of q·k over a sampled set of keys get full attention; the others
    the mean of V (causal: the cumulative sum of V up to their position, as the reference)."""
    heads, lq, lk, dim = q.shape[1], q.shape[2], k.shape[2], q.shape[3]
    sample = sample_indices(lq, lk, factor, seed)
    u = sparse_counts(lq, factor)
    k_sample = ops.take(k, sample.reshape(-1), axis=2)  # GATHER, constant indices
    k_sample = ops.reshape(k_sample, (-1, heads, lq, sample.shape[1], dim))
    qk = ops.sum(ops.multiply(ops.expand_dims(q, 3), k_sample), axis=-1)  # (N, h, Lq, s)
    sparsity = ops.subtract(ops.max(qk, axis=-1), ops.mean(qk, axis=-1))
    _, top = ops.top_k(sparsity, u)  # TOPK_V2: (N, h, u)
    pick = ops.one_hot(top, lq)  # (N, h, u, Lq)
    scores = ops.matmul(ops.matmul(pick, q), ops.transpose(k, (0, 1, 3, 2)))
    scores = ops.multiply(scores, 1.0 / math.sqrt(dim))  # (N, h, u, Lk)
    if causal:  # key j is visible to the picked query at position i when j ≤ i
        keep = ops.cast(ops.less_equal(np.arange(lk, dtype=np.int32)[None, None, None],
                                       ops.expand_dims(top, -1)), "float32")
        attn = _masked_softmax(scores, keep)
        initial = ops.matmul(np.tril(np.ones((lq, lk), np.float32))[None, None], v)
    else:
        attn = ops.softmax(scores, axis=-1)
        initial = ops.mean(v, axis=2, keepdims=True)
    picked = ops.matmul(ops.transpose(pick, (0, 1, 3, 2)), ops.matmul(attn, v))  # scatter
    rest = ops.subtract(1.0, ops.sum(pick, axis=2))  # (N, h, Lq): 1 where not picked
    return ops.add(picked, ops.multiply(ops.expand_dims(rest, -1), initial))


def attention_block(x, memory, d_model: int, heads: int, kind: str, causal: bool,
                    factor: int, seed: int, name: str):
    """Multi-head attention of ``x`` (queries) over ``memory`` (keys, values)."""
    q = _split_heads(layers.Dense(d_model, name=f"{name}_q")(x), heads)
    k = _split_heads(layers.Dense(d_model, name=f"{name}_k")(memory), heads)
    v = _split_heads(layers.Dense(d_model, name=f"{name}_v")(memory), heads)
    if kind == "prob":
        context = prob_attention(q, k, v, factor, causal, seed)
    else:
        context = full_attention(q, k, v, causal)
    return layers.Dense(d_model, name=f"{name}_out")(_merge_heads(context))


def _residual(x, y, dropout: float):
    y = layers.Dropout(dropout)(y) if dropout else y
    return layers.LayerNormalization()(layers.Add()([x, y]))


def _feed_forward(x, d_model: int, d_ff: int, activation: str, dropout: float):
    y = layers.Conv1D(d_ff, 1, activation=activation)(x)
    y = layers.Dropout(dropout)(y) if dropout else y
    return _residual(x, layers.Conv1D(d_model, 1)(y), dropout)


def distil(x, d_model: int, name: str):
    """Self-attention distilling: Conv1D (kernel 3, circular) + BatchNorm + ELU + max-pool
    (3, stride 2): the next encoder layer sees half the steps."""
    x = layers.Conv1D(d_model, 3, name=f"{name}_conv")(_circular_pad(x, x.shape[1]))
    # momentum 0.9: PyTorch's BatchNorm1d default (0.1) in the reference, not Keras' 0.99
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_norm")(x)
    x = layers.Activation("elu")(x)
    return layers.MaxPooling1D(3, strides=2, padding="same", name=f"{name}_pool")(x)


def _build(window: int, features: int, horizon: int, targets: int,
           target_columns: list[int] | None, attention: str, d_model: int, heads: int,
           d_ff: int, e_layers: int, d_layers: int, factor: int, label_len: int | None,
           distil_layers: bool, dropout: float, activation: str, seed: int, name: str):
    label = check_informer_args(window, horizon, e_layers=e_layers, d_layers=d_layers,
                                d_model=d_model, heads=heads, factor=factor,
                                label_len=label_len, distil=distil_layers)
    cols = _targets(features, targets, target_columns)
    common = {"d_model": d_model, "heads": heads, "factor": factor}
    inputs = keras.Input((window, features))
    x = _embed(inputs, window, d_model, dropout, "enc")
    for i, length in enumerate(encoder_lengths(window, e_layers, distil_layers)):
        if i and distil_layers:
            x = distil(x, d_model, f"distil_{i}")
        assert x.shape[1] == length
        att = attention_block(x, x, kind=attention, causal=False, seed=seed + i,
                              name=f"enc_{i}", **common)
        x = _feed_forward(_residual(x, att, dropout), d_model, d_ff, activation, dropout)
    memory = layers.LayerNormalization(name="enc_norm")(x)

    start = layers.Cropping1D((window - label, 0), name="start_token")(inputs)
    last = layers.Flatten()(layers.Cropping1D((window - 1, 0))(inputs))
    placeholders = ops.zeros_like(layers.RepeatVector(horizon)(last))
    dec_in = layers.Concatenate(axis=1, name="decoder_input")([start, placeholders])
    y = _embed(dec_in, label + horizon, d_model, dropout, "dec")
    for j in range(d_layers):
        att = attention_block(y, y, kind=attention, causal=True, seed=seed + 100 + j,
                              name=f"dec_{j}_self", **common)
        y = _residual(y, att, dropout)
        cross = attention_block(y, memory, kind="full", causal=False, seed=0,
                                name=f"dec_{j}_cross", **common)
        y = _feed_forward(_residual(y, cross, dropout), d_model, d_ff, activation, dropout)
    y = layers.LayerNormalization(name="dec_norm")(y)
    delta = layers.Dense(len(cols), kernel_initializer="zeros", name="delta")(y)
    delta = layers.Cropping1D((label, 0), name="forecast_steps")(delta)
    out = layers.Add(name="forecast")([delta, last_value_skip(inputs, window, horizon, cols)])
    return keras.Model(inputs, out, name=name)


SMALL = {"d_model": 8, "heads": 2, "d_ff": 16, "e_layers": 2, "d_layers": 1, "factor": 1,
         "dropout": 0.0}


@register("forecast", "informer", small=SMALL)
def informer(window: int, features: int, horizon: int, targets: int,
             target_columns: list[int] | None = None, d_model: int = 64, heads: int = 4,
             d_ff: int = 128, e_layers: int = 2, d_layers: int = 1, factor: int = 5,
             label_len: int | None = None, distil: bool = True, dropout: float = 0.05,
             activation: str = "gelu", seed: int = 0):
    """Informer: ProbSparse self-attention (top c·ln L queries), distilling between encoder
    layers, generative decoder (start token = last ``label_len`` steps + H zero placeholders,
    one forward pass). The paper's sizes are d_model 512, heads 8, d_ff 2048; these defaults
    train in minutes on two CPU cores."""
    return _build(window, features, horizon, targets, target_columns, "prob", d_model, heads,
                  d_ff, e_layers, d_layers, factor, label_len, distil, dropout, activation,
                  seed, "informer")


@register("forecast", "informer_full", small=SMALL)
def informer_full(window: int, features: int, horizon: int, targets: int,
                  target_columns: list[int] | None = None, d_model: int = 64, heads: int = 4,
                  d_ff: int = 128, e_layers: int = 2, d_layers: int = 1, factor: int = 5,
                  label_len: int | None = None, distil: bool = True, dropout: float = 0.05,
                  activation: str = "gelu", seed: int = 0):
    """Informer†: the same network with canonical full attention in encoder and decoder
    (``factor`` and ``seed`` unused, kept so one config serves both)."""
    return _build(window, features, horizon, targets, target_columns, "full", d_model, heads,
                  d_ff, e_layers, d_layers, factor, label_len, distil, dropout, activation,
                  seed, "informer_full")
