"""The historian path: an export with every common defect planted is read as configured
(separator, decimal comma, day-first local time) and every defect is counted in the
data-quality report; ``--strict`` refuses it naming the file; the example config trains and
records the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge_runtime.bundle import RunRecord
from tests.helpers import tiny_config
from training.config import TrainConfig
from training.historian import load_grid
from training.series import SeriesData
from training.simulator import simulate, write_csv

ROOT = Path(__file__).resolve().parent.parent
FEB_3_2026 = 1770076800.0  # 2026-02-03T00:00:00Z: day 3, month 2, so day-first matters
BERLIN = "Europe/Berlin"  # UTC+1 in February
DAYFIRST = "%d.%m.%Y %H:%M:%S"


def defective_export(path: Path, steps: int = 400) -> Path:
    """A semicolon/decimal-comma export, day-first Berlin time without a zone, with planted:
    2 rows out of order, 2 duplicate timestamps (the later row differs), bad tokens
    (temperature: 'Bad Input', '#N/A'; level: ''; flow_in: 'NaN'), 1 unreadable cell
    (pressure: 'oops'), 1 impossible timestamp, 6 rows missing (a gap in every tag), and a
    'valve' tag constant over the training part."""
    run = simulate(steps, 5.0, seed=1, start_epoch_s=FEB_3_2026)
    write_csv(run, path, sep=";", decimal=",", timestamp_format=DAYFIRST, timezone=BERLIN)
    header, *rows = path.read_text().splitlines()
    header += ";valve"
    rows = [r + (";50" if i < int(steps * 0.8) else f";{50 + i % 7}") for i, r in enumerate(rows)]
    cells = [r.split(";") for r in rows]
    col = {name: k for k, name in enumerate(header.split(";"))}
    cells[20][col["temperature"]] = "Bad Input"
    cells[21][col["temperature"]] = "#N/A"
    cells[30][col["level"]] = ""
    cells[40][col["flow_in"]] = "NaN"
    cells[60][col["pressure"]] = "oops"
    dup_100 = list(cells[100])
    dup_100[col["level"]] = "9,5"  # the later duplicate: its value must win
    dup_200 = list(cells[200])
    cells[70][col["timestamp"]] = "31.02.2026 10:00:00"  # no such day
    cells[10], cells[11] = cells[11], cells[10]  # out of order: one step back each
    cells[50], cells[51] = cells[51], cells[50]
    del cells[300:306]  # 35 s without any sample
    cells.insert(201, dup_200)  # right after their originals (the del was after both)
    cells.insert(101, dup_100)
    path.write_text("\n".join([header, *(";".join(c) for c in cells)]) + "\n")
    return path


def historian_config(tmp_path: Path, csv: Path, **data) -> TrainConfig:
    config = tiny_config("tank_anomaly", tmp_path)
    config.data = config.data.model_validate(
        {"source": "historian", "path": csv, "sep": ";", "decimal": ",",
         "timestamp_format": "dayfirst", "timezone": BERLIN} | data)
    config.window.max_gap_s = 12.0
    return config


def test_every_planted_defect_is_counted(tmp_path, capsys):
    csv = defective_export(tmp_path / "export.csv")
    config = historian_config(tmp_path, csv)
    data = SeriesData.load(config, tmp_path)
    q = data.grid.quality
    assert q["rows"] == 400 - 6 + 2
    # written as 03.02.2026 01:00:00 Berlin time: 3 February (day-first), 00:00 UTC
    assert (q["start"], q["timezone"], q["timezone_assumed"]) == (
        "2026-02-03T00:00:00Z", BERLIN, False)
    assert q["span_s"] == 399 * 5.0
    assert q["bad_timestamps"] == 1 and q["bad_timestamp_examples"] == ["31.02.2026 10:00:00"]
    assert q["unsorted_rows"] == 2
    assert q["duplicate_timestamps"] == 2
    t = q["tags"]
    assert t["temperature"]["bad_values"] == 2
    assert t["temperature"]["bad_tokens"] == {"#N/A": 1, "Bad Input": 1}
    assert t["level"]["bad_tokens"] == {"": 1} and t["flow_in"]["bad_tokens"] == {"NaN": 1}
    assert t["pressure"]["bad_values"] == 0 and t["pressure"]["unreadable"] == 1
    assert t["pressure"]["unreadable_examples"] == ["oops"]
    # 15 s without temperature (rows 20, 21 bad) and the 35 s hole in every tag; the other
    # single missing samples leave 10 s, within max_gap_s 12; row 70's lost stamp too
    assert {k: v["gaps"] for k, v in t.items()} == {
        "flow_in": 1, "level": 1, "temperature": 2, "pressure": 1, "heater_power": 1,
        "valve": 1}
    assert t["temperature"]["longest_gap_s"] == 35.0
    assert [k for k, v in t.items() if v["flat"]] == ["valve"]
    assert t["valve"]["flat_value"] == 50.0
    # duplicates resolved by keeping the later row: level reads 9.5 at row 100's time
    row_100 = int((FEB_3_2026 + 100 * 5.0 - data.grid.grid_s[0]) / 5.0)
    assert data.grid.rows[row_100, data.grid.tags.index("level")] == 9.5
    assert len(q["warnings"]) == 3 + 3 + 1 + 6 + 1  # stamps; tokens; unreadable; gaps; flat
    printed = capsys.readouterr().out
    assert "2 out of order (sorted), 2 duplicated (last kept)" in printed
    assert (tmp_path / "data_quality.png").stat().st_size > 1000


def test_zone_less_stamps_without_a_timezone_are_reported_as_utc(tmp_path):
    csv = defective_export(tmp_path / "export.csv")
    config = historian_config(tmp_path, csv, timezone=None)
    q = load_grid(config.data, config.window).quality
    assert (q["start"], q["timezone"], q["timezone_assumed"]) == (
        "2026-02-03T01:00:00Z", "UTC", True)


def test_misread_exports_say_which_key_to_set(tmp_path):
    csv = defective_export(tmp_path / "export.csv")
    with pytest.raises(ValueError, match=r"export.csv: no timestamp column.*data.sep: ';'"):
        load_grid(historian_config(tmp_path, csv, sep=",").data, tiny_config(
            "tank_anomaly", tmp_path).window)
    with pytest.raises(ValueError, match=r"not readable as timestamp_format 'ISO8601'.*"
                                         r"'dayfirst'"):
        load_grid(historian_config(tmp_path, csv, timestamp_format="ISO8601").data,
                  tiny_config("tank_anomaly", tmp_path).window)


def test_strict_refuses_the_defective_export_naming_the_file(tmp_path):
    csv = defective_export(tmp_path / "export.csv")
    config = historian_config(tmp_path, csv)
    path = tmp_path / "strict.yaml"
    path.write_text(yaml.safe_dump(json.loads(config.model_dump_json())))
    out = subprocess.run([sys.executable, "-m", "procedge", "train", str(path), "--strict"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert f"{csv}: data-quality check failed (strict)" in out.stderr
    assert "2 rows out of time order" in out.stderr and "valve: flat-lined" in out.stderr
    assert not (tmp_path / "runs" / config.name / "model.keras").exists()  # stopped first


def test_the_example_config_reads_the_file_the_readme_writes():
    """README's walkthrough writes data/plant.csv from the repository root and trains the
    example config, whose relative data.path is read from the config file's folder."""
    import re

    from training.config import load_train_config

    readme = (ROOT / "README.md").read_text()
    written = re.search(r"python -m training\.simulator --csv (\S+)", readme).group(1)
    assert "procedge train configs/historian/historian_example.yaml" in readme
    config = load_train_config(ROOT / "configs/historian/historian_example.yaml")
    assert config.data.path == (ROOT / written).resolve()


