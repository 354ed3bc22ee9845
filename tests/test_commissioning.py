"""Commissioning calibration, the pure part (edge_runtime/commissioning.py) and its store:
doubtful rows refused by tag name, the limit fitted by the trainer's own rule, baselines
versioned on disk, the manifest section optional. The daemon path over a real broker is
tests/test_daemon_commissioning.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from edge_runtime.bundle import CalibrationSpec, RunRecord, ScalerSpec, ThresholdSpec
from edge_runtime.commissioner import BaselineStore
from edge_runtime.commissioning import Baseline, CalibrationRefused, check_rows, fit, limit_on
from edge_runtime.scaling import StandardScaler
from training.config import TrainConfig
from training.thresholds import calibrate

TAGS = ["flow_in", "level", "temperature"]
PERIOD = 5.0


def plant_rows(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Normal rows of a plant at another operating point than the bundle's scaler."""
    rng = np.random.default_rng(seed)
    rows = np.column_stack([10 + rng.normal(0, 0.3, n), 1.2 + rng.normal(0, 0.01, n),
                            71 + np.cumsum(rng.normal(0, 0.05, n))])
    return rows, 1_767_225_600.0 + PERIOD * np.arange(n)


BUNDLE_SCALER = ScalerSpec(mean=[12.0, 1.5, 60.0], scale=[0.5, 0.02, 1.0])


def mse_scorer(calls: list):
    """Scaled windows → the mean square of each (a stand-in model that reconstructs zeros),
    recording what it was given."""
    def score(x: np.ndarray) -> np.ndarray:
        calls.append(np.array(x))
        return np.mean(np.asarray(x, np.float64) ** 2, axis=(1, 2))
    return score


@pytest.mark.parametrize(("column", "tag"), [(0, "flow_in"), (2, "temperature")])
def test_a_nan_is_refused_naming_its_tag(column, tag):
    rows, times = plant_rows()
    rows[37, column] = np.nan
    with pytest.raises(CalibrationRefused) as caught:
        check_rows(rows, TAGS, times, PERIOD)
    assert caught.value.tag == tag
    assert f"tag {tag!r}" in str(caught.value) and "1 of 120" in str(caught.value)


def test_a_hole_in_the_grid_is_refused_with_its_time():
    rows, times = plant_rows()
    times[60:] += 3 * PERIOD  # three grid rows missing (the daemon was down)
    with pytest.raises(CalibrationRefused, match=r"grid gap .* 20 s after .*every tag"):
        check_rows(rows, TAGS, times, PERIOD)
    check_rows(rows, TAGS)  # without times, the rows themselves are fine


def test_a_flat_lined_tag_is_refused_naming_it():
    rows, times = plant_rows()
    rows[:, 1] = 1.25  # a stuck level transmitter
    with pytest.raises(CalibrationRefused) as caught:
        fit(rows, tags=TAGS, window=12, thresholds=None, scaler=BUNDLE_SCALER, score=None,
            fit="scaler", times=times, period_s=PERIOD)
    assert caught.value.tag == "level"
    assert "flat-lined" in str(caught.value) and "constant 1.25" in str(caught.value)


def test_wrong_shape_is_refused():
    rows, _ = plant_rows()
    with pytest.raises(CalibrationRefused, match=r"expected \(N, 2\)"):
        check_rows(rows, TAGS[:2])


@pytest.mark.parametrize(("method", "rel"), [("quantile", 1e-12), ("coverage", 1e-12),
                                           ("kde", 1e-9)])
