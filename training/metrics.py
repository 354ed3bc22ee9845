"""Metrics with the definitions the benchmarks publish (so figures compare like for like)."""

from __future__ import annotations

import numpy as np


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE, MAE, RMSE and R² over every element (windows × steps × targets)."""
    t = np.asarray(y_true, np.float64).ravel()
    p = np.asarray(y_pred, np.float64).ravel()
    mse = float(np.mean((t - p) ** 2))
    ss_tot = float(np.sum((t - t.mean()) ** 2)) or 1.0
    return {
        "mse": mse,
        "mae": float(np.mean(np.abs(t - p))),
        "rmse": float(np.sqrt(mse)),
        "r2": 1.0 - float(np.sum((t - p) ** 2)) / ss_tot,
    }


def detection_metrics(labels: np.ndarray, flags: np.ndarray) -> dict[str, float]:
    """F1 = TP/(TP+(FP+FN)/2); FAR = FP/(FP+TN)·100; MAR = FN/(FN+TP)·100 (SKAB's definitions)."""
    y = np.asarray(labels, bool)
    f = np.asarray(flags, bool)
    tp = int(np.sum(y & f))
    fp = int(np.sum(~y & f))
    fn = int(np.sum(y & ~f))
    tn = int(np.sum(~y & ~f))
    return {
        "f1": tp / (tp + (fp + fn) / 2) if tp + fp + fn else 1.0,
        "far": 100.0 * fp / (fp + tn) if fp + tn else 0.0,
        "mar": 100.0 * fn / (fn + tp) if fn + tp else 0.0,
    }


def forecast_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                     quantiles: list[float] | None = None) -> dict[str, float]:
    """Point metrics of a forecast; for a quantile forecast (N, H, T, Q) they are taken on
    P50, plus the interval ``coverage`` (share of actuals inside [lowest, highest] level, whose
    nominal value is ``highest − lowest``: 0.8 for P10–P90) and the mean ``pinball`` loss."""
    if not quantiles:
        return regression_metrics(y_true, y_pred)
    y = np.asarray(y_true, np.float64)
    p = np.asarray(y_pred, np.float64)
    metrics = regression_metrics(y, p[..., quantiles.index(0.5)])
    metrics["coverage"] = float(np.mean((y >= p[..., 0]) & (y <= p[..., -1])))
    levels = np.asarray(quantiles)
    error = y[..., None] - p
    metrics["pinball"] = float(np.mean(np.maximum(levels * error, (levels - 1) * error)))
    metrics["crossing_share"] = crossing_share(p)
    return metrics


def crossing_share(y_pred: np.ndarray) -> float:
    """Share of (window, step, target) cells whose quantiles are not ascending (should be 0)."""
    return float(np.mean(np.any(np.diff(np.asarray(y_pred), axis=-1) < 0, axis=-1)))
