"""Anomaly scores and per-tag contributions — the same numpy code scores Keras at training time
and LiteRT at the edge, so a threshold calibrated on the workstation means the same thing on
the gateway."""

from __future__ import annotations

import math

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
    """The ``level`` point of (filtered) normal scores by a named rule: ``quantile`` (numpy's
    default interpolation), ``coverage`` (rank level·(n+1), numpy's ``weibull``) or ``kde``
    (the quantile of a Gaussian kernel density, :func:`kde_point`). Training
    (``training/thresholds.py``) and the commissioning at the edge
    (``edge_runtime/commissioning.py``) both compute limits with these rules."""
    s = np.asarray(scores, np.float64)
    if method == "quantile":
        return float(np.quantile(s, level))
    if method == "coverage":
        return float(np.quantile(s, level, method="weibull"))
    if method == "kde":
        return kde_point(s, level)
    raise ValueError(f"unknown limit rule {method!r}: 'quantile', 'coverage' or 'kde'")


_erf = np.vectorize(math.erf, otypes=[np.float64])


def kde_point(scores: np.ndarray, level: float) -> float:
    """Score below which ``level`` of a Gaussian KDE's mass lies: SciPy's ``gaussian_kde``
    (Scott's bandwidth n^-1/5 × the sample standard deviation) and the bracket training uses,
    solved by bisection in numpy, since a gateway has no SciPy. Constant scores: that value."""
    s = np.asarray(scores, np.float64)
    sd = float(s.std(ddof=1)) if len(s) > 1 else 0.0
    if not sd > 0:
        return float(s.mean())
    scale = sd * len(s) ** -0.2 * math.sqrt(2.0)

    def mass_below(x: float) -> float:
        return float(np.mean(0.5 * (1.0 + _erf((x - s) / scale))))

    lo, hi = s.min() - 10 * s.std(), s.max() + 10 * s.std()
    while True:
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):  # the bracket is one float wide
            return mid
        lo, hi = (mid, hi) if mass_below(mid) < level else (lo, mid)


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
