"""Residual texture for the image CVAE's samples: a stationary Gaussian field per class with
the power spectrum of what the decoder misses.

A Gaussian decoder fits each tile's mean: its images carry the shading and the large marks but
none of the surface's streaks and grain, and at 128 px a tile classifier's features tell them
apart at once. The missing part is what is left after the decoder reconstructs a training
tile, r = x − decode(encode(x)). Its average power spectrum per class, |R(f)|², fitted once
after training, defines a stationary Gaussian texture (the random-phase noise of Galerne,
Gousseau and Morel, 2011): white noise filtered by the spectrum's amplitude has that power
spectrum, so oriented streaks keep their orientation and scale. A sample is the decoded mean
plus one such field: the image counterpart of the window CVAE's AR(1) residual noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TEXTURE_FILE = "texture.npz"


class ResidualTexture:
    """Per class the amplitude spectrum (size, size, channels) of the residual images."""

    def __init__(self, amplitude: np.ndarray):
        self.amplitude = np.asarray(amplitude, np.float32)  # (classes, size, size, channels)

    @classmethod
    def fit(cls, residuals: np.ndarray, classes: np.ndarray, n_classes: int) -> ResidualTexture:
        """Mean power spectrum of ``residuals`` (n, size, size, channels) per class; a class
        with no residual takes the spectrum of all of them."""
        power = np.abs(np.fft.fft2(np.asarray(residuals, np.float64), axes=(1, 2))) ** 2
        pooled = power.mean(0)
        per_class = [power[classes == k].mean(0) if np.any(classes == k) else pooled
                     for k in range(n_classes)]
        return cls(np.sqrt(np.stack(per_class)))

    def sample(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One field per class index (n, size, size, channels), float32. White noise's DFT
        has expected power size² at every frequency, so dividing by the side gives the
        fitted power exactly in expectation."""
        classes = np.asarray(classes, int)
        white = rng.standard_normal((len(classes), *self.amplitude.shape[1:]))
        side = float(np.sqrt(self.amplitude.shape[1] * self.amplitude.shape[2]))
        spectrum = np.fft.fft2(white, axes=(1, 2)) * self.amplitude[classes] / side
        return np.fft.ifft2(spectrum, axes=(1, 2)).real.astype(np.float32)

    def save(self, run_dir: Path) -> str:
        np.savez_compressed(Path(run_dir) / TEXTURE_FILE, amplitude=self.amplitude)
        return TEXTURE_FILE

    @classmethod
    def load(cls, run_dir: Path, name: str = TEXTURE_FILE) -> ResidualTexture:
        with np.load(Path(run_dir) / name) as data:
            return cls(data["amplitude"])