def test_the_fitted_limit_is_the_trainers_rule_on_the_same_scores(method, rel):
    """The edge's fit and training/thresholds.calibrate give the same limits for the same
    scores: same smoothing (EWMA, k-of-n), level point, margin and clear ratio (kde: the
    edge's numpy bisection against SciPy's brentq, to 1e-9)."""
    rows, times = plant_rows()
    calls: list = []
    scorer = mse_scorer(calls)
    scaler = StandardScaler.fit(rows)
    from edge_runtime.windowing import sliding_windows

    scores = scorer(sliding_windows(scaler.transform(rows), 12)[0])
    trainer = calibrate(scores, method, 0.99, 1.3, 0.8, on_delay=2, off_delay=2,
                        ewma_alpha=0.4, vote_k=2, vote_n=3)
    assert (trainer.method, trainer.level, trainer.margin, trainer.clear_ratio) == (
        method, 0.99, 1.3, 0.8)
    bundle = trainer.model_copy(update={"raise_at": 123.0, "clear_at": 100.0})  # others'
    baseline = fit(rows, tags=TAGS, window=12, thresholds=bundle, scaler=BUNDLE_SCALER,
                   score=scorer, times=times, period_s=PERIOD)
    assert baseline.state == "calibrated" and baseline.windows == 120 - 12 + 1
    assert baseline.raise_at == pytest.approx(trainer.raise_at, rel=rel)
    assert baseline.clear_at == pytest.approx(trainer.clear_at, rel=rel)
    np.testing.assert_allclose(baseline.scaler.mean, scaler.mean)
    np.testing.assert_allclose(baseline.scaler.scale, scaler.scale)
    np.testing.assert_array_equal(calls[-1], calls[0])  # scored with the fitted scaler
    in_force = baseline.thresholds(bundle)
    assert (in_force.raise_at, in_force.on_delay, in_force.vote_n) == (baseline.raise_at, 2, 3)
    assert baseline.first_ts.endswith("Z") and baseline.samples == 120


@pytest.mark.parametrize("level", [0.9, 0.99, 0.999])
def test_the_edges_kde_point_is_scipys(level):
    """No SciPy on a gateway: the KDE rule's numpy bisection gives training's SciPy value."""
    from edge_runtime.scoring import kde_point
    from training.thresholds import kde_quantile

    scores = np.random.default_rng(3).gamma(2.0, 0.1, 300)
    assert kde_point(scores, level) == pytest.approx(kde_quantile(scores, level), rel=1e-9)
    assert kde_point(np.full(10, 0.25), level) == 0.25  # degenerate: SciPy would raise


def test_fit_limit_only_keeps_the_bundles_scaler():
    rows, _ = plant_rows()
    calls: list = []
    spec = calibrate(np.linspace(0, 1, 50), "quantile", 0.95, 1.0, 1.0)
    baseline = fit(rows, tags=TAGS, window=12, thresholds=spec, scaler=BUNDLE_SCALER,
                   score=mse_scorer(calls), fit="limit")
    assert baseline.scaler is None
    expected = StandardScaler.from_spec(BUNDLE_SCALER).transform(rows[:12])
    np.testing.assert_allclose(calls[0][0], expected, rtol=1e-6)
    assert baseline.scaler_or(BUNDLE_SCALER).mean.tolist() == BUNDLE_SCALER.mean


def test_limit_needs_the_rule_in_numbers():
    old = ThresholdSpec(raise_at=1.0, clear_at=0.8)  # a bundle from before they were stored
    with pytest.raises(ValueError, match="lack method, level, margin"):
        limit_on(np.ones(10), old)


def test_store_versions_baselines_and_skips_an_unreadable_one(tmp_path, caplog):
    store = BaselineStore(tmp_path)
    assert store.latest("m") is None
    first = store.save(Baseline(model="m", bundle_version="v1", state="calibrated"))
    second = store.save(Baseline(model="m", bundle_version="v1", state="refused",
                                 reason="tag 'x' flat", tag="x"))
    assert (first.version, second.version) == (1, 2)
    assert store.latest("m") == second
    assert json.loads((tmp_path / "baselines/m/v1.json").read_text())["state"] == "calibrated"
    (tmp_path / "baselines/m/v3.json").write_text("{not json")
    assert store.latest("m") == second
    assert "v3.json" in caplog.text and (tmp_path / "baselines/m/v3.json").exists()


