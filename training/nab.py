"""NAB scoring of change-point detections, as SKAB publishes it (windows to the right).

Each true change point opens a detection window ``[cp, cp + window_s]``. The first detection
in a window earns ``A_tp`` scaled by a sigmoid of its position (1 at the window start, 0 at its
end); later detections in the same window are ignored. A detection outside every window costs
``A_fp`` times a sigmoid of its distance past the previous window (the full ``A_fp`` before any
window); a window without detection costs ``A_fn``. Raw scores are summed over files, then
normalised: a perfect detector (each window hit at its start) scores 100, the null detector 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PROFILES = {
    "standard": (1.0, 0.11, 1.0),  # (A_tp, A_fp, A_fn) as positive weights
    "low_fp": (1.0, 0.22, 1.0),
    "low_fn": (1.0, 0.11, 2.0),
}


def scaled_sigmoid(position: float) -> float:
    """NAB's weight: +0.987 at the window start (−1), 0 at its end (0), → −1 far past it."""
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + np.exp(5.0 * position)) - 1.0


@dataclass
class NabTally:
    """Raw, perfect and null scores of one or more files (add them up, then normalise)."""

    raw: float = 0.0
    perfect: float = 0.0
    null: float = 0.0

    def __add__(self, other: NabTally) -> NabTally:
        return NabTally(self.raw + other.raw, self.perfect + other.perfect,
                        self.null + other.null)

    def normalised(self) -> float:
        span = self.perfect - self.null
        return 100.0 * (self.raw - self.null) / span if span else 0.0


def nab_tally(times_s: np.ndarray, true_cp: np.ndarray, detections: np.ndarray,
              window_s: float = 60.0, profile: str = "standard") -> NabTally:
    """Score one file: ``times_s`` (N,) seconds, boolean change points and detections (N,)."""
    a_tp, a_fp, a_fn = PROFILES[profile]
    t = np.asarray(times_s, np.float64)
    starts = t[np.asarray(true_cp, bool)]
    windows = [(s, s + window_s) for s in starts]
    max_tp = scaled_sigmoid(-1.0)
    raw, hit = 0.0, [False] * len(windows)
    for ts in t[np.asarray(detections, bool)]:
        inside = [i for i, (s, e) in enumerate(windows) if s <= ts <= e]
        if inside:
            i = inside[0]
            if not hit[i]:
                s, e = windows[i]
                hit[i] = True
                raw += a_tp * scaled_sigmoid(-(e - ts) / (e - s)) / max_tp
            continue
        before = [(s, e) for s, e in windows if e < ts]
        if not before:
            raw -= a_fp
        else:
            s, e = before[-1]
            raw += a_fp * scaled_sigmoid((ts - e) / (e - s))
    raw -= a_fn * hit.count(False)
    return NabTally(raw, a_tp * len(windows), -a_fn * len(windows))


def changepoints_from_flags(flags: np.ndarray) -> np.ndarray:
    """SKAB's convention: a detected change point wherever the anomaly flag switches."""
    f = np.asarray(flags, np.int8)
    return np.concatenate([[False], np.diff(f) != 0])
