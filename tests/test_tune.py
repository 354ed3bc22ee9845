"""`procedge tune`: a tiny search writes a best config that `procedge train` takes; a
classification soft sensor is searched on its validation cross-entropy; the test split never
reaches a trial; a bad search space is refused, naming the field, before
TensorFlow loads."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from procedge.cli import main
from tests.helpers import lab_export

ROOT = Path(__file__).resolve().parent.parent

TINY = {
    "name": "soft_tune", "task": "soft_sensor", "family": "cnn1d",
    "model": {"filters": 4, "depth": 1},
    "data": {"source": "simulator", "simulator": {"steps": 1000, "seed": 0}},
    "window": {"period_s": 5, "length": 6, "max_gap_s": 15},
    "soft_sensor": {"target": "conversion", "dead_time_s": 20, "lab_every_s": 30},
    "fit": {"epochs": 1, "batch_size": 64, "patience": 1, "learning_rate": 0.01,
            "tensorboard": False},
    "tune": {"algorithm": "random", "max_trials": 2, "seed": 1,
             "space": {"filters": {"choices": [2, 4]},
                       "learning_rate": {"min": 0.001, "max": 0.03, "sampling": "log"}}},
}


def _write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_tiny_tune_writes_a_best_config_that_trains(tmp_path, capsys):
    config = _write(tmp_path / "tiny.yaml", TINY | {"output_dir": str(tmp_path / "runs")})
    out = tmp_path / "tune"
    main(["tune", str(config), "--out", str(out), "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with (out / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all(r["status"] == "COMPLETED" for r in rows)
    scores = [float(r["val_loss"]) for r in rows]
    assert result["best"]["val_loss"] == pytest.approx(min(scores))
    assert (out / "trials.png").stat().st_size > 0
    assert json.loads((out / "trials.json").read_text())["algorithm"] == "random"
    best = yaml.safe_load(Path(result["best_config"]).read_text())
    winner = rows[int(np.argmin(scores))]
    assert "tune" not in best
    assert best["model"]["filters"] == int(winner["filters"])
    assert best["fit"]["learning_rate"] == pytest.approx(float(winner["learning_rate"]))
    main(["train", result["best_config"], "--json"])  # unchanged, as written
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert trained["ok"] and np.isfinite(trained["metrics"]["rmse"])


def test_tiny_tune_of_a_classifier_scores_its_validation_cross_entropy(tmp_path, capsys):
    """A classification soft sensor is searched on its validation cross-entropy, with the
    validation accuracy beside it; the trials see class indices, never test labels."""
    from tests.test_soft_sensor_classes import CLASSES, TAGS, grade_export
    from training.config import load_train_config
    from training.tune_data import TuneSource

    export = grade_export(tmp_path / "grade.csv")
    config = _write(tmp_path / "grade.yaml", TINY | {
        "name": "grade_tune", "data": {"source": "historian", "path": str(export),
                                       "tags": TAGS},
        "soft_sensor": {"target": "grade", "dead_time_s": 10, "kind": "classification",
                        "classes": CLASSES},
        "tune": TINY["tune"] | {"space": {"filters": {"choices": [2, 4]}}},
        "output_dir": str(tmp_path / "runs")})
    data = TuneSource(load_train_config(config)).get(6)
    assert set(np.unique(np.concatenate([data.y, data.val_y]))) <= {0.0, 1.0, 2.0}
    assert data.scale == 1.0 and data.blanked_labels > 10
    main(["tune", str(config), "--out", str(tmp_path / "tune"), "--json"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with (tmp_path / "tune" / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all(r["status"] == "COMPLETED" for r in rows)
    assert "val_rmse" not in rows[0] and all(0 <= float(r["val_accuracy"]) <= 1 for r in rows)
    assert result["best"]["val_loss"] == pytest.approx(min(float(r["val_loss"]) for r in rows))
    best = load_train_config(Path(result["best_config"]))
    assert best.soft_sensor.kind == "classification" and best.tune is None
    assert best.model["filters"] == result["best"]["filters"]


def test_the_test_split_never_reaches_a_trial(tmp_path):
    """Garbage in every test-split row and label: the trials' data is identical to the clean
    data's, the test labels are blanked, and a window onto a blanked row is refused."""
    from training.config import load_train_config
    from training.historian import epoch_seconds
    from training.tune_data import TestSplitRead, TuneSource, blind, blind_windows

    export = lab_export(tmp_path / "export.csv", batches=3)
    config = {k: v for k, v in TINY.items() if k != "tune"} | {
        "data": {"source": "historian", "path": str(export), "tags": ["level", "temperature"]},
        "window": {"period_s": 5, "length": 6, "max_gap_s": 15}}
    clean = load_train_config(_write(tmp_path / "clean.yaml", config))
    source = TuneSource(clean)
    blinded = blind(source.labels, source.grid, clean)
    test_labels = int(np.isnan(blinded.values).sum())
    assert test_labels > 10 and blinded.blank[-1]  # the last rows are the test split's
    frame = pd.read_csv(export, dtype=str, keep_default_na=False)
    seconds = epoch_seconds(pd.to_datetime(frame["timestamp"], utc=True))
    rows = np.isin(seconds, source.grid.grid_s[blinded.blank])
    assert rows.sum() == blinded.blank.sum()
    for column in ("level", "temperature"):
        frame.loc[rows, column] = "1e6"
    test_stamps = blinded.stamps[np.isnan(blinded.values)]
    frame.loc[np.isin(seconds, test_stamps), "conversion"] = "-1e6"
    frame.to_csv(tmp_path / "dirty.csv", index=False)
    dirty = load_train_config(_write(tmp_path / "dirty.yaml", config | {"data": config[
        "data"] | {"path": str(tmp_path / "dirty.csv")}}))
    a, b = source.get(6), TuneSource(dirty).get(6)
    for name in ("x", "y", "val_x", "val_y"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.scale == b.scale and a.blanked_labels == test_labels
    ends = np.array([len(blinded.rows) - 1])  # a window on the last (test) rows
    with pytest.raises(TestSplitRead):
        blind_windows(blinded.rows, ends, 6, "hold", blinded.blank)


BAD = [  # (change to TINY's tune section, or the whole config; what the error must hold)
    ({"space": {"filtres": {"choices": [4]}}}, ["tune.space.filtres", "did you mean 'filters'"]),
    ({"space": {"learning_rate": {"min": 0.1, "max": 0.01}}},
     ["tune.space.learning_rate", "below max"]),
    ({"space": {"filters": {"choices": [4.5, 8]}}}, ["tune.space.filters", "integers"]),
    ({"space": {"window": {"choices": [2, 8]}}}, ["tune.space.window", "dead_time_s"]),
    ({"space": {"layers": {"min": 1, "max": 3}}}, ["tune.space.layers", "units"]),
    ({"space": {"dropout": {"choices": [0.1, 1.5]}}}, ["tune.space.dropout", "[0, 1)"]),
    ({"algorithm": "hyperbnd"}, ["tune.algorithm"]),
    ({"space": {}}, ["tune.space"]),
    (None, ["tune", "no `tune:` section"]),
]


def test_bad_search_space_is_refused_naming_the_field_before_tensorflow(tmp_path):
    configs = []
    for i, (change, _) in enumerate(BAD):
        config = {k: v for k, v in TINY.items() if k != "tune"}
        if change is not None:
            config["tune"] = TINY["tune"] | change
        configs.append(str(_write(tmp_path / f"bad{i}.yaml", config)))
    probe = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "keras_tuner"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        from procedge.cli import main
        for config in {configs!r}:
            try:
                main(["tune", config])
            except SystemExit as exc:
                print("EXIT", exc.code, file=sys.stderr, flush=True)
        """)
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "blocked" not in out.stderr, out.stderr
    reports = out.stderr.split("EXIT")
    assert len(reports) == len(BAD) + 1, out.stderr
    for (change, fragments), report, config in zip(BAD, reports[:-1], configs, strict=True):
        assert report.lstrip().startswith("procedge tune") or "procedge tune" in report
        assert config in report, report
        for fragment in fragments:
            assert fragment in report, (change, fragment, report)
    assert all(r.split()[0] == "2" for r in reports[1:]), out.stderr


def test_trial_values_go_where_training_reads_them():
    from training.config import TrainConfig
    from training.tune import make_oracle, trial_config

    base = TrainConfig.model_validate(TINY | {"family": "gru", "model": {"units": [8]}})
    config = trial_config(base, {"units": 16, "layers": 2, "dropout": 0.1, "window": 12,
                                 "learning_rate": 0.005, "batch_size": 16, "tuner/epochs": 3})
    assert config.model == {"units": [16, 16], "dropout": 0.1}
    assert (config.window.length, config.fit.learning_rate, config.fit.batch_size) == (
        12, 0.005, 16)
    assert base.model == {"units": [8]} and base.window.length == 6  # the base is a copy
    assert trial_config(base, {"layers": 3}).model["units"] == [8, 8, 8]
    hyperband = base.tune.model_copy(update={"algorithm": "hyperband", "max_trials": 5})
    assert make_oracle(hyperband, epochs=9).max_trials == 5
