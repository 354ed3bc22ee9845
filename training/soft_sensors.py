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
