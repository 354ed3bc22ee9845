"""One statistic from several monitors (T², SPE, an autoencoder's error …) under one limit.

Rank (Fisher) fusion: each statistic is turned into its tail probability among its own normal
reference scores, p = (1 + #{reference ≥ s}) / (n + 1), and the fused score is −Σ log p. No
statistic's unit or scale matters, a statistic that is far out on its own raises the fused
score as much as several that are mildly out together, and one limit on the fused score
replaces an OR of separate limits (whose false alarms add up).

Beyond the largest reference score the empirical tail has nothing left to count, so
p would stop at 1/(n + 1) and the fused score at S·log(n + 1): a limit above that (a high
quantile times a margin) could never be reached and the monitor would never alarm. Past the
largest reference score p therefore falls on an exponential tail fitted to the reference's
largest scores (peaks over threshold with a generalised Pareto of shape 0, the usual first
choice for score tails), anchored at 1/(n + 1) so it joins the empirical tail continuously.

Per-tag contributions are kept: each monitor's per-tag shares, weighted by that monitor's
part (−log p) of the fused score, so an alarm still names the tags that drove it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TAIL_SHARE = 0.05  # share of the reference's largest scores the exponential tail is fitted to
TAIL_MIN = 10  # … and at least this many


def tail_scale(ref: np.ndarray) -> float:
    """Mean excess of the largest scores of sorted ``ref`` over the score just below them:
    the scale of an exponential tail (its maximum-likelihood fit); > 0 always."""
    k = min(len(ref) - 1, max(TAIL_MIN, int(np.ceil(TAIL_SHARE * len(ref)))))
    if k < 1:
        return 1e-12
    excess = float(np.mean(ref[-k:] - ref[-k - 1]))
    return excess if excess > 0 else max(abs(float(ref[-1])) * 1e-9, 1e-12)


@dataclass
class RankFusion:
    references: list[np.ndarray]  # sorted normal scores, one array per statistic

    @classmethod
    def fit(cls, normal_stats: list[np.ndarray]) -> RankFusion:
        """References from the statistics of normal rows (non-finite values dropped)."""
        refs = [np.sort(np.asarray(s, np.float64)[np.isfinite(s)]) for s in normal_stats]
        if not refs or any(len(r) == 0 for r in refs):
            raise ValueError("rank fusion needs finite normal scores for every statistic")
        return cls(refs)

    def parts(self, stats: list[np.ndarray]) -> np.ndarray:
        """(N, S): −log tail probability of each statistic; NaN where it has no score."""
        if len(stats) != len(self.references):
            raise ValueError(f"{len(stats)} statistics for {len(self.references)} references")
        cols = []
        for ref, s in zip(self.references, stats, strict=True):
            s = np.asarray(s, np.float64)
            filled = np.nan_to_num(s, nan=-np.inf)
            above = len(ref) - np.searchsorted(ref, filled, side="left")
            part = -np.log((1.0 + above) / (len(ref) + 1.0))
            beyond = filled > ref[-1]
            part[beyond] += (s[beyond] - ref[-1]) / tail_scale(ref)
            cols.append(np.where(np.isfinite(s), part, np.nan))
        return np.stack(cols, axis=1)

    def fuse(self, stats: list[np.ndarray]) -> np.ndarray:
        """The fused score per row (NaN where any statistic is missing)."""
        return self.parts(stats).sum(axis=1)

    def contributions(self, stats: list[np.ndarray],
                      per_tag: list[np.ndarray]) -> np.ndarray:
        """(N, F) per-tag contributions: each statistic's tag shares × its part of the score."""
        parts = self.parts(stats)
        out = np.zeros(per_tag[0].shape)
        for j, contrib in enumerate(per_tag):
            c = np.clip(np.asarray(contrib, np.float64), 0.0, None)
            share = c / np.maximum(c.sum(axis=1, keepdims=True), 1e-300)
            out += share * parts[:, j:j + 1]
        return out
