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

Two ways to fit (``model.texture``): ``spectrum`` keeps one mean spectrum per class, so every
sample of a class carries the same texture strength and grain; ``exemplar`` keeps the
amplitude spectrum of each of up to :data:`EXEMPLARS_PER_CLASS` training tiles' residuals and
gives each sample the spectrum of one of them, drawn at random (random-phase noise from a
single exemplar, as Galerne et al. define it), so the variety of texture between real tiles
(a faint surface beside a deeply grooved one) is carried into the samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TEXTURE_FILE = "texture.npz"
EXEMPLARS_PER_CLASS = 64  # at 128 px: ≤ 6 × 64 spectra × 32 KiB (float16); 8.3 MB compressed
SAMPLE_CHUNK = 256  # fields drawn at a time (the noise stream is the same as in one draw)


class ResidualTexture:
    """Amplitude spectra (k, size, size, channels) and the class each belongs to: one per
    class (``fit``) or one per kept training tile (``fit_exemplars``)."""

    def __init__(self, amplitude: np.ndarray, owners: np.ndarray | None = None):
        self.amplitude = np.asarray(amplitude, np.float32)
        self.owners = (np.arange(len(self.amplitude)) if owners is None
                       else np.asarray(owners, int))

    @classmethod
    def fit(cls, residuals: np.ndarray, classes: np.ndarray, n_classes: int) -> ResidualTexture:
        """Mean power spectrum of ``residuals`` (n, size, size, channels) per class; a class
        with no residual takes the spectrum of all of them."""
        power = np.abs(np.fft.fft2(np.asarray(residuals, np.float64), axes=(1, 2))) ** 2
        pooled = power.mean(0)
        per_class = [power[classes == k].mean(0) if np.any(classes == k) else pooled
                     for k in range(n_classes)]
        return cls(np.sqrt(np.stack(per_class)))

    @classmethod
    def fit_exemplars(cls, residuals: np.ndarray, classes: np.ndarray, n_classes: int,
                      per_class: int = EXEMPLARS_PER_CLASS) -> ResidualTexture:
        """Each kept residual's own amplitude spectrum: up to ``per_class`` tiles per class,
        evenly spaced through the class (deterministic); a class with no residual draws
        from all of them. Stored at float16 precision, the precision the run file keeps."""
        classes = np.asarray(classes, int)
        keep = np.concatenate([_evenly(np.flatnonzero(classes == k), per_class)
                               for k in range(n_classes)]).astype(int)
        if len(keep) == 0:
            raise ValueError("residual texture needs at least one residual image")
        amplitude = np.abs(np.fft.fft2(np.asarray(residuals, np.float64)[keep], axes=(1, 2)))
        return cls(amplitude.astype(np.float16), classes[keep])

    def sample(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One field per class index (n, size, size, channels), float32. White noise's DFT
        has expected power size² at every frequency, so dividing by the side gives the
        fitted power exactly in expectation."""
        rows = self._rows(np.asarray(classes, int), rng)
        side = float(np.sqrt(self.amplitude.shape[1] * self.amplitude.shape[2]))
        out = np.empty((len(rows), *self.amplitude.shape[1:]), np.float32)
        for start in range(0, len(rows), SAMPLE_CHUNK):  # bounded memory for any --n
            part = rows[start:start + SAMPLE_CHUNK]
            white = rng.standard_normal((len(part), *self.amplitude.shape[1:]))
            spectrum = np.fft.fft2(white, axes=(1, 2)) * self.amplitude[part] / side
            out[start:start + len(part)] = np.fft.ifft2(spectrum, axes=(1, 2)).real
        return out

    def _rows(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The spectrum each sample takes: one of its class's, drawn at random (any one for a
        class that has none). A class-mean texture has one per class, and a draw from a
        pool of one takes no random number, so its noise stream is as it always was."""
        rows = np.empty(len(classes), int)
        for k in np.unique(classes):
            pool = np.flatnonzero(self.owners == k)
            pool = pool if len(pool) else np.arange(len(self.owners))
            rows[classes == k] = rng.choice(pool, size=int(np.sum(classes == k)))
        return rows

    def save(self, run_dir: Path) -> str:
        """Exemplar spectra (more than one per class) at float16, the precision they were
        fitted at; class means at float32."""
        per_tile = len(self.owners) > len(np.unique(self.owners))
        np.savez_compressed(Path(run_dir) / TEXTURE_FILE, owners=self.owners,
                            amplitude=self.amplitude.astype(np.float16 if per_tile
                                                            else np.float32))
        return TEXTURE_FILE

    @classmethod
    def load(cls, run_dir: Path, name: str = TEXTURE_FILE) -> ResidualTexture:
        with np.load(Path(run_dir) / name) as data:
            return cls(data["amplitude"], data.get("owners"))


def _evenly(indices: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` of ``indices``, evenly spaced from the first to the last."""
    if len(indices) <= n:
        return indices
    return indices[np.unique(np.round(np.linspace(0, len(indices) - 1, n)).astype(int))]
