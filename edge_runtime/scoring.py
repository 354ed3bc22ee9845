"""Anomaly scores and per-tag contributions — the same numpy code scores Keras at training time
and LiteRT at the edge, so a threshold calibrated on the workstation means the same thing on
the gateway."""

from __future__ import annotations

import numpy as np


def reconstruction_errors(x_scaled: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """Mean squared error per window and tag: (N, L, F) → (N, F)."""
    diff = np.asarray(x_scaled, np.float64) - np.asarray(reconstruction, np.float64)
    return np.mean(diff**2, axis=1)


def anomaly_scores(x_scaled: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """One score per window: mean squared reconstruction error over all steps and tags."""
    return reconstruction_errors(x_scaled, reconstruction).mean(axis=1)


def contributions(per_tag_error: np.ndarray, tags: list[str]) -> list[tuple[str, float]]:
    """Share of one window's error per tag, largest first (the alarm's likely culprits)."""
    err = np.asarray(per_tag_error, np.float64)
    total = float(err.sum()) or 1.0
    ranked = sorted(zip(tags, err / total, strict=True), key=lambda kv: -kv[1])
    return [(tag, float(share)) for tag, share in ranked]


def quantile_threshold(normal_scores: np.ndarray, quantile: float, margin: float) -> float:
    """Alarm limit: a high quantile of scores on normal validation windows, times a margin."""
    return float(np.quantile(np.asarray(normal_scores, np.float64), quantile) * margin)


def window_scores(x_scaled: np.ndarray, outputs: list[np.ndarray],
                  score: str = "reconstruction") -> np.ndarray:
    """One score per window from a model's outputs: the reconstruction error, or (``elbo``,
    a VAE converted with its KL output) the negative ELBO = that error + the KL output.

    Outputs are told apart by shape, not order (LiteRT may reorder them): the reconstruction
    has the input's (N, L, F) shape, the KL term is (N, 1)."""
    recon = next(o for o in outputs if np.shape(o) == np.shape(x_scaled))
    mse = anomaly_scores(x_scaled, recon)
    if score == "reconstruction":
        return mse
    if score != "elbo":
        raise ValueError(f"unknown score {score!r}: 'reconstruction' or 'elbo'")
    kl = [o for o in outputs if np.shape(o) == (len(mse), 1)]
    if len(kl) != 1:
        raise ValueError("score 'elbo' needs the model's (N, 1) KL output; convert the VAE"
                         " with edge_model(model, 'elbo')")
    return mse + np.asarray(kl[0], np.float64)[:, 0]
