"""``model.compile`` for a ``model.fit`` that traces its train step once.

Keras 3 on TensorFlow, without a distribution strategy, builds the optimizer's slots inside the
first traced train step; ``tf.function`` then traces that step a second time, now without
creating variables. Built here, right after ``compile``, the slots exist before the first trace:
one trace fewer per fit (a tiny Informer's whole training run: 22.9 s instead of 42.5 s). The
explicit training loops (GAN, VAE, DQN, PPO) build theirs the same way."""

from __future__ import annotations

from typing import Any

import keras


def compile_for_fit(model: keras.Model, optimizer: keras.optimizers.Optimizer, loss: Any,
                    **kwargs: Any) -> None:
    """``model.compile(optimizer, loss, **kwargs)``, then the optimizer built on the model's
    trainable variables (a model not built yet is left to Keras)."""
    model.compile(optimizer=optimizer, loss=loss, **kwargs)
    if model.built:
        model.optimizer.build(model.trainable_variables)
