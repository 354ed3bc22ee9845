"""Soft-sensor labels, splits and bad input: the leak check catches planted leaks, the splits
it guards never leak, lab values pair with windows by the dead time (the edge's rule), and
each bad input is an error naming its field before any training starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edge_runtime.soft_sensing import BiasFilter, EstimateHistory, window_ends
from edge_runtime.validation import ConfigError
from tests.helpers import lab_export
from training.config import SplitConfig, TrainConfig, check_train_config
from training.label_splits import (
    LabelSplits,
    LeakError,
    check_no_leak,
    covered_rows,
    group_folds,
    split_labels,
)
from training.soft_references import last_value

WINDOW = 8
GRID = 1.8e9 + np.arange(200) * 5.0


def test_planted_leaks_are_caught():
    ends = np.arange(20, 200, 10)  # windows of 8 rows, 10 apart: disjoint
    groups = np.repeat(np.arange(6), 3).astype(float)
    clean = LabelSplits(np.arange(0, 12), np.arange(12, 15), np.arange(15, 18))
    check_no_leak(clean, ends, WINDOW, GRID, groups)  # passes
    # a group on both sides (its labels split between train and test)
    leaky_groups = groups.copy()
    leaky_groups[16] = groups[0]
    with pytest.raises(LeakError, match=r"group\(s\) \[0.0\].*train and test"):
        check_no_leak(clean, ends, WINDOW, GRID, leaky_groups)
    # the same window in train and validation (two lab values on one grid step)
    same = ends.copy()
    same[13] = same[3]
    with pytest.raises(LeakError,
                       match=r"window ending at .*\(row 50\) is in both train and val"):
        check_no_leak(clean, same, WINDOW, GRID)
    # windows that share input rows across the split (no purge)
    near = ends.copy()
    near[15] = near[11] + 3
    with pytest.raises(LeakError, match="input row .* train and test"):
        check_no_leak(clean, near, WINDOW, GRID)


def test_time_split_purges_boundary_windows_and_never_leaks():
    ends = np.arange(WINDOW - 1, 200, 3)  # windows overlap their neighbours
    stamps = GRID[ends] + 1.0
    splits = split_labels(ends, stamps, None, SplitConfig(train=0.6, val=0.2), WINDOW)
    assert splits.purged == 4  # two held-out labels at each of the two boundaries
    check_no_leak(splits, ends, WINDOW, GRID)
    assert stamps[splits.train].max() < stamps[splits.val].min() < stamps[splits.test].min()
    rows = covered_rows(ends[splits.train], WINDOW, len(GRID))
    assert rows.sum() == ends[splits.train].max() + 1  # train windows cover rows 0..last


def test_group_split_holds_out_whole_groups():
    ends = np.arange(WINDOW - 1, 200, 2)
    groups = (ends // 20).astype(float)  # 10 groups of consecutive rows
    split = SplitConfig(by="group", group_column="batch", folds=5)
    splits = split_labels(ends, GRID[ends], groups, split, WINDOW)
    sets = [set(groups[s]) for s in (splits.train, splits.val, splits.test)]
    assert sets[0].isdisjoint(sets[1]) and sets[0].isdisjoint(sets[2])
    assert sets[1].isdisjoint(sets[2]) and len(sets[2]) == 2
    check_no_leak(splits, ends, WINDOW, GRID, groups)
    with pytest.raises(ConfigError, match="split.folds: 5 folds but .* 3 groups"):
        split_labels(ends, GRID[ends], (ends // 70).astype(float), split, WINDOW)
    # cross-validation of the references: every group held out once, purged, no leak
    folds = group_folds(ends, groups, split, WINDOW)
    held_out = np.concatenate([f.test for f in folds])
    assert len(folds) == 5 and sorted(set(groups[held_out])) == sorted(set(groups))
    assert sum(f.purged for f in folds) > 0  # groups are consecutive rows: boundaries purged
    for fold in folds:
        assert set(groups[fold.train]).isdisjoint(groups[fold.test])
        check_no_leak(fold, ends, WINDOW, GRID, groups)


def test_lab_values_pair_with_the_window_their_dead_time_points_at():
    grid = 1000.0 + np.arange(10) * 5.0  # 1000, 1005, ...
    # stamped 1032 with 20 s dead time: the process at 1012 → the window ending at 1010
    stamps = np.array([1032.0, 1030.0, 1019.9, 1000.0, 1100.0])
    assert window_ends(grid, stamps, 20.0, 5.0).tolist() == [2, 2, -1, -1, -1]
    history = EstimateHistory(period_s=5.0, keep=4)
    for t in grid[:6]:
        history.add(float(t), raw=t / 100, bias=0.5)
    assert history.at(1032.0 - 20.0) == (1010.0, 10.1, 0.5)  # the same rule at the edge
    assert history.at(1003.0) is None  # older than the history keeps


def test_bias_filter_is_the_documented_exponential_filter():
    off = BiasFilter(alpha=0.5)
    assert off.update(measured=10.0, raw_estimate=8.0) == 0.0  # bias_update off
    on = BiasFilter(alpha=0.5, enabled=True)
    assert on.update(10.0, 8.0) == pytest.approx(1.0)  # 0.5·0 + 0.5·2
    assert on.update(10.0, 9.0) == pytest.approx(1.0)  # 0.5·1 + 0.5·1
    assert on.update(7.0, 9.0) == pytest.approx(-0.5)  # 0.5·1 + 0.5·(-2)


def test_last_value_reference_uses_only_values_known_at_the_process_time():
    stamps = np.array([100.0, 200.0, 300.0, 400.0])
    values = np.array([1.0, 2.0, 3.0, 4.0])
    scored, predicted = last_value(stamps, values, 150.0, np.array([0, 1, 2, 3]))
    # label 3 (process time 250) knows the value stamped 200; labels 0 and 1 know none
    assert scored.tolist() == [2, 3] and predicted.tolist() == [1.0, 2.0]
    scored, predicted = last_value(stamps, values, 0.0, np.array([1, 2]))
    assert predicted.tolist() == [1.0, 2.0]  # never itself


# -------------------------------------------------------------------------- bad input


def config(tmp_path: Path, csv: Path | None, **overrides) -> TrainConfig:
    base = {
        "name": "soft", "task": "soft_sensor", "family": "cnn1d",
        "model": {"filters": 4, "depth": 1},
        "data": {"source": "historian", "path": str(csv)} if csv else {
            "source": "simulator", "simulator": {"steps": 1500}},
        "window": {"period_s": 5, "length": 8, "max_gap_s": 15},
        "soft_sensor": {"target": "conversion", "dead_time_s": 10, "lab_every_s": 30},
        "split": {"by": "group", "group_column": "batch", "folds": 4} if csv else {},
        "fit": {"epochs": 1, "batch_size": 32},
        "output_dir": str(tmp_path / "runs"),
    }
    for key, value in overrides.items():
        base[key] = base.get(key, {}) | value if isinstance(value, dict) else value
    return TrainConfig.model_validate(base)


def test_target_that_is_also_an_input_is_refused(tmp_path):
    csv = lab_export(tmp_path / "lab.csv", batches=5)
    bad = config(tmp_path, csv, data={"tags": ["flow_in", "temperature", "conversion"]})
    with pytest.raises(ConfigError, match=r"soft_sensor.target: 'conversion' is also an input"):
        check_train_config(bad, "soft.yaml")
    bad_sim = config(tmp_path, None, data={"tags": ["level", "conversion"]})
    with pytest.raises(ConfigError, match=r"soft_sensor.target: 'conversion' is also an input"):
        check_train_config(bad_sim, "soft.yaml")
    check_train_config(config(tmp_path, csv), "soft.yaml")  # the same export, inputs implied


def test_dead_time_longer_than_the_window_is_refused(tmp_path):
    with pytest.raises(ValidationError, match=r"soft_sensor.dead_time_s 60 s is longer than "
                                              r"the window \(8 x 5 s = 40 s\)"):
        config(tmp_path, None, soft_sensor={"dead_time_s": 60})


def test_group_split_needs_a_group_column_with_groups(tmp_path):
    from training.train import train

    with pytest.raises(ValidationError, match="split.group_column is required"):
        config(tmp_path, None, split={"by": "group"})
    with pytest.raises(ConfigError, match="split.group_column: the simulator has no group"):
        check_train_config(config(tmp_path, None, split={"by": "group", "group_column": "b"}),
                           "soft.yaml")
    one = lab_export(tmp_path / "one.csv", batches=1)
    with pytest.raises(ConfigError, match=r"split.group_column: .* holds 1 group\(s\)"):
        train(config(tmp_path, one))
    assert not (tmp_path / "runs" / "soft" / "model.keras").exists()  # nothing trained


def test_labels_that_never_align_with_windows_are_refused(tmp_path):
    from training.train import train

    early = lab_export(tmp_path / "early.csv", batches=5, lab_rows=slice(0, 6))
    with pytest.raises(ConfigError, match=r"soft_sensor.target: none of the 1 values of "
                                          r"'conversion' .* aligns with a complete window"):
        train(config(tmp_path, early))
    assert not (tmp_path / "runs" / "soft" / "model.keras").exists()


def test_group_split_trains_from_a_historian_export(tmp_path):
    from edge_runtime.bundle import RunRecord
    from training.train import train

    csv = lab_export(tmp_path / "lab.csv", batches=8)
    run_dir = train(config(tmp_path, csv))
    record = RunRecord.load(run_dir)
    m = record.metrics["keras"]
    assert m["labels_test"] > 0 and m["labels_val"] > 0 and m["labels_train"] > m["labels_test"]
    assert [t.name for t in record.input.tags] == ["flow_in", "level", "temperature",
                                                   "pressure", "heater_power"]
    assert record.soft_sensor.target == "conversion" and record.soft_sensor.dead_time_s == 10
    assert np.isfinite(m["pls_rmse"]) and np.isfinite(m["last_value_rmse"])
    assert m["cv_folds"] == 4 and np.isfinite(m["pls_cv_rmse"]) and np.isfinite(
        m["last_value_cv_rmse"])
