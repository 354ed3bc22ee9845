"""Batch-end soft sensors: windows never cross batches, whole batches are split, a time split
with a window reaching across a batch is refused by the leak check, the early window is the
gateway's, and each bad input is an error naming its field before any training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_runtime.batch_tracker import PROGRESS, early_rows, early_window
from edge_runtime.validation import ConfigError
from training.batches import (
    check_within_batches,
    load_batches,
    make_samples,
    split_batches,
)
from training.config import TrainConfig, check_train_config
from training.control.batch_export import simulate_batches
from training.label_splits import LeakError, check_no_leak, time_split

STEPS = 20  # control periods per simulated batch (3 min each): 21 rows a batch
WINDOW = 4


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("batches") / "batches.csv"
    simulate_batches(9, seed=5, steps=STEPS).to_csv(path, index=False)
    return path


def config(path: Path, **over) -> TrainConfig:
    raw = {"name": "b", "task": "soft_sensor", "family": "gru",
           "data": {"source": "historian", "path": str(path),
                    "batch": {"id_column": "batch_id", "phase_column": "phase"}},
           "window": {"period_s": 180, "length": WINDOW, "max_gap_s": 360},
           "soft_sensor": {"target": "yield", "early_percent": [10, 20, 30]},
           "split": {"by": "group", "group_column": "batch_id", "folds": 3}}
    for key, value in over.items():
        raw[key] = raw.get(key, {}) | value if isinstance(value, dict) else value
    return TrainConfig.model_validate(raw)


def test_export_has_batches_tags_and_one_yield_per_batch(export):
    import pandas as pd

    frame = pd.read_csv(export)
    assert {"batch_id", "phase", "T", "Tj", "Tj_sp", "T_sp", "duty_kW", "yield"} == \
        set(frame.columns) - {"timestamp"}
    assert "x1" not in frame and "x2" not in frame
    per_batch = frame.groupby("batch_id")
    assert (per_batch.size() == STEPS + 1).all()
    assert (per_batch["yield"].count() == 1).all()  # the last row only
    assert frame.groupby("batch_id")["yield"].last().std() > 0.005  # recipes and disturbances
    assert set(frame["phase"]) == {1, 2, 3}


def test_windows_never_cross_batches_and_are_the_gateways(export):
    cfg = config(export)
    data = load_batches(cfg)
    assert data.nominal_rows == STEPS + 1 and len(data.batches) == 9
    assert data.tags[0] == "phase" or "phase" in data.tags
    s = make_samples(data, cfg)
    assert s.x.shape == (9 * 3, WINDOW, len(data.tags) + 1)
    first = s.ends - WINDOW + 1
    assert (s.row_batch[first] == s.row_batch[s.ends]).all()
    assert (s.row_batch[s.ends] == s.groups).all()
    check_within_batches(s.ends, WINDOW, s.row_batch, s.grid_s)  # passes
    # the 10 % sample of batch 2 is its first 3 rows, front-padded, progress 0 on the pad
    b = data.batches[1]
    n = early_rows(10, data.nominal_rows)
    assert n == 3
    x = s.x[3]
    assert s.groups[3] == b.id and s.percent[3] == 10
    np.testing.assert_array_equal(x[1:, :-1], b.rows[:3])
    np.testing.assert_array_equal(x[0, :-1], b.rows[0])
    np.testing.assert_allclose(x[:, -1], [0, 1 / 21, 2 / 21, 3 / 21])
    np.testing.assert_array_equal(x, early_window(b.rows[:3], WINDOW, 21))
    # a window moved to reach back into the batch before it is refused
    crossing = s.ends.copy()
    crossing[3] = s.ends[3] - n  # ends on the pad: its window starts in batch 1
    with pytest.raises(LeakError, match="cross a batch boundary"):
        check_within_batches(crossing, WINDOW, s.row_batch, s.grid_s)


def test_group_split_holds_out_whole_batches(export):
    cfg = config(export)
    s = make_samples(load_batches(cfg), cfg)
    splits = split_batches(s, cfg)
    sets = [set(s.groups[i]) for i in (splits.train, splits.val, splits.test)]
    assert sets[0].isdisjoint(sets[1]) and sets[0].isdisjoint(sets[2])
    assert sets[1].isdisjoint(sets[2]) and len(sets[2]) == 3
    timed = config(export, split={"by": "time", "train": 0.6, "val": 0.2,
                                  "group_column": None})
    t = split_batches(s, timed)
    assert s.stamps[t.train].max() < s.stamps[t.val].min() < s.stamps[t.test].min()


def test_time_split_with_a_cross_batch_window_is_refused(export):
    """The naive way — plain windows on the export's rows, labels split in time order — puts
    a batch's windows on two sides and, with a 10 % window longer than the batch so far, a
    window across the previous batch: the leak check refuses it."""
    cfg = config(export)
    data = load_batches(cfg)
    rows = np.concatenate([b.rows for b in data.batches])
    starts = np.cumsum([0] + [len(b.rows) for b in data.batches[:-1]])
    row_batch = np.concatenate([np.full(len(b.rows), b.id) for b in data.batches])
    grid = 1.8e9 + 180.0 * np.arange(len(rows))
    ends, groups = [], []
    for b, start in zip(data.batches, starts, strict=True):
        for k in (20, 30):
            ends.append(start + early_rows(k, data.nominal_rows) - 1)
            groups.append(b.id)
    ends.insert(0, starts[4] + early_rows(10, data.nominal_rows) - 1)  # planted: 3 rows of
    groups.insert(0, data.batches[4].id)  # batch 5 and the last row of batch 4
    ends, groups = np.array(ends), np.array(groups)
    splits = time_split(grid[ends], cfg.split.model_copy(update={"by": "time"}))
    with pytest.raises(LeakError, match="leak"):
        check_no_leak(splits, ends, WINDOW, grid, groups)
    with pytest.raises(LeakError, match="starts in batch 4"):
        check_within_batches(ends, WINDOW, row_batch, grid)


def _write(frame, tmp_path: Path) -> Path:
    path = tmp_path / "b.csv"
    frame.to_csv(path, index=False)
    return path


def test_bad_batch_input_is_refused_naming_the_field(export, tmp_path):
    import pandas as pd

    frame = pd.read_csv(export)
    one = frame.assign(batch_id=1, **{"yield": np.where(frame.index == len(frame) - 1,
                                                        0.6, np.nan)})
    cfg = config(_write(one, tmp_path))
    s = make_samples(load_batches(cfg), cfg)
    with pytest.raises(ConfigError, match="split.group_column.*1 group"):
        split_batches(s, cfg)
    never = frame.assign(**{"yield": np.nan})
    with pytest.raises(ConfigError, match=r"soft_sensor.target: none of the 9 batches"):
        load_batches(config(_write(never, tmp_path)))
    short = frame[~((frame.batch_id == 3) & (frame.index % 21 > 3))]  # batch 3: 4 rows
    short = short.assign(**{"yield": short["yield"].where(short.batch_id != 3, 0.6)})
    cfg = config(_write(short, tmp_path), soft_sensor={"target": "yield",
                                                       "early_percent": [10, 30]})
    with pytest.raises(ConfigError, match=r"soft_sensor.early_percent: 30 % .* 7 rows.* "
                                          r"\(batch 3: 4 rows\)"):
        make_samples(load_batches(cfg), cfg)
    again = frame.assign(batch_id=frame.batch_id.where(frame.batch_id != 5, 1))
    with pytest.raises(ConfigError, match="data.batch.id_column: batch 1 appears again"):
        load_batches(config(_write(again, tmp_path)))
    path = _write(frame, tmp_path)
    for over, field in (({"split": {"group_column": "phase"}}, "split.group_column"),
                        ({"soft_sensor": {"target": "yield", "early_percent": [0]}},
                         "soft_sensor.early_percent"),
                        ({"data": {"source": "historian", "path": str(path),
                                   "batch": {"id_column": "lot"}}}, "data.batch.id_column")):
        with pytest.raises(ConfigError, match=field):
            check_train_config(config(path, **over), "c.yaml")


def test_progress_channel_is_recorded_last():
    assert PROGRESS == "batch_progress"
    x = early_window(np.ones((30, 2)), 8, 20)
    assert x.shape == (8, 3) and x[-1, -1] == 1.5 and (x[:, -1] > 0).all()


def test_targets_from_a_per_batch_table(export, tmp_path):
    import pandas as pd

    frame = pd.read_csv(export)
    table = frame.groupby("batch_id")["yield"].last().reset_index()
    table = table[table.batch_id != 4].assign(**{"yield": lambda t: t["yield"] + 1.0})
    table.to_csv(tmp_path / "per_batch.csv", index=False)
    rows = frame.drop(columns="yield")
    cfg = config(_write(rows, tmp_path), data={"source": "historian", "path": str(
        tmp_path / "b.csv"), "batch": {"id_column": "batch_id", "targets": str(
            tmp_path / "per_batch.csv")}})
    check_train_config(cfg, "c.yaml")  # the target column is in the table, not the export
    data = load_batches(cfg)
    assert [b.id for b in data.batches] == [1, 2, 3, 5, 6, 7, 8, 9]
    assert data.without_target == 1 and "phase" in data.tags  # every other column is an input
    np.testing.assert_allclose([b.target for b in data.batches], table["yield"])
    table.drop(columns="yield").to_csv(tmp_path / "per_batch.csv", index=False)
    with pytest.raises(ConfigError, match="data.batch.targets: no column 'yield'"):
        load_batches(cfg)


def test_simulate_batches_cli_writes_the_export(tmp_path, capsys):
    import pandas as pd

    from procedge.cli import main

    out = tmp_path / "b.csv"
    assert main(["simulate", "--batches", "2", "--seed", "4", "--out", str(out)]) in (0, None)
    assert "wrote 2 batches (122 rows)" in capsys.readouterr().out
    assert pd.read_csv(out).groupby("batch_id")["yield"].count().tolist() == [1, 1]
    with pytest.raises(SystemExit) as exit_:  # no --out: a usage error
        main(["simulate", "--batches", "2"])
    assert exit_.value.code == 2
    assert "--batches needs --out" in capsys.readouterr().err


def test_recipe_columns_add_the_batch_record_and_change_no_batch():
    """``recipe_columns``: each batch's recipe in every row of it (known at batch start),
    inside the drawn ranges; every other column is the plain export's, value for value; the
    ``truth`` list gets each batch's hidden parameters."""
    import pandas as pd

    from training.control.batch_export import RECIPE, RECIPE_TAGS

    truth: list[dict[str, float]] = []
    plain = simulate_batches(3, seed=5, steps=STEPS, truth=truth)
    with_recipe = simulate_batches(3, seed=5, steps=STEPS, recipe_columns=True)
    pd.testing.assert_frame_equal(with_recipe[plain.columns], plain)
    names = [tag for tag, _ in RECIPE_TAGS]
    assert list(with_recipe.columns[-4:]) == [*names, "yield"]
    per_batch = with_recipe.groupby("batch_id")[names]
    assert (per_batch.nunique() == 1).all().all()  # constant within a batch
    first = per_batch.first()
    assert first["recipe_T_start"].nunique() == 3  # drawn per batch
    for tag, key in zip(names, ("T_start", "T_end", "tau_h"), strict=True):
        low, high = RECIPE[key]
        assert first[tag].between(low, high).all(), tag
        np.testing.assert_allclose(first[tag], [t[key] for t in truth])  # the hidden truth
    np.testing.assert_allclose(plain["yield"].dropna(), [t["yield"] for t in truth])
    assert {"a1", "a2", "ua", "x10"} <= set(truth[0])


