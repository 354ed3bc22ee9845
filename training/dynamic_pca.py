"""Dynamic PCA (Ku, Storer & Georgakis 1995): PCA T² and SPE on each row augmented with its
``lags`` previous rows, the classical reference for faults that show in dynamics (a sticking
valve, a slow drift of a controlled loop) more than in any single sample.

A row's statistics use only that row and earlier ones (like a window ending there); the first
``lags`` rows have none (NaN), as the deep models' first ``window - 1`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.pca_monitor import PCAMonitor


def lagged(rows: np.ndarray, lags: int) -> np.ndarray:
    """(N, F) → (N, F·(lags+1)): row t followed by rows t-1 … t-lags; NaN where missing."""
    rows = np.asarray(rows, np.float64)
    out = np.full((len(rows), rows.shape[1] * (lags + 1)), np.nan)
    for k in range(lags + 1):
        out[k:, k * rows.shape[1]:(k + 1) * rows.shape[1]] = rows[:len(rows) - k]
    return out


@dataclass
class DynamicPCA:
    """A :class:`PCAMonitor` on lagged rows; contributions are folded back onto the tags."""

    pca: PCAMonitor
    lags: int
    features: int

    @classmethod
    def fit(cls, rows: np.ndarray, lags: int = 2, variance: float = 0.9) -> DynamicPCA:
        if lags < 0 or len(rows) <= lags + 1:
            raise ValueError(f"dynamic PCA with {lags} lags needs more than {lags + 1} rows")
        x = lagged(rows, lags)[lags:]
        return cls(PCAMonitor.fit(x, variance), lags, np.asarray(rows).shape[1])

    def _apply(self, rows: np.ndarray, stat) -> np.ndarray:
        x = lagged(rows, self.lags)
        out = np.full(len(x), np.nan)
        ok = np.all(np.isfinite(x), axis=1)
        if ok.any():
            out[ok] = stat(x[ok])
        return out

    def t2(self, rows: np.ndarray) -> np.ndarray:
        return self._apply(rows, self.pca.t2)

    def spe(self, rows: np.ndarray) -> np.ndarray:
        return self._apply(rows, self.pca.spe)

    def spe_contributions(self, rows: np.ndarray) -> np.ndarray:
        """(N, F): each tag's squared residual summed over its lags (NaN rows: no history)."""
        x = lagged(rows, self.lags)
        out = np.full((len(x), self.features), np.nan)
        ok = np.all(np.isfinite(x), axis=1)
        if ok.any():
            per = self.pca.spe_contributions(x[ok]).reshape(-1, self.lags + 1, self.features)
            out[ok] = per.sum(axis=1)
        return out
