"""Lab values meet estimates: the one rule that pairs a lab value with a window (training pairs
labels with windows by it, the gateway pairs incoming lab values with its past estimates by
it) and the bias update that corrects a soft sensor from the lab values it is given.

A lab or analyzer value stamped ``t`` describes the process at ``t - dead_time``: the sample was
drawn then and the result became known at ``t``. Its window is the one ending at the last grid
point at or before ``t - dead_time`` (less than one period before it): the estimate of that
window is what the lab value measures.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np


def process_time(stamp_s: float, dead_time_s: float) -> float:
    """When the process was in the state a lab value stamped ``stamp_s`` describes."""
    return stamp_s - dead_time_s


def window_ends(grid_s: np.ndarray, stamps_s: np.ndarray, dead_time_s: float,
                period_s: float) -> np.ndarray:
    """Index into ``grid_s`` of the window end each lab value pairs with (-1 where no grid
    point lies within one period at or before its process time)."""
    grid_s = np.asarray(grid_s, np.float64)
    when = np.asarray(stamps_s, np.float64) - dead_time_s
    idx = np.searchsorted(grid_s, when + 1e-6, side="right") - 1
    ok = idx >= 0
    ok[ok] = when[ok] - grid_s[idx[ok]] < period_s - 1e-6
    return np.where(ok, idx, -1)


MISSING_MODES = ("hold", "mask", "interpolate")


def fill_gaps(window: np.ndarray, missing: str, fill: np.ndarray | float) -> np.ndarray | None:
    """A window (L, F) with gaps (NaN: a tag silent longer than ``max_gap_s``) made usable the
    one way training and the edge share, or None when it cannot be (then it is dropped):

    - ``hold``: no filling — a window with a gap is dropped (the last value is already held
      up to ``max_gap_s`` on the grid);
    - ``mask``: each missing value becomes ``fill`` (the training mean: 0 once scaled);
    - ``interpolate``: each tag linearly between its values around the gap, its first value
      held backwards and its last held forwards (the edge never sees the future).

    With ``mask`` and ``interpolate`` a tag with no value in the whole window still drops it.
    """
    window = np.asarray(window)
    missing_at = ~np.isfinite(window)
    if not missing_at.any():
        return window
    if missing == "hold" or missing_at.all(axis=0).any():
        return None
    out = window.astype(np.float64, copy=True)
    if missing == "mask":
        fill_row = np.broadcast_to(np.asarray(fill, np.float64), (window.shape[1],))
        out[missing_at] = np.broadcast_to(fill_row, out.shape)[missing_at]
        return out.astype(window.dtype)
    if missing != "interpolate":
        raise ValueError(f"missing must be one of {MISSING_MODES}, not {missing!r}")
    steps = np.arange(len(window))
    for col in np.flatnonzero(missing_at.any(axis=0)):
        ok = ~missing_at[:, col]
        out[:, col] = np.interp(steps, steps[ok], out[ok, col])
    return out.astype(window.dtype)


@dataclass
class BiasFilter:
    """The usual soft-sensor correction: an exponential filter of the lab error,
    ``bias ← (1 − α)·bias + α·(measured − model estimate)``; the estimate published is the
    model's plus the bias. α = 1 trusts the last lab value entirely, small α averages many
    (lab noise); ``enabled=False`` keeps the bias at 0 (residuals are still published)."""

    alpha: float = 0.3
    enabled: bool = False
    bias: float = 0.0

    def update(self, measured: float, raw_estimate: float) -> float:
        if self.enabled:
            self.bias = (1.0 - self.alpha) * self.bias + self.alpha * (measured - raw_estimate)
        return self.bias


@dataclass
class EstimateHistory:
    """The estimates of the last ``keep`` windows (grid time → model estimate, bias then), so a
    lab value arriving after its dead time finds the estimate it measures."""

    period_s: float
    keep: int
    _rows: OrderedDict[float, tuple[float, float]] = field(default_factory=OrderedDict)

    def add(self, grid_t: float, raw: float, bias: float) -> None:
        self._rows[grid_t] = (raw, bias)
        while len(self._rows) > self.keep:
            self._rows.popitem(last=False)

    def at(self, when_s: float) -> tuple[float, float, float] | None:
        """(grid time, model estimate, bias then) of the window :func:`window_ends` pairs with
        a process time ``when_s``; None when that window was not estimated (a gap, not yet, or
        longer ago than the history keeps)."""
        grid_t = math.floor(when_s / self.period_s + 1e-6) * self.period_s
        tolerance = 0.25 * self.period_s  # grid times are sums of floats: nearest one
        for t, (raw, bias) in reversed(self._rows.items()):  # newest first: short
            if abs(t - grid_t) <= tolerance:
                return t, raw, bias
            if t < grid_t:
                break
        return None