def test_data_quality_is_reported_per_batch_and_strict_stops(export, tmp_path, capsys):
    """A historian batch export gets the data-quality report of every historian task:
    printed, in training.json, drawn, and enforced by ``data.strict``. A gap inside a batch
    counts; the idle hour between two batches does not."""
    import json

    import pandas as pd

    from training.train import train

    frame = pd.read_csv(export)
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    frame["timestamp"] = (stamps + pd.to_timedelta(np.where(frame["batch_id"] >= 5, 3600, 0),
                                                   unit="s")).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    inside = frame.index[frame["batch_id"] == 3][5:7]  # two grid steps: 540 s between values
    frame.loc[inside, "T"] = np.nan
    path = tmp_path / "gapped.csv"
    frame.to_csv(path, index=False)
    fit = {"epochs": 1, "batch_size": 8, "tensorboard": False}
    run = train(config(path, fit=fit, model={"units": [4]}, output_dir=str(tmp_path / "runs")))
    report = json.loads((run / "training.json").read_text())["data_quality"]
    assert report["tags"]["T"]["gaps"] == 1 and report["tags"]["Tj"]["gaps"] == 0
    assert "yield" not in report["tags"]  # empty between batch ends by design
    assert report["warnings"] == ["T: 2 bad values {'': 2}",
                                  "T: 1 gaps longer than max_gap_s 360 s (longest 540 s)"]
    assert (run / "data_quality.png").is_file()
    assert "data quality: " in capsys.readouterr().out
    strict = config(path, fit=fit, model={"units": [4]}, output_dir=str(tmp_path / "strict"),
                    data={"strict": True})
    with pytest.raises(ValueError, match=r"data-quality check failed \(strict\): T: 2 bad"):
        train(strict)
    assert not (tmp_path / "strict" / "b" / "model.keras").exists()
