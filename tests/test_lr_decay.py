"""``fit.lr_decay``: the learning rate multiplied by a factor after every epoch (the Informer
repository's schedule at 0.5), in place of the default reduce-on-plateau."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from training.config import FitConfig


def test_lr_decay_multiplies_the_rate_every_epoch():
    import keras

    from training.series import lr_schedule

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.01), "mse")
    seen = []
    probe = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(
        float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))))
    x = np.zeros((8, 2), np.float32)
    halving = lr_schedule(FitConfig(learning_rate=0.01, lr_decay=0.5))
    model.fit(x, x[:, :1], epochs=3, verbose=0, callbacks=[halving, probe])
    np.testing.assert_allclose(seen, [0.01, 0.005, 0.0025], rtol=1e-6)


@pytest.mark.parametrize("value", [0.0, -0.5, 1.5])
def test_lr_decay_outside_0_1_is_refused(value):
    with pytest.raises(ValidationError, match="lr_decay"):
        FitConfig(lr_decay=value)


def test_without_lr_decay_the_rate_drops_on_a_plateau():
    import keras

    from training.series import lr_schedule

    assert isinstance(lr_schedule(FitConfig(patience=4)), keras.callbacks.ReduceLROnPlateau)
