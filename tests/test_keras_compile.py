"""compile_for_fit: the train step is traced once, not twice (optimizer slots built first)."""

from __future__ import annotations

import keras
import numpy as np

from training.keras_compile import compile_for_fit


class Counted(keras.Sequential):
    """Counts how often its train step runs in Python, i.e. is traced."""

    traces: list[int] = []

    def train_step(self, data):
        self.traces.append(1)
        return super().train_step(data)


def _fit_traces(compile_model) -> int:
    keras.utils.set_random_seed(0)
    Counted.traces = []
    model = Counted([keras.Input((6,)), keras.layers.Dense(4, activation="relu"),
                      keras.layers.Dense(1)])
    compile_model(model)
    x = np.random.default_rng(0).standard_normal((70, 6)).astype(np.float32)
    model.fit(x, x[:, :1], epochs=2, batch_size=32, verbose=0)  # a partial last batch too
    return len(Counted.traces)


def test_the_train_step_is_traced_once():
    plain = _fit_traces(lambda m: m.compile(keras.optimizers.Adam(1e-3), "mse"))
    built = _fit_traces(lambda m: compile_for_fit(m, keras.optimizers.Adam(1e-3), "mse"))
    assert (plain, built) == (2, 1)  # plain: Keras builds the slots inside the first trace
