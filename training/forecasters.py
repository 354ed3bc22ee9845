"""Forecasting families: a window (L, F) of scaled tags in, (H, T) scaled targets out.

Builders take ``target_columns`` (which input columns are the targets) so a model can forecast
the change from the last observed value: the persistence skip is an exact 0/1 selection, which
survives int8 quantization unchanged, and the network only has to learn the (small) delta.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from training.registry import register


def last_value_skip(inputs, window: int, horizon: int, target_columns: list[int]):
    """(N, L, F) → (N, H, T): the last observed value of each target, repeated H times."""
    features = inputs.shape[-1]
    select = np.zeros((features, len(target_columns)), np.float32)
    select[target_columns, np.arange(len(target_columns))] = 1.0
    last = layers.Flatten()(layers.Cropping1D((window - 1, 0))(inputs))
    picked = layers.Dense(len(target_columns), use_bias=False, trainable=False,
                          kernel_initializer=keras.initializers.Constant(select),
                          name="last_value")(last)
    return layers.RepeatVector(horizon)(picked)


@register("forecast", "tcn")
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
    out = layers.Reshape((horizon, targets))(layers.Dense(horizon * targets)(last))
    if target_columns is not None:
        out = layers.Add()([out, last_value_skip(inputs, window, horizon, target_columns)])
    return keras.Model(inputs, out, name="tcn")
