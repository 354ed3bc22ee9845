"""Score smoothing stored in the bundle: an EWMA, then a k-of-n vote, applied identically by
the evaluation (:func:`smooth_scores`) and the gateway (:class:`ScoreFilter`).

The vote is expressed as a score: the k-th largest of the last n EWMA scores. It is at or
above a limit exactly when at least k of the last n scores are, so the alarm logic (limits,
deadband, on/off delays) stays unchanged and simply sees a filtered score.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from edge_runtime.bundle import ThresholdSpec


class ScoreFilter:
    """Streaming filter: feed raw window scores in order, get the filtered score back."""

    def __init__(self, spec: ThresholdSpec):
        if spec.vote_k > spec.vote_n:
            raise ValueError(f"vote_k {spec.vote_k} > vote_n {spec.vote_n}")
        self.alpha, self.k = spec.ewma_alpha, spec.vote_k
        self._ewma: float | None = None
        self._last: deque[float] = deque(maxlen=spec.vote_n)

    def update(self, score: float) -> float:
        """One raw score in, one filtered score out; a non-finite score passes untouched."""
        if not math.isfinite(score):
            return float(score)
        prev = self._ewma
        self._ewma = score if prev is None else self.alpha * score + (1 - self.alpha) * prev
        self._last.append(self._ewma)
        if len(self._last) < self.k:  # scores are >= 0: missing history votes "normal"
            return 0.0
        return sorted(self._last, reverse=True)[self.k - 1]

    def reset(self) -> None:
        self._ewma = None
        self._last.clear()


def smooth_scores(spec: ThresholdSpec, scores: np.ndarray) -> np.ndarray:
    """Filtered score per window for a whole sequence, exactly as :class:`ScoreFilter`."""
    f = ScoreFilter(spec)
    return np.array([f.update(float(s)) for s in np.asarray(scores, np.float64)])
