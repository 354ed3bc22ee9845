"""Alarm limits calibrated on scores of normal validation data only, by a named rule.

Rules: ``quantile`` (empirical quantile of the filtered normal scores, numpy's default
interpolation), ``coverage`` (the order statistic at rank ``level``·(n+1), see
:func:`coverage_quantile`) or ``kde`` (the same quantile of a Gaussian kernel density fitted
to them — smoother in the tail when the validation set is small). Each is multiplied by
``margin``. The scores are filtered first (EWMA + k-of-n, :mod:`edge_runtime.smoothing`) so
the limit applies to what the alarm sees.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import optimize, stats

from edge_runtime.bundle import ThresholdSpec
from edge_runtime.scoring import level_point
from edge_runtime.smoothing import smooth_scores

Rule = Literal["quantile", "coverage", "kde"]


def kde_quantile(scores: np.ndarray, level: float) -> float:
    """Score below which ``level`` of a Gaussian KDE's mass lies (Scott's bandwidth)."""
    s = np.asarray(scores, np.float64)
    kde = stats.gaussian_kde(s)
    lo, hi = s.min() - 10 * s.std(), s.max() + 10 * s.std()
    return float(optimize.brentq(lambda x: kde.integrate_box_1d(-np.inf, x) - level, lo, hi))


def coverage_quantile(scores: np.ndarray, level: float) -> float:
    """Limit whose expected coverage of new normal scores is ``level`` (false alarms 1 − level).

    For n exchangeable scores the k-th smallest covers on average k/(n+1) of new ones, so the
    rank is k = level·(n+1) (Weibull plotting position, interpolated between ranks). numpy's
    default quantile uses rank 1 + level·(n−1): with n = 100 and level 0.95 its expected
    coverage is 95.05/101 = 0.941, i.e. 5.9 % false alarms expected where 5 % was asked. The
    gap is one rank at any n, so it matters only for small validation sets. A level above
    n/(n+1) cannot be reached from n scores: the maximum is returned.
    """
    return level_point(scores, "coverage", level)


def limit(scores: np.ndarray, rule: Rule, level: float) -> float:
    """The level point by ``rule``; quantile and coverage are the edge's own code
    (:func:`edge_runtime.scoring.level_point`: a commissioning at the edge reproduces them)."""
    if rule == "kde":
        return kde_quantile(scores, level)
    return level_point(scores, rule, level)


def calibrate(normal_scores: np.ndarray, rule: Rule = "quantile", level: float = 0.995,
              margin: float = 1.0, clear_ratio: float = 1.0, on_delay: int = 1,
              off_delay: int = 1, ewma_alpha: float = 1.0, vote_k: int = 1,
              vote_n: int = 1) -> ThresholdSpec:
    """ThresholdSpec whose raise limit is ``margin`` × the ``level`` point of filtered scores."""
    base = ThresholdSpec(raise_at=0.0, clear_at=0.0, on_delay=on_delay, off_delay=off_delay,
                         ewma_alpha=ewma_alpha, vote_k=vote_k, vote_n=vote_n)
    raise_at = limit(smooth_scores(base, normal_scores), rule, level) * margin
    rule_text = (f"{level} {rule} of filtered normal validation scores x {margin}"
                 f" (ewma {ewma_alpha}, {vote_k}-of-{vote_n}, on-delay {on_delay})")
    return base.model_copy(update={"raise_at": raise_at, "clear_at": raise_at * clear_ratio,
                                   "rule": rule_text, "method": rule, "level": level,
                                   "margin": margin, "clear_ratio": clear_ratio})

