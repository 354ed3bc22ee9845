"""Sample-and-hold tags: an analyzer that reports every k-th step holds its last value in
between, so its real windows are staircases. A generator that decodes smooth curves for such a
tag is told apart by the missing steps alone (TEP: tags 23–36 sampled every 2 steps, 37–41
every 5). This module learns, per tag, the hold length from the training windows and gives
generated windows of those tags the same staircase. Pure numpy: used on the workstation.

Detection: within each window the steps where a tag's value changes; the gaps between two
changes are complete runs of one value. A tag is held with cadence k when it has at least
``min_runs`` complete runs, the most common run length k is ≥ 2 and at least ``share`` of the
runs last exactly k steps (a quantised tag repeats too, but its runs vary in length).

Holding: per window and per cadence one phase p, drawn uniformly in [0, k) — a window starts
at any step, and in the data all tags of one cadence change on the same steps — then the
value at step t is the generated value at the sampling instant p + k·⌊(t − p)/k⌋ (step 0 for
the steps before the window's first sampling instant: the value held from before it).
"""

from __future__ import annotations

import numpy as np


def run_lengths(x: np.ndarray, tag: int, tol: float = 0.0) -> np.ndarray:
    """Lengths (in steps) of the complete runs of one value of ``tag`` inside windows
    ``x`` (n, L, F): the gaps between consecutive changes within one window."""
    changes = np.abs(np.diff(x[:, :, tag], axis=1)) > tol
    win, pos = np.nonzero(changes)  # sorted by window, then step
    same = win[1:] == win[:-1]
    return np.diff(pos)[same]


def detect(x: np.ndarray, share: float = 0.8, min_runs: int = 5, tol: float = 0.0
           ) -> np.ndarray:
    """Per tag, its hold length in steps (1: not held) from windows ``x`` (n, L, F)."""
    steps = np.ones(x.shape[2], dtype=np.int64)
    for tag in range(x.shape[2]):
        runs = run_lengths(x, tag, tol)
        if len(runs) < min_runs:
            continue
        counts = np.bincount(runs)
        k = int(counts.argmax())
        if k >= 2 and counts[k] >= share * len(runs):
            steps[tag] = k
    return steps


def hold(x: np.ndarray, steps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Windows ``x`` (n, L, F) with every tag of hold length k > 1 held between sampling
    instants (one random phase per window and cadence); other tags unchanged."""
    out = np.array(x, copy=True)
    n, length = x.shape[:2]
    t = np.arange(length)[None, :]
    rows = np.arange(n)[:, None]
    for k in np.unique(steps[steps > 1]):
        tags = np.flatnonzero(steps == k)
        phase = rng.integers(0, k, size=(n, 1))
        instant = np.maximum(phase + k * np.floor_divide(t - phase, k), 0)  # (n, L)
        out[:, :, tags] = x[rows, instant][:, :, tags]
    return out
