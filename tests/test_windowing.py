"""The gateway must cut exactly the windows training cut, and never invent data over a gap."""

from __future__ import annotations

import numpy as np

from edge_runtime.windowing import GridBuffer, grid_between, hold_resample, sliding_windows


def test_hold_resample_holds_last_value_and_marks_gaps():
    ts = np.array([0.0, 5.0, 10.0, 40.0])
    values = np.array([1.0, 2.0, 3.0, 4.0])
    grid = grid_between(0, 45, 5)
    out = hold_resample(ts, values, grid, max_gap_s=10)
    # 15 and 20 hold 3.0 (age 5 and 10 s); 25..35 are older than 10 s: gap.
    np.testing.assert_array_equal(out[:5], [1, 2, 3, 3, 3])
    assert np.isnan(out[5:8]).all()
    np.testing.assert_array_equal(out[8:], [4, 4])


def test_sliding_windows_drop_windows_touching_a_gap():
    rows = np.arange(20, dtype=np.float32).reshape(10, 2)
    rows[4, 1] = np.nan
    windows, ends = sliding_windows(rows, 3)
    assert list(ends) == [2, 3, 7, 8, 9]  # windows ending at 4, 5, 6 contain row 4
    np.testing.assert_array_equal(windows[0], rows[0:3])


def _irregular_stream(seed: int = 0):
    rng = np.random.default_rng(seed)
    tags = ["a", "b", "c"]
    samples = []
    for i, tag in enumerate(tags):
        t = np.cumsum(rng.uniform(1.0, 6.0, 120)) + i
        if tag == "b":  # a 40 s outage
            t = np.where(t > 200, t + 40, t)
        samples += [(float(s), tag, float(v)) for s, v in zip(t, rng.normal(size=120),
                                                              strict=True)]
    return tags, sorted(samples)


def test_grid_buffer_reproduces_the_batch_windows_exactly():
    tags, samples = _irregular_stream()
    period, window, max_gap = 5.0, 6, 12.0
    buffer = GridBuffer(tags, period, window, max_gap)
    live = {}
    for ts, tag, value in samples:
        buffer.push(tag, ts, value)
        for t, w in buffer.windows():
            live[t] = w
    # Batch path over the same samples, as training does it.
    grid = grid_between(samples[0][0], max(live), period)
    cols = []
    for tag in tags:
        ts = np.array([s[0] for s in samples if s[1] == tag])
        vs = np.array([s[2] for s in samples if s[1] == tag])
        cols.append(hold_resample(ts, vs, grid, max_gap))
    batch, ends = sliding_windows(np.stack(cols, axis=1), window)
    valid_live = {t: w for t, w in live.items() if np.isfinite(w).all()}
    assert len(valid_live) == len(batch) > 50
    assert len(live) > len(valid_live)  # the outage produced invalid windows
    for w, end in zip(batch, ends, strict=True):
        np.testing.assert_array_equal(valid_live[grid[end]], w)


def test_grid_buffer_counts_late_samples_and_keeps_order():
    buffer = GridBuffer(["a"], 1.0, 2, 5.0)
    for t in (0.0, 1.0, 2.0, 3.0):
        buffer.push("a", t, t)
    assert [t for t, _ in buffer.windows()] == [1.0, 2.0, 3.0]
    assert not buffer.push("a", 1.5, 99.0)  # older than a final grid point: late
    assert buffer.late_samples == 1
    buffer.push("a", 5.0, 5.0)
    buffer.push("a", 4.0, 4.0)  # out of order, but not yet final: used
    assert [(t, w[:, 0].tolist()) for t, w in buffer.windows()] == [
        (4.0, [3.0, 4.0]), (5.0, [4.0, 5.0])]