def test_calibration_section_is_optional_and_strict():
    record = {"name": "a", "task": "anomaly", "family": "dense_ae",
              "input": {"tags": [{"name": "t"}], "period_s": 5, "window": 4, "max_gap_s": 15},
              "scaler": {"mean": [0], "scale": [1]}, "training_data_sha256": "x",
              "thresholds": {"raise_at": 1.0, "clear_at": 0.8}}
    old = RunRecord.model_validate(record)  # before the section (and the rule's numbers)
    assert old.calibration is None and old.thresholds.method is None
    scaler_only = RunRecord.model_validate(
        record | {"calibration": {"mode": "commission", "samples": 50, "fit": "scaler"}})
    assert scaler_only.calibration.commissioning
    with pytest.raises(ValidationError, match="needs thresholds.method"):
        RunRecord.model_validate(record | {"calibration": {"mode": "commission", "samples": 50}})
    with pytest.raises(ValidationError, match="must exceed the window length"):
        RunRecord.model_validate(record | {"calibration": {"mode": "commission", "samples": 4,
                                                           "fit": "scaler"}})
    with pytest.raises(ValidationError, match="sample\n  Extra inputs are not permitted"):
        CalibrationSpec.model_validate({"mode": "commission", "sample": 5})  # a typo
    with pytest.raises(ValidationError, match="samples must be given"):
        CalibrationSpec.model_validate({"mode": "commission"})


def test_train_config_declares_commissioning_for_anomaly_only():
    base = {"name": "x", "family": "dense_ae", "window": {"length": 12}}
    ok = TrainConfig.model_validate(base | {"task": "anomaly", "calibration": {
        "mode": "commission", "samples": 400, "fit": "both"}})
    assert ok.calibration.samples == 400
    with pytest.raises(ValidationError, match="for task anomaly, not 'forecast'"):
        TrainConfig.model_validate(base | {"family": "tcn", "task": "forecast", "calibration": {
            "mode": "commission", "samples": 400}})
    with pytest.raises(ValidationError, match="must exceed window.length"):
        TrainConfig.model_validate(base | {"task": "anomaly", "calibration": {
            "mode": "commission", "samples": 12}})


def test_collection_starts_at_the_first_full_row_and_keeps_later_gaps(tmp_path):
    """The daemon side's row bookkeeping (edge_runtime/commissioner.py) on hand-made windows:
    rows before every tag has a value are skipped, each grid row is taken once although
    windows overlap, a NaN after the start is kept (the check then refuses it by name)."""
    from types import SimpleNamespace

    from edge_runtime.commissioner import Commissioning

    manifest = SimpleNamespace(
        calibration=CalibrationSpec(mode="commission", samples=4, fit="scaler"),
        version="v9", scaler=ScalerSpec(mean=[0, 0], scale=[1, 1]),
        thresholds=ThresholdSpec(raise_at=1.0, clear_at=0.8),
        input=SimpleNamespace(period_s=5.0, window=3, stride=1))
    pipeline = SimpleNamespace(name="m", bundle=SimpleNamespace(manifest=manifest), alarm=None,
                               tags=["a", "b"], model=SimpleNamespace(predict_each=None),
                               drift=None)
    c = Commissioning(pipeline, BaselineStore(tmp_path))
    assert c.collecting and c.progress() == {"samples": 0, "of": 4}

    def window(t_last: float) -> np.ndarray:
        ts = t_last - 5.0 * np.arange(2, -1, -1)
        rows = np.column_stack([ts, ts + 0.5])
        rows[ts == 0.0, 1] = np.nan  # tag b's first sample came after the first grid point
        rows[ts == 15.0, 0] = np.nan  # tag a missing later: a gap inside the window
        return rows

    for t in (10.0, 15.0, 20.0, 25.0):
        c.observe(t, window(t))
    assert c._times == [5.0, 10.0, 15.0, 20.0]  # 0 skipped, 25 beyond the samples
    assert c.progress(12.0) == {"samples": 2, "of": 4}
    assert np.isnan(c._rows[2][0])
    assert c.in_commissioning(25.0)
    [status] = c.conclude()
    assert status.kind == "commissioning" and status.payload["state"] == "refused"
    assert status.payload["tag"] == "a" and "1 of 4" in status.payload["reason"]
    assert status.payload["progress"] == {"samples": 4, "of": 4}
    assert BaselineStore(tmp_path).latest("m").state == "refused"
    assert pipeline.scaler.mean.tolist() == [0, 0] and pipeline.thresholds is manifest.thresholds
    assert not c.in_commissioning(25.0) and c.in_commissioning(20.0)
