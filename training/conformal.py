"""Fitting the split-conformal offsets of a quantile forecaster on validation windows (the
edge applies them: :mod:`edge_runtime.conformal`, which says why).

Level τ, forecast step h, target t: δ is the τ-quantile of the residuals y − q̂_τ over the
calibration windows, taken conservatively (the finite-sample rank ⌈(n + 1)τ⌉ above the median,
⌊(n + 1)τ⌋ below), so that after the shift y ≤ q̂_τ + δ holds for a share τ of new windows
when they are exchangeable with the calibration ones. The median keeps δ = 0.

The validation split also stopped the training early, which leaves the offsets a little
optimistic; a separate calibration split would cost ETT's short validation year.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.conformal import apply_offsets
from training.metrics import forecast_metrics


def fit_offsets(y: np.ndarray, quantiles: np.ndarray, levels: list[float]) -> np.ndarray:
    """(N, H, T) actuals and (N, H, T, Q) quantiles of the calibration windows → (H, T, Q)."""
    y = np.asarray(y, np.float64)
    q = np.asarray(quantiles, np.float64)
    n = len(y)
    if n == 0:
        raise ValueError("conformal calibration needs at least one validation window")
    residual = y[..., None] - q  # (N, H, T, Q)
    offsets = np.zeros(q.shape[1:])
    for j, tau in enumerate(levels):
        if tau == 0.5:
            continue
        rank = np.ceil((n + 1) * tau) if tau > 0.5 else np.floor((n + 1) * tau)
        k = int(np.clip(rank, 1, n)) - 1  # 0-based order statistic
        offsets[..., j] = np.sort(residual[..., j], axis=0)[k]
    return offsets.astype(np.float32)


def calibrated_metrics(y: np.ndarray, quantiles: np.ndarray, levels: list[float],
                       offsets: np.ndarray) -> dict[str, float]:
    """``coverage`` and ``pinball`` of the calibrated quantiles, as ``*_conformal``."""
    m = forecast_metrics(y, apply_offsets(quantiles, offsets), levels)
    return {"coverage_conformal": m["coverage"], "pinball_conformal": m["pinball"]}
