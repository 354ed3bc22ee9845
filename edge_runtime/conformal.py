"""Conformal calibration of a quantile forecast, applied at the edge (pure numpy).

Pinball-trained quantile heads come out too narrow on real data (P10–P90 covering 64–70 %
of ETTh1 test values instead of 80 %). Split-conformal quantile regression (CQR, Romano et
al., 2019, the per-level form) fixes that without retraining: on held-out validation windows
each level τ gets the offset δ that makes the τ-quantile hold there, per forecast step and
target (``training/conformal.py`` fits them); the edge adds the same offsets to the model's
quantiles. The median's offset is 0, so the point forecast is the model's own. The levels are
then sorted per cell (monotone rearrangement): an offset never makes the quantiles cross.
"""

from __future__ import annotations

import numpy as np


def apply_offsets(quantiles: np.ndarray, offsets: np.ndarray | list) -> np.ndarray:
    """(N, H, T, Q) quantiles (scaled units) + (H, T, Q) offsets, ascending along Q.
    Empty ``offsets``: the quantiles unchanged (an uncalibrated bundle)."""
    q = np.asarray(quantiles)
    delta = np.asarray(offsets, dtype=q.dtype)
    if delta.size == 0:
        return q
    if delta.shape != q.shape[1:]:
        raise ValueError(f"conformal offsets of shape {delta.shape} for quantiles of shape "
                         f"{q.shape} (expected {q.shape[1:]})")
    return np.sort(q + delta, axis=-1)
