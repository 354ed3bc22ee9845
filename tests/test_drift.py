"""Drift monitor logic on synthetic numbers: PSI, its limits, the CUSUM, the monitor's
raise/clear and new references from plant rows (edge_runtime/drift.py, pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.bundle import DriftSpec, TagReference
from edge_runtime.drift import (
    DriftMonitor,
    MonitorSettings,
    bin_shares,
    cusum_path,
    fit_residual_references,
    fit_tag_references,
    psi,
    window_psis,
)


def test_psi_matches_the_textbook_formula():
    expected = np.array([0.25, 0.25, 0.25, 0.25])
    actual = np.array([0.1, 0.2, 0.3, 0.4])
    by_hand = sum((a - e) * np.log(a / e) for a, e in zip(actual, expected, strict=True))
    assert psi(actual, expected) == pytest.approx(by_hand)
    assert psi(expected, expected) == 0.0
    # an empty bin counts as 1e-4, not as infinity
    assert np.isfinite(psi(np.array([0.0, 0.5, 0.5, 0.0]), expected))


def test_bin_shares_counts_edges_above_and_ignores_gaps():
    edges = np.array([[1.0, 2.0]])
    rows = np.array([[0.5], [1.0], [1.5], [2.0], [3.0], [np.nan]])
    assert bin_shares(rows, edges)[0].tolist() == pytest.approx([0.2, 0.4, 0.4])


def test_window_psis_equal_a_direct_computation():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(500, 3))
    rows[:, 1] += np.linspace(0, 3, 500)  # one trending tag
    refs, _ = fit_tag_references(rows, ["a", "b", "c"], window=100)
    edges = np.array([r.edges for r in refs])
    expected = np.array([r.expected for r in refs])
    fast = window_psis(rows, edges, expected, 100, 50)
    slow = np.array([psi(bin_shares(rows[s:s + 100], edges), expected)
                     for s in range(0, 401, 50)])
    assert fast == pytest.approx(slow)
    assert fast[:, 1].max() > 5 * fast[:, 0].max()  # the trend shows, the noise does not


def test_limits_come_from_training_sub_windows():
    rng = np.random.default_rng(1)
    iid = rng.normal(size=(4000, 1))
    slow = np.repeat(rng.normal(size=(40, 1)), 100, axis=0) + 0.1 * rng.normal(size=(4000, 1))
    (ref_iid,), rule = fit_tag_references(iid, ["iid"], window=200, margin=1.5, floor=0.01)
    (ref_slow,), _ = fit_tag_references(slow, ["slow"], window=200, margin=1.5, floor=0.01)
    assert "largest PSI of a 200-row training sub-window" in rule
    # an iid tag's windows look like the whole (PSI ≈ (bins - 1) / window); a tag that sits
    # at one level for 100 rows at a time does not, and gets a far higher limit
    assert ref_iid.psi_limit < 0.3
    assert ref_slow.psi_limit > 5 * ref_iid.psi_limit
    assert sum(ref_iid.expected) == pytest.approx(1.0)
    (short,), rule = fit_tag_references(iid[:300], ["iid"], window=200, floor=0.25)
    assert short.psi_limit == 0.25 and "fewer than two" in rule


def test_cusum_accumulates_a_small_bias_and_is_capped():
    z = np.zeros((200, 1))
    z[100:] = 1.0  # a one-sigma bias from row 100
    stats, above, pos, neg = cusum_path(z, k=0.5)
    assert stats[99, 0] == 0.0
    assert stats[109, 0] == pytest.approx(5.0)  # (1 - 0.5) per row
    assert neg[0] == 0.0 and pos[0] == pytest.approx(50.0) and above[-1, 0]
    capped = cusum_path(z, k=0.5, cap=np.array([8.0]))[0]
    assert capped.max() == 8.0
    negative, above, _, _ = cusum_path(-z, k=0.5)  # two-sided
    assert negative[-1, 0] == pytest.approx(50.0) and not above[-1, 0]


def test_residual_limits_from_validation_residuals():
    rng = np.random.default_rng(2)
    res = 0.3 + 0.1 * rng.normal(size=(2000, 2))
    refs = fit_residual_references(res, ["t1", "t2"], k=0.5, margin=1.5, floor=5.0)
    assert refs[0].mean == pytest.approx(0.3, abs=0.01)
    assert refs[0].std == pytest.approx(0.1, abs=0.01)
    stats = cusum_path((res - [r.mean for r in refs]) / [r.std for r in refs], 0.5)[0]
    assert refs[1].limit == pytest.approx(max(5.0, 1.5 * stats[:, 1].max()))


def _monitor(window: int = 100, check_every: int = 10) -> DriftMonitor:
    rng = np.random.default_rng(3)
    refs, rule = fit_tag_references(rng.normal(size=(2000, 2)), ["a", "b"], window=window)
    spec = DriftSpec(window=window, rows=2000, rule=rule, tags=refs)
    return DriftMonitor("m", spec, ["a", "b"], period_s=1.0,
                        settings=MonitorSettings(check_every=check_every))


def _feed(monitor: DriftMonitor, rows: np.ndarray, start: int = 0) -> list:
    events = []
    for i, row in enumerate(rows):  # one window per row, as a stride-1 model produces
        window = np.repeat(row[None, None, :], 3, axis=1)
        events += monitor.observe([float(start + i)], window, window.astype(np.float32))
    return events


def test_monitor_raises_on_the_drifting_tag_only_and_clears():
    monitor = _monitor()
    rng = np.random.default_rng(4)
    normal = rng.normal(size=(300, 2))
    assert _feed(monitor, normal) == []
    assert monitor.checked == (300 - 100) // 10 + 1  # every 10 rows once the window is full
    drifted = rng.normal(size=(300, 2))
    drifted[:, 1] += np.linspace(0, 4, 300)
    events = _feed(monitor, drifted, 300)
    assert [(e.alarm_id, e.transition) for e in events] == [("m.drift.b", "raise")]
    assert events[0].detail["psi"] >= events[0].detail["limit"]
    assert events[0].detail["window_mean"] > events[0].detail["reference_mean"] + 0.5
    assert monitor.checks_unreported == monitor.checked  # nobody drained them
    back = _feed(monitor, rng.normal(size=(300, 2)), 600)
    assert [(e.alarm_id, e.transition) for e in back] == [("m.drift.b", "clear")]


def test_a_new_reference_from_plant_rows():
    monitor = _monitor()
    rng = np.random.default_rng(5)
    shifted = rng.normal(size=(1000, 2)) + [0.0, 5.0]
    events = _feed(monitor, shifted[:300])
    assert ("m.drift.b", "raise") in [(e.alarm_id, e.transition) for e in events]
    refs, rule = monitor.fit_references(shifted)  # commissioning: the plant's normal now
    monitor.use_references(refs, f"commissioned: {rule}", len(shifted))
    assert monitor.references[1].mean == pytest.approx(5.0, abs=0.1)
    assert monitor.spec.rule.startswith("commissioned:") and monitor.spec.rows == 1000
    events = _feed(monitor, rng.normal(size=(300, 2)) + [0.0, 5.0], 300)
    assert [(e.alarm_id, e.transition) for e in events] == [("m.drift.b", "clear")]


def test_too_few_plant_rows_keep_the_limits_in_force():
    """Under two windows of rows no limit can be learnt: the bins move, the limits in force
    stay the lower bound (the bare 0.25 floor would alarm on normal process data)."""
    trained = _monitor()
    spec = trained.spec.model_copy(update={"tags": [
        r.model_copy(update={"psi_limit": limit})
        for r, limit in zip(trained.spec.tags, (0.9, 0.6), strict=True)]})
    monitor = DriftMonitor("m", spec, ["a", "b"], period_s=1.0)
    refs, rule = monitor.fit_references(np.random.default_rng(8).normal(size=(150, 2)) + 3.0)
    assert [r.psi_limit for r in refs] == pytest.approx([0.9, 0.6])
    assert "limits at least those in force" in rule
    assert refs[0].mean == pytest.approx(3.0, abs=0.3)  # the bins are the new rows'


def test_overrides_and_a_bad_reference():
    rng = np.random.default_rng(6)
    refs, _ = fit_tag_references(rng.normal(size=(500, 2)), ["a", "b"], window=100)
    spec = DriftSpec(window=100, rows=500, tags=refs)
    settings = MonitorSettings(psi_limit=3.0, psi_limits={"b": 0.5})
    monitor = DriftMonitor("m", spec, ["a", "b"], 1.0, settings=settings)
    assert monitor.psi_limits.tolist() == [3.0, 0.5]
    with pytest.raises(ValueError, match="lacks tags \\['c'\\]"):
        DriftMonitor("m", spec, ["a", "b", "c"], 1.0)
    with pytest.raises(ValueError, match="2 edges need 3 expected"):
        TagReference(tag="x", edges=[0.0, 1.0], expected=[1.0], mean=0, std=1, psi_limit=1)


def test_forecast_residuals_raise_on_a_biased_forecast():
    rng = np.random.default_rng(7)
    refs, _ = fit_tag_references(rng.normal(size=(500, 1)), ["y"], window=50)
    res = fit_residual_references(0.1 * rng.normal(size=(500, 1)), ["y"], floor=5.0)
    spec = DriftSpec(window=50, rows=500, tags=refs, residuals=res)
    monitor = DriftMonitor("f", spec, ["y"], period_s=5.0, targets=["y"])
    assert monitor.alarm_ids == ["f.drift.y", "f.drift_residual.y"]
    values = rng.normal(size=201)
    events = []
    for i in range(200):
        window = np.full((1, 4, 1), values[i])
        bias = 0.0 if i < 100 else 0.3  # from row 100 on the forecast is 3 sigma off
        forecast = np.array([[values[i + 1] + 0.1 * rng.normal() + bias]])  # for row i + 1
        events += monitor.observe([5.0 * i], window, window, forecast)
    assert monitor.residuals_unreported and monitor.cusum[0] > 0
    raised = [e for e in events if e.alarm_id == "f.drift_residual.y" and e.transition == "raise"]
    assert len(raised) == 1
    assert 5.0 * 100 <= raised[0].grid_t <= 5.0 * 110  # within 10 rows of the bias
    assert raised[0].detail["direction"] == "below"  # realised below the forecast


def test_events_do_not_depend_on_how_windows_are_batched():
    rng = np.random.default_rng(8)
    rows = rng.normal(size=(600, 2))
    rows[300:, 1] += np.linspace(0, 4, 300)
    forecasts = rows[1:, 1:2] + 0.1 * rng.normal(size=(599, 1)) + np.where(
        np.arange(599) > 400, 0.5, 0.0)[:, None]
    refs, _ = fit_tag_references(rng.normal(size=(2000, 2)), ["a", "b"], window=100)
    res = fit_residual_references(0.1 * rng.normal(size=(500, 1)), ["b"])
    spec = DriftSpec(window=100, rows=2000, tags=refs, residuals=res)

    def run(batch: int) -> list:
        monitor = DriftMonitor("m", spec, ["a", "b"], 1.0, targets=["b"],
                               settings=MonitorSettings(check_every=7))
        events = []
        for k in range(0, 599, batch):
            idx = range(k, min(k + batch, 599))
            windows = np.stack([np.repeat(rows[i][None, :], 3, axis=0) for i in idx])
            events += monitor.observe([float(i) for i in idx], windows, windows,
                                      forecasts[list(idx)])
        return [(e.alarm_id, e.transition, e.grid_t, e.detail) for e in events]

    one = run(1)
    assert {e[0] for e in one} == {"m.drift.b", "m.drift_residual.b"}
    assert run(13) == one and run(50) == one
