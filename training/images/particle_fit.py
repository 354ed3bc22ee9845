"""The fit of task ``particle_size`` (Keras): pixel-weighted cross-entropy on generated
micrographs, flips and quarter turns, cosine learning rate over the epoch budget."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np

from training.budget import fit_callbacks, training_info
from training.images.particle_sizing import ParticleSet
from training.keras_compile import compile_for_fit


def pixel_weights(targets: np.ndarray, boundary_weight: float) -> np.ndarray:
    return np.where(targets == 2, boundary_weight, 1.0).astype(np.float32)


def fit(model: keras.Model, train: ParticleSet, val: ParticleSet, *, name: str,
        run_dir: Path, epochs: int, batch_size: int, learning_rate: float,
        boundary_weight: float, max_minutes: float | None = None):
    """Pixel-weighted cross-entropy, flips and quarter turns (exact for the sizes), cosine
    learning rate over the epochs; returns the training info."""
    compile_for_fit(model, keras.optimizers.Adam(learning_rate),
                    "sparse_categorical_crossentropy")
    steps = int(np.ceil(len(train.x) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * steps, alpha=0.02)
    model.optimizer.learning_rate = schedule
    shared, log, progress, clock = fit_callbacks(name, run_dir, [], max_minutes, backup=False)
    batches = _Flips(train, batch_size, boundary_weight)
    start = time.monotonic()
    model.fit(batches, validation_data=(val.x, val.classes), epochs=epochs, verbose=0,
              callbacks=shared)
    return training_info(log, progress, clock, epochs, []), time.monotonic() - start


class _Flips(keras.utils.PyDataset):
    """Batches in a new order each epoch, each image flipped and turned at random."""

    def __init__(self, data: ParticleSet, batch_size: int, boundary_weight: float):
        super().__init__()
        self.data, self.batch_size, self.boundary_weight = data, batch_size, boundary_weight
        self.rng = np.random.default_rng(0)
        self.order = self.rng.permutation(len(data.x))

    def __len__(self) -> int:
        return int(np.ceil(len(self.data.x) / self.batch_size))

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.data.x))

    def __getitem__(self, i: int):
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        k, flip = int(self.rng.integers(4)), bool(self.rng.integers(2))
        x, y = self.data.x[idx], self.data.classes[idx]
        x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k, axes=(1, 2))
        if flip:
            x, y = x[:, :, ::-1], y[:, :, ::-1]
        x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
        return x, y, pixel_weights(y, self.boundary_weight)
