"""Raise/clear logic for anomaly scores: on-delay, off-delay and a deadband.

The same class replays scores at training time (to measure what the edge will do) and runs
live in the daemon, so the evaluated alarm behaviour is the deployed one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge_runtime.bundle import ThresholdSpec

Transition = Literal["raise", "clear"]


@dataclass
class AlarmLogic:
    spec: ThresholdSpec
    active: bool = False
    _above: int = 0
    _below: int = 0

    def update(self, score: float) -> Transition | None:
        """Feed one window's score; return 'raise' or 'clear' on a state change."""
        if not np.isfinite(score):
            return None
        if self.active:
            self._below = self._below + 1 if score < self.spec.clear_at else 0
            if self._below >= self.spec.off_delay:
                self.active, self._below = False, 0
                return "clear"
        else:
            self._above = self._above + 1 if score >= self.spec.raise_at else 0
            if self._above >= self.spec.on_delay:
                self.active, self._above = True, 0
                return "raise"
        return None

    def priority(self, score: float) -> str:
        """Margin over the raise limit → low / medium / high / urgent."""
        ratio = score / self.spec.raise_at if self.spec.raise_at > 0 else np.inf
        if ratio >= 4:
            return "urgent"
        if ratio >= 2:
            return "high"
        if ratio >= 1.3:
            return "medium"
        return "low"


def replay(spec: ThresholdSpec, scores: np.ndarray) -> np.ndarray:
    """Alarm-active flag per window for a score sequence, exactly as the daemon would set it."""
    logic = AlarmLogic(spec)
    active = np.zeros(len(scores), dtype=bool)
    for i, score in enumerate(scores):
        logic.update(float(score))
        active[i] = logic.active
    return active