def test_the_example_config_trains_on_a_generated_export(tmp_path):
    raw = yaml.safe_load((ROOT / "configs/historian/historian_example.yaml").read_text())
    csv = tmp_path / "plant.csv"
    d = raw["data"]
    write_csv(simulate(900, 5.0, seed=2, start_epoch_s=FEB_3_2026), csv, sep=d["sep"],
              decimal=d["decimal"], timestamp_format=DAYFIRST, timezone=d["timezone"])
    raw["data"]["path"] = str(csv)
    raw["fit"] = {"epochs": 2, "batch_size": 64, "patience": 1, "tensorboard": False}
    raw["model"] = {"hidden": [8, 4]}
    raw["output_dir"] = str(tmp_path / "runs")
    config_path = tmp_path / "example.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    from training.config import load_train_config
    from training.train import train

    run_dir = train(load_train_config(config_path))
    record = RunRecord.load(run_dir)
    q = record.data_quality
    assert (q["rows"], q["unsorted_rows"], q["duplicate_timestamps"]) == (900, 0, 0)
    assert q["start"] == "2026-02-03T00:00:00Z" and q["warnings"] == []
    assert np.isfinite(record.metrics["keras"]["test_far"])
    assert (run_dir / "data_quality.png").is_file()


def test_run_records_and_manifests_without_a_report_still_load(tmp_path):
    raw = {"name": "m", "task": "forecast", "family": "tcn", "training_data_sha256": "x",
           "input": {"tags": [{"name": "a"}], "period_s": 5, "window": 4, "max_gap_s": 15},
           "scaler": {"mean": [0.0], "scale": [1.0]}}
    (tmp_path / "training.json").write_text(json.dumps(raw))
    assert RunRecord.load(tmp_path).data_quality is None
