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


def contribution_shares(per_tag_errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each window's error share per tag (N, F) and the tag order, largest share first
    (the alarm's likely culprits); a window with no error gets zero shares."""
    err = np.asarray(per_tag_errors, np.float64)
    totals = err.sum(axis=1, keepdims=True)
    shares = err / np.where(totals > 0, totals, 1.0)
    return shares, np.argsort(-shares, axis=1, kind="stable")


def quantile_threshold(normal_scores: np.ndarray, quantile: float, margin: float) -> float:
    """Alarm limit: a high quantile of scores on normal validation windows, times a margin."""
    return float(np.quantile(np.asarray(normal_scores, np.float64), quantile) * margin)


def level_point(scores: np.ndarray, method: str, level: float) -> float:
    """The ``level`` point of (filtered) normal scores by an edge-computable rule: ``quantile``
    (numpy's default interpolation) or ``coverage`` (rank level·(n+1), numpy's ``weibull``).
    Training (``training/thresholds.py``) and the commissioning at the edge
    (``edge_runtime/commissioning.py``) both call this, so a limit means the same on both."""
    s = np.asarray(scores, np.float64)
    if method == "quantile":
        return float(np.quantile(s, level))
    if method == "coverage":
        return float(np.quantile(s, level, method="weibull"))
    raise ValueError(f"unknown limit rule {method!r} at the edge: 'quantile' or 'coverage'")


def scored_windows(x_scaled: np.ndarray, outputs: list[np.ndarray],
                   score: str = "reconstruction") -> tuple[np.ndarray, np.ndarray]:
    """Scores (N,) and per-tag reconstruction errors (N, F) from a model's outputs. The score
    is the reconstruction error, or (``elbo``, a VAE converted with its KL output) the
    negative ELBO = that error + the KL output.

    Outputs are told apart by shape, not order (LiteRT may reorder them): the reconstruction
    has the input's (N, L, F) shape, the KL term is (N, 1)."""
    if score not in ("reconstruction", "elbo"):
        raise ValueError(f"unknown score {score!r}: 'reconstruction' or 'elbo'")
    recon = next(o for o in outputs if np.shape(o) == np.shape(x_scaled))
    per_tag = reconstruction_errors(x_scaled, recon)
    scores = per_tag.mean(axis=1)  # = anomaly_scores(x_scaled, recon)
    if score == "elbo":
        kl = [o for o in outputs if np.shape(o) == (len(scores), 1)]
        if len(kl) != 1:
            raise ValueError("score 'elbo' needs the model's (N, 1) KL output; convert the VAE"
                             " with edge_model(model, 'elbo')")
        scores = scores + np.asarray(kl[0], np.float64)[:, 0]
    return scores, per_tag


def window_scores(x_scaled: np.ndarray, outputs: list[np.ndarray],
                  score: str = "reconstruction") -> np.ndarray:
    """Only the scores of :func:`scored_windows`."""
    return scored_windows(x_scaled, outputs, score)[0]
