"""Aligning irregular tag samples to a fixed grid and cutting windows — one code path for
training (whole history at once) and the gateway (incrementally, in :class:`GridBuffer`).

A grid point ``t`` (a multiple of the period) takes each tag's last sample at or before ``t``
(sample-and-hold, as historians interpolate "previous value"), unless that sample is older than
``max_gap_s``: then the value is NaN and every window containing it is invalid. Data is never
invented across a gap.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator

import numpy as np


def grid_between(start_s: float, end_s: float, period_s: float) -> np.ndarray:
    """Grid points (multiples of the period) in ``[start_s, end_s]``."""
    first = math.ceil(start_s / period_s - 1e-9)
    last = math.floor(end_s / period_s + 1e-9)
    return np.arange(first, last + 1, dtype=np.float64) * period_s


def hold_resample(
    sample_ts: np.ndarray, sample_values: np.ndarray, grid: np.ndarray, max_gap_s: float
) -> np.ndarray:
    """Value of one tag at each grid point: last sample at or before it, NaN if too old."""
    sample_ts = np.asarray(sample_ts, dtype=np.float64)
    values = np.asarray(sample_values, dtype=np.float64)
    ok = np.isfinite(values) & np.isfinite(sample_ts)
    sample_ts, values = sample_ts[ok], values[ok]
    idx = np.searchsorted(sample_ts, grid, side="right") - 1
    out = np.full(grid.shape, np.nan)
    has = idx >= 0
    age = grid[has] - sample_ts[idx[has]]
    fresh = age <= max_gap_s + 1e-9
    out[np.flatnonzero(has)[fresh]] = values[idx[has]][fresh]
    return out


def sliding_windows(
    rows: np.ndarray, window: int, stride: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """All complete windows of ``rows`` (N, F) → (windows (M, L, F), index of each last row).

    Windows holding a NaN (a gap) are dropped, exactly as the gateway drops them.
    """
    rows = np.asarray(rows, dtype=np.float32)
    if len(rows) < window:
        return np.empty((0, window, rows.shape[1]), np.float32), np.empty(0, dtype=np.int64)
    view = np.lib.stride_tricks.sliding_window_view(rows, window, axis=0).transpose(0, 2, 1)
    ends = np.arange(window - 1, len(rows))
    keep = (np.arange(len(view)) % stride == 0) & np.isfinite(view).all(axis=(1, 2))
    return np.ascontiguousarray(view[keep]), ends[keep]


def forecast_pairs(
    rows: np.ndarray, window: int, horizon: int, target_columns: list[int], stride: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (M, L, F) and targets (M, H, T) from rows; pairs touching a gap are dropped."""
    rows = np.asarray(rows, dtype=np.float32)
    both, _ = sliding_windows(rows, window + horizon, stride)
    return both[:, :window, :], both[:, window:, :][:, :, target_columns]


