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


def _two_tag_feed(steps: int = 40):
    """Samples of tags a and b every second, a little after each grid point, in order."""
    rng = np.random.default_rng(1)
    return [(t + 0.5, tag, float(v)) for t in range(steps) for tag, v in
            zip(("a", "b"), rng.normal(size=2), strict=True)]


def _run(buffer: GridBuffer, feed, now=None) -> dict[float, np.ndarray]:
    out = {}
    for ts, tag, value in feed:
        buffer.push(tag, ts, value) if now is None else buffer.push(tag, ts, value, now)
        for t, w in buffer.windows():
            assert t not in out  # a grid point is emitted once
            out[t] = w
    return out


def _same_windows(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for t, w in want.items():
        np.testing.assert_array_equal(got[t], w)


def test_a_future_timestamp_is_refused_and_does_not_stop_the_windows():
    """Issue 17, defect 1: one sample 23 h ahead used to become the newest time, make every
    grid point before it final and every real sample after it late."""
    feed = _two_tag_feed()
    now = feed[-1][0]  # the receive clock: real time
    want = _run(GridBuffer(["a", "b"], 1.0, 4, 3.0), feed, now)
    buffer = GridBuffer(["a", "b"], 1.0, 4, 3.0)
    assert not buffer.push("a", feed[0][0] + 23 * 3600, 60.0, now)
    got = _run(buffer, feed, now)
    assert buffer.future_samples == 1 and buffer.late_samples == 0
    assert len(got) == 36
    _same_windows(got, want)
    # within the allowed skew a sample ahead is fine; the skew check is off for a replay
    assert GridBuffer(["a"], 1.0, 2, 3.0, max_skew_s=30).push("a", now + 29, 1.0, now)
    assert GridBuffer(["a"], 1.0, 2, 3.0, max_skew_s=None).push("a", now + 1e6, 1.0, now)


def test_out_of_order_samples_within_the_lateness_are_placed():
    """Issue 17, defect 2: a broker restart delivers one tag's samples behind the other's,
    and within a topic out of order; within the allowed lateness all of them are placed and
    the windows are those of the in-order feed."""
    feed = _two_tag_feed()
    want = _run(GridBuffer(["a", "b"], 1.0, 4, 3.0), feed)
    assert len(want) == 36
    # b arrives 8 s behind a (each topic in order): the eager path waits for b
    lagging = sorted(feed, key=lambda s: s[0] + (8 if s[1] == "b" else 0))
    buffer = GridBuffer(["a", "b"], 1.0, 4, 3.0)
    _same_windows(_run(buffer, lagging), want)
    assert buffer.late_samples == 0
    # after a reconnect (hold_eager), a's samples 8..14 s come after newer ones of a and b
    buffer = GridBuffer(["a", "b"], 1.0, 4, 3.0, allowed_lateness_s=30)
    before, held = feed[:16], [s for s in feed[16:30] if s[1] == "a"]
    rest = [s for s in feed[16:] if s not in held]
    got = _run(buffer, before)
    buffer.hold_eager()
    got |= _run(buffer, rest[:20] + held + rest[20:])
    assert max(got) == 39 - 30  # held: only what the watermark passed is final
    buffer.release_eager()
    got |= dict(buffer.windows())
    _same_windows(got, want)
    assert buffer.late_samples == 0
    # eager=False: any order within the lateness (here a full shuffle of 20 s)
    shuffled = [feed[i] for i in np.random.default_rng(2).permutation(len(feed))]
    buffer = GridBuffer(["a", "b"], 1.0, 4, 3.0, allowed_lateness_s=45, eager=False)
    got = _run(buffer, shuffled)
    buffer.push("a", 200.0, 0.0)  # the watermark moves on: every grid point is final
    buffer.push("b", 200.0, 0.0)
    got |= {t: w for t, w in buffer.windows() if t < 40}
    _same_windows(got, want)
    assert buffer.late_samples == 0


def test_lateness_beyond_the_allowed_is_counted():
    buffer = GridBuffer(["a", "b"], 1.0, 2, 3.0, allowed_lateness_s=10, eager=False)
    _run(buffer, [(float(t), "a", 1.0) for t in range(30)])  # b is silent: a dead sensor
    assert buffer.watermark == 19.0
    assert not buffer.push("b", 15.0, 1.0)  # the grid is final up to 19: late
    assert buffer.push("b", 19.5, 1.0)  # newer than the last final point: placed
    assert buffer.late_samples == 1


def test_windows_cut_only_when_due_match_windows_tried_after_every_push():
    """``due`` (O(1) per push) says exactly when :meth:`GridBuffer.windows` has work: a
    buffer asked only then yields the same windows, and refuses the same samples, as one
    asked after every push; over shuffled, late, duplicate and future samples and a hold."""
    rng = np.random.default_rng(7)
    stream = []
    for step in range(400):
        for k in rng.permutation(3):
            ts = step * 1.0 + rng.choice([0.0, -2.5, -0.5, 0.25, 40.0],
                                         p=[0.85, 0.04, 0.04, 0.06, 0.01])
            stream.append((f"t{k}", float(ts), float(rng.normal())))
    every, when_due = (GridBuffer(["t0", "t1", "t2"], 1.0, 4, 3.0, stride=2,
                                  allowed_lateness_s=5.0, max_skew_s=30.0) for _ in range(2))
    got_every, got_due, dues = [], [], 0
    for n, (tag, ts, value) in enumerate(stream):
        if n == 300:
            every.hold_eager(), when_due.hold_eager()
        if n == 700:
            every.release_eager(), when_due.release_eager()
        now = ts - 35.0 if n % 97 == 0 else ts  # now and then a sample from the future
        assert every.push(tag, ts, value, now) == when_due.push(tag, ts, value, now)
        got_every += list(every.windows())
        if when_due.due:
            dues += 1
            got_due += list(when_due.windows())
            assert not when_due.due
    assert dues > 100 and len(got_due) > 100
    assert [t for t, _ in got_due] == [t for t, _ in got_every]
    np.testing.assert_array_equal(np.stack([w for _, w in got_due]),  # NaN equals NaN here
                                  np.stack([w for _, w in got_every]))
    assert np.isfinite(np.stack([w for _, w in got_due])).all(axis=(1, 2)).sum() > 50
    assert (when_due.late_samples, when_due.future_samples) == (
        every.late_samples, every.future_samples) != (0, 0)
