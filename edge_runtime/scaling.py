"""Per-tag standardisation shared by training and the gateway (no scikit-learn at the edge)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.bundle import ScalerSpec


@dataclass(frozen=True)
class StandardScaler:
    """``(x - mean) / scale`` per column; fitted on training rows only, never on later data."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, rows: np.ndarray) -> StandardScaler:
        rows = np.asarray(rows, dtype=np.float64)
        mean = np.nanmean(rows, axis=0)
        scale = np.nanstd(rows, axis=0)  # population std, as the published protocols use
        scale = np.where(scale > 1e-12, scale, 1.0)
        return cls(mean, scale)

    @classmethod
    def from_spec(cls, spec: ScalerSpec) -> StandardScaler:
        return cls(np.asarray(spec.mean, dtype=np.float64), np.asarray(spec.scale, np.float64))

    def to_spec(self) -> ScalerSpec:
        return ScalerSpec(mean=[float(v) for v in self.mean], scale=[float(v) for v in self.scale])

    def transform(self, rows: np.ndarray) -> np.ndarray:
        """Scaled rows, float32. Computed in float64 in one buffer: the same bits as
        ``((rows - mean) / scale).astype(float32)`` with two temporaries fewer (this runs on
        every window at the gateway)."""
        out = np.subtract(rows, self.mean, dtype=np.float64)
        np.divide(out, self.scale, out=out)
        return out.astype(np.float32)

    def inverse(self, values: np.ndarray, columns: list[int] | None = None) -> np.ndarray:
        """Back to engineering units; ``columns`` picks the scaler columns of ``values``."""
        idx = slice(None) if columns is None else columns
        return np.asarray(values, dtype=np.float64) * self.scale[idx] + self.mean[idx]
