"""Anomaly-detection families: a window (L, F) of scaled tags in, its reconstruction out."""

from __future__ import annotations

import keras
from keras import layers

from training.registry import register


@register("anomaly", "dense_ae")
def dense_ae(window: int, features: int, hidden: tuple[int, ...] = (64, 16),
             activation: str = "tanh",
             dropout: float = 0.0):
    """Dense autoencoder over the flattened window (bottleneck = last of ``hidden``).

    tanh saturates outside the training range, so an out-of-range tag cannot be
    reconstructed (ReLU nets extrapolate and miss slow drifts)."""
    inputs = keras.Input((window, features))
    x = layers.Flatten()(inputs)
    for units in hidden:
        x = layers.Dense(units, activation=activation)(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    for units in reversed(hidden[:-1]):
        x = layers.Dense(units, activation=activation)(x)
    x = layers.Dense(window * features)(x)
    return keras.Model(inputs, layers.Reshape((window, features))(x), name="dense_ae")