class GridBuffer:
    """Incremental version of :func:`hold_resample` + :func:`sliding_windows` for live data.

    Push samples as they arrive; :meth:`windows` yields ``(grid_time, window)`` for each grid
    point that is final. Event time is handled as stream processors handle it:

    - two clocks: a sample's own time (event time) and the receive clock (``now`` in
      :meth:`push`). A sample more than ``max_skew_s`` ahead of the receive clock is a broken
      clock: refused (``future_samples``), it moves nothing. ``max_skew_s=None`` (a replay
      faster than real time) turns that check off;
    - the **watermark** is the newest accepted event time less ``allowed_lateness_s``. As no
      accepted sample is more than ``max_skew_s`` ahead of the receive clock, that is
      ``min(newest event time, receive clock + skew) - lateness``; it never moves backwards.
      Every grid point at or before the watermark is final. That alone bounds how long a
      dead sensor can stall the others: its value ages past ``max_gap_s``, the window holds a
      NaN, i.e. is invalid;
    - **eager** finality, the low-latency path: a point is also final as soon as every tag
      has reported at or past it (each topic's samples arrive in order, as MQTT delivers one
      publisher's topic within one connection). Between :meth:`hold_eager` and
      :meth:`release_eager` (the daemon holds for a while after its MQTT session reconnects:
      redelivered and queued messages then interleave, within a topic too) only the
      watermark finalises points, so out-of-order input within the lateness is placed
      correctly; ``eager=False`` always waits for the watermark (sources that reorder);
    - a sample at or before the last final point is **late** (``late_samples``): it would
      change a window already emitted, and re-emitting would duplicate results and alarms.
      Anything newer is placed where it belongs, also out of order (sample-and-hold then uses
      the right previous value).
    """

    def __init__(
        self,
        tags: list[str],
        period_s: float,
        window: int,
        max_gap_s: float,
        stride: int = 1,
        allowed_lateness_s: float = 60.0,
        max_skew_s: float | None = 30.0,
        eager: bool = True,
        max_catchup: int = 10_000,
    ):
        self.tags = list(tags)
        self.period_s = period_s
        self.window = window
        self.max_gap_s = max_gap_s
        self.stride = stride
        self.allowed_lateness_s = allowed_lateness_s
        self.max_skew_s = math.inf if max_skew_s is None else max_skew_s
        self.eager = eager
        self.max_catchup = max(max_catchup, window)
        self._samples: dict[str, list[tuple[float, float]]] = {t: [] for t in self.tags}
        # Each tag's newest sample time, and how many tags are still before the next grid
        # point: eager finality is then one comparison per push (:attr:`due`) instead of a
        # minimum over the tags after every sample.
        self._latest = dict.fromkeys(self.tags, -math.inf)
        self._behind = len(self.tags)
        # The last ``window`` rows, written twice into a ring of 2 × window rows so that every
        # window is one contiguous slice (no per-window np.stack of row arrays).
        self._ring = np.full((2 * window, len(self.tags)), np.nan, dtype=np.float32)
        self._filled = 0  # rows in the ring, up to ``window``
        self._pos = 0  # where the next row goes (0 .. window - 1)
        self._next_t: float | None = None
        self._final_t = -math.inf  # last final grid point: samples at or before it are late
        self._max_event = -math.inf  # newest accepted event time
        self._held = False  # eager finality held (input order not to be trusted for now)
        self._prune_at = 64  # samples of one tag that trigger a prune
        self._steps = 0
        self.late_samples = 0
        self.future_samples = 0
        self.skipped_points = 0

    @property
    def watermark(self) -> float:
        """Event time up to which the grid is final whatever still arrives."""
        return self._max_event - self.allowed_lateness_s

    def hold_eager(self) -> None:
        """Input order is not to be trusted for now (the MQTT session reconnected): grid
        points become final only when the watermark passes them."""
        self._held = True

    def release_eager(self) -> None:
        """Back to eager finality; :meth:`windows` then yields what became final."""
        self._held = False

    def push(self, tag: str, ts: float, value: float, now: float | None = None) -> bool:
        """Add one sample received at ``now`` (receive clock; None: not checked); return False
        (and count it) if it is too late to be used or too far ahead of the receive clock."""
        if now is not None and ts > now + self.max_skew_s:
            self.future_samples += 1
            return False
        if ts <= self._final_t + 1e-9:
            self.late_samples += 1
            return False
        samples = self._samples[tag]
        if len(samples) > self._prune_at:  # keep it bounded (and amortised)
            self._prune()
            samples = self._samples[tag]
        if not samples or ts > samples[-1][0]:
            samples.append((ts, value))
        else:  # out of order or duplicate timestamp: keep sorted, last write wins
            i = bisect.bisect_left(samples, (ts, -math.inf))
            if i < len(samples) and samples[i][0] == ts:
                samples[i] = (ts, value)
            else:
                samples.insert(i, (ts, value))
        latest = self._latest[tag]
        if ts > latest:
            self._latest[tag] = ts
            if self._next_t is not None and latest < self._next_t - 1e-9 <= ts:
                self._behind -= 1  # this tag has now reported at or past the next point
        if ts > self._max_event:
            self._max_event = ts
            if self._next_t is None:
                self._start_grid(ts)
        elif self._next_t is not None and ts < self._next_t - self.period_s + 1e-9:
            # older than the first pending point (nothing final yet): the grid starts earlier
            self._start_grid(ts)
        return True

    def _start_grid(self, ts: float) -> None:
        self._next_t = grid_between(ts, ts + self.period_s, self.period_s)[0]
        self._count_behind()

    def _count_behind(self) -> None:
        """(once per grid step) The tags whose newest sample is before the next point."""
        edge = self._next_t - 1e-9
        self._behind = len([t for t in self._latest.values() if t < edge])

    @property
    def due(self) -> bool:
        """Whether a grid point is final now, i.e. :meth:`windows` has work: a check of O(1)
        after each push, so windows are cut once per grid step, not tried per sample."""
        if self._next_t is None:
            return False
        if self._next_t <= self._max_event - self.allowed_lateness_s + 1e-9:
            return True
        return self.eager and not self._held and self._behind == 0

    def _final_until(self) -> float:
        until = self._max_event - self.allowed_lateness_s
        if self.eager and not self._held:
            until = max(until, min(self._latest.values()))  # -inf while a tag has no sample
        return until

    def windows(self) -> Iterator[tuple[float, np.ndarray]]:
        """Yield ``(grid_time, window (L, F))`` for newly final points; NaN marks a gap."""
        if self._next_t is None:
            return
        until = self._final_until()
        if self._next_t > until + 1e-9:  # nothing final yet (most calls): no work
            return
        pending = math.floor((until - self._next_t) / self.period_s + 1e-9) + 1
        if pending > self.max_catchup:  # a clock jump: don't grind through days of grid
            skip = pending - self.window
            self._next_t += skip * self.period_s
            self.skipped_points += skip
            self._filled = 0
            self._count_behind()
        while self._next_t <= until + 1e-9:
            t = self._next_t
            self._append_row([self._value_at(tag, t) for tag in self.tags])
            self._final_t = t
            self._next_t = t + self.period_s
            self._count_behind()
            self._steps += 1
            if self._filled == self.window and self._steps % self.stride == 0:
                yield t, self._ring[self._pos : self._pos + self.window].copy()
        # no prune here: push() prunes a tag once it holds _prune_at samples (amortised)

    def _append_row(self, row: list[float]) -> None:
        w, pos = self.window, self._pos
        self._ring[pos] = row
        self._ring[pos + w] = row
        self._pos = (pos + 1) % w
        self._filled = min(self._filled + 1, w)

    def _value_at(self, tag: str, t: float) -> float:
        samples = self._samples[tag]
        i = bisect.bisect_right(samples, (t, math.inf)) - 1
        if i < 0 or t - samples[i][0] > self.max_gap_s + 1e-9:
            return math.nan
        return samples[i][1]

    def _prune(self) -> None:
        """Keep only the last sample before the next grid point, and what follows it."""
        longest = 0
        for tag, samples in self._samples.items():
            i = bisect.bisect_right(samples, (self._next_t, math.inf)) - 1
            if i > 0:
                samples = self._samples[tag] = samples[i:]
            longest = max(longest, len(samples))
        # samples newer than the next point stay (up to the lateness of them): prune again
        # only when a tag holds twice as many, not on every push
        self._prune_at = max(64, 2 * longest)
