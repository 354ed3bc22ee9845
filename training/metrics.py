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
