"""Classical reference monitor: PCA Hotelling T² and SPE (Q), with per-tag SPE contributions.

Fitted on scaled normal rows; T² measures variation inside the principal subspace, SPE the
squared residual outside it. Every deep model is reported next to this monitor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA


@dataclass
class PCAMonitor:
    mean: np.ndarray  # (F,)
    components: np.ndarray  # (k, F) loadings
    variances: np.ndarray  # (k,) eigenvalues

    @classmethod
    def fit(cls, rows: np.ndarray, variance: float = 0.9) -> PCAMonitor:
        """Keep the fewest components explaining ``variance`` of the (scaled) rows."""
        pca = PCA(n_components=variance, svd_solver="full").fit(np.asarray(rows, np.float64))
        return cls(pca.mean_, pca.components_, np.maximum(pca.explained_variance_, 1e-12))

    def _residual(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        centred = np.asarray(rows, np.float64) - self.mean
        t = centred @ self.components.T
        return t, centred - t @ self.components

    def t2(self, rows: np.ndarray) -> np.ndarray:
        """Hotelling T² per row: Σ t_i² / λ_i over the retained components."""
        t, _ = self._residual(rows)
        return np.sum(t**2 / self.variances, axis=1)

    def spe(self, rows: np.ndarray) -> np.ndarray:
        """Squared prediction error (Q) per row."""
        return self.spe_contributions(rows).sum(axis=1)

    def spe_contributions(self, rows: np.ndarray) -> np.ndarray:
        """Per-tag squared residual (N, F); a row's shares name the tags off the model."""
        _, residual = self._residual(rows)
        return residual**2
