"""Soft-sensor families: a window (L, F) of scaled process tags in, the scaled lab value out
(N, outputs).

Every builder has the signature ``(window, features, outputs=1, **kw)``. Only built-in Keras
layers, so a saved ``model.keras`` loads in the converter's child process and every op maps to
a LiteRT builtin. Recurrent layers are unrolled by default (the route by which Keras 3
LSTM/GRU/SimpleRNN convert in every mode with builtin ops, see the forecasters); pass
``unroll=False`` for long windows (an LSTM then converts through the fused kernel).
"""

from __future__ import annotations

import keras
from keras import layers

from training.registry import register


def _head(x, outputs: int, dropout: float):
    if dropout:
        x = layers.Dropout(dropout)(x)
    return layers.Dense(outputs, name="estimate")(x)


def _recurrent(name: str, rnn, window: int, features: int, outputs: int,
               units: tuple[int, ...], dropout: float, unroll: bool) -> keras.Model:
    inputs = keras.Input((window, features))
    x = inputs
    for i, n in enumerate(units):
        x = rnn(n, return_sequences=i < len(units) - 1, unroll=unroll)(x)
    return keras.Model(inputs, _head(x, outputs, dropout), name=name)


@register("soft_sensor", "simple_rnn", small={"units": [8]})
def simple_rnn(window: int, features: int, outputs: int = 1, units: tuple[int, ...] = (32,),
               dropout: float = 0.0, unroll: bool = True):
    """Stacked SimpleRNN → dense estimate: the smallest recurrent soft sensor."""
    return _recurrent("simple_rnn", layers.SimpleRNN, window, features, outputs, tuple(units),
                      dropout, unroll)


@register("soft_sensor", "lstm", small={"units": [8]})
def lstm(window: int, features: int, outputs: int = 1, units: tuple[int, ...] = (32,),
         dropout: float = 0.0, unroll: bool = True):
    """Stacked LSTM → dense estimate."""
    return _recurrent("lstm", layers.LSTM, window, features, outputs, tuple(units), dropout,
                      unroll)


@register("soft_sensor", "gru", small={"units": [8]})
def gru(window: int, features: int, outputs: int = 1, units: tuple[int, ...] = (32,),
        dropout: float = 0.0, unroll: bool = True):
    """Stacked GRU → dense estimate."""
    return _recurrent("gru", layers.GRU, window, features, outputs, tuple(units), dropout,
                      unroll)


@register("soft_sensor", "cnn1d", small={"filters": 8, "depth": 2})
def cnn1d(window: int, features: int, outputs: int = 1, filters: int = 32, kernel: int = 3,
          depth: int = 3, dropout: float = 0.0):
    """Causal 1-D convolutions (dilation doubling) → global average → dense estimate."""
    inputs = keras.Input((window, features))
    x = inputs
    for i in range(depth):
        x = layers.Conv1D(filters, kernel, padding="causal", dilation_rate=2 ** i,
                          activation="relu")(x)
    x = layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, _head(x, outputs, dropout), name="cnn1d")


@register("soft_sensor", "attention_rnn", small={"units": 8})
def attention_rnn(window: int, features: int, outputs: int = 1, units: int = 32,
                  dropout: float = 0.0, unroll: bool = True):
    """GRU over the window, then attention pooling: a learned score per step, softmax over
    the steps, the states summed by those weights → dense estimate. The weights say which
    part of the window the estimate leans on (the dead time shows there)."""
    inputs = keras.Input((window, features))
    states = layers.GRU(units, return_sequences=True, unroll=unroll)(inputs)  # (N, L, U)
    scores = layers.Flatten()(layers.Dense(1, name="attention_score")(states))  # (N, L)
    weights = layers.Reshape((window, 1))(layers.Softmax(name="attention")(scores))
    pooled = layers.Flatten()(layers.Dot(axes=1)([weights, states]))  # (N, U)
    return keras.Model(inputs, _head(pooled, outputs, dropout), name="attention_rnn")


def _bidirectional(name: str, rnn, window: int, features: int, outputs: int,
                   units: tuple[int, ...], dropout: float, unroll: bool) -> keras.Model:
    inputs = keras.Input((window, features))
    x = inputs
    for i, n in enumerate(units):
        x = layers.Bidirectional(rnn(n, return_sequences=i < len(units) - 1,
                                     unroll=unroll))(x)
    return keras.Model(inputs, _head(x, outputs, dropout), name=name)


@register("soft_sensor", "bigru", offline_only=True, small={"units": [8]})
def bigru(window: int, features: int, outputs: int = 1, units: tuple[int, ...] = (32,),
          dropout: float = 0.0, unroll: bool = True):
    """Bidirectional GRU → dense estimate (offline only, as every bidirectional family)."""
    return _bidirectional("bigru", layers.GRU, window, features, outputs, tuple(units),
                          dropout, unroll)


@register("soft_sensor", "bilstm", offline_only=True, small={"units": [8]})
def bilstm(window: int, features: int, outputs: int = 1, units: tuple[int, ...] = (32,),
           dropout: float = 0.0, unroll: bool = True):
    """Bidirectional LSTM → dense estimate (offline only, as every bidirectional family)."""
    return _bidirectional("bilstm", layers.LSTM, window, features, outputs, tuple(units),
                          dropout, unroll)
