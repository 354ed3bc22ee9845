"""``procedge eval ett``: the published ETT protocol (split, scaling, windows, metrics)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation import ett
from evaluation.results import check

COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


def synthetic_ett(path: Path, rows: int, freq: str, seed: int = 0) -> Path:
    """An ETT-format CSV: daily cycle + drift + noise, with a level shift after the train
    rows (so a scaler fitted on all rows would differ from a train-only one)."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    per_day = 24 if freq == "h" else 96
    base = np.sin(2 * np.pi * t / per_day)[:, None] * np.arange(1, 8) + 0.001 * t[:, None]
    values = base + 0.3 * rng.standard_normal((rows, 7))
    values[ett.HOURLY_BORDERS[0] * (1 if freq == "h" else 4):] += 5.0
    frame = pd.DataFrame(values, columns=COLUMNS)
    frame.insert(0, "date", pd.date_range("2016-07-01", periods=rows, freq=freq)
                 .strftime("%Y-%m-%d %H:%M:%S"))
    frame.to_csv(path, index=False)
    return path


def test_hourly_split_scaler_and_windows(tmp_path):
    data = ett.load_ett(synthetic_ett(tmp_path / "ETTx.csv", 14500, "h"))
    assert data.borders == (8640, 11520, 14400) and data.period_s == 3600
    prep = ett.prepare(data, "M", "OT", window=48, horizon=24)
    train_rows = data.values[:8640]
    np.testing.assert_allclose(prep.scaler.mean, train_rows.mean(axis=0))
    np.testing.assert_allclose(prep.scaler.scale, train_rows.std(axis=0))  # population std
    assert len(prep.train[0]) == 8640 - 48 - 24 + 1
    assert len(prep.val[0]) == len(prep.test[0]) == 2880 - 24 + 1
    # the first test window's input starts L rows before the test part; its target at 11520
    scaled = prep.scaler.transform(data.values)
    np.testing.assert_allclose(prep.test[0][0], scaled[11520 - 48:11520], rtol=1e-6)
    np.testing.assert_allclose(prep.test[1][-1], scaled[14400 - 24:14400], rtol=1e-6)


def test_fifteen_minute_files_multiply_borders_by_four(tmp_path):
    data = ett.load_ett(synthetic_ett(tmp_path / "ETTm.csv", 57600, "15min"))
    assert data.borders == (34560, 46080, 57600) and data.period_s == 900


def test_univariate_and_ms_features(tmp_path):
    data = ett.load_ett(synthetic_ett(tmp_path / "ETTx.csv", 14400, "h"))
    s = ett.prepare(data, "S", "OT", 24, 12)
    ms = ett.prepare(data, "MS", "OT", 24, 12)
    assert s.train[0].shape[-1] == 1 and s.train[1].shape[-1] == 1
    assert ms.train[0].shape[-1] == 7 and ms.target_columns == [6]
    np.testing.assert_allclose(s.test[1], ms.test[1], rtol=1e-6)  # same OT targets


def test_baselines():
    x = np.arange(2 * 48 * 2, dtype=np.float32).reshape(2, 48, 2)
    p = ett.persistence(x, [1], 5)
    assert p.shape == (2, 5, 1) and np.all(p[0, :, 0] == x[0, -1, 1])
    s = ett.seasonal_naive(x, [0, 1], 30, period=24)
    np.testing.assert_array_equal(s[:, :24], x[:, 24:])  # last day, repeated
    np.testing.assert_array_equal(s[:, 24:], x[:, 24:30])


def test_protocol_check_fails_loudly_on_drift():
    assert "matches" in ett.check_protocol("ETTh1", 96, "M", 1.2944, 0.7132)
    with pytest.raises(ett.ProtocolError, match="drifted"):
        ett.check_protocol("ETTh1", 96, "M", 1.31, 0.7132)


def test_eval_trains_converts_and_reports_float_and_edge(tmp_path, capsys):
    csv = synthetic_ett(tmp_path / "ETTx.csv", 14400, "h")
    out = tmp_path / "result.json"
    ett.main(["--csv", str(csv), "--input-len", "48", "--horizon", "24", "--model", "linear",
              "--epochs", "2", "--batch-size", "256", "--mode", "fp32",
              "--out", str(tmp_path / "runs"), "--json", str(out)])
    result = json.loads(out.read_text())
    check(result)  # the one result format of every benchmark
    settings = result["settings"]
    assert (settings["dataset"], settings["horizon"], settings["input_len"],
            settings["features"]) == ("ETTx", 24, 48, "M")
    info = settings["training"]["linear"]
    assert (info["epochs_budget"], info["truncated"]) == (2, False) and info["epochs"] <= 2
    rows = {(r["model"], r["variant"]): r for r in result["results"]}
    assert set(rows) == {("persistence", "numpy"), ("seasonal_naive", "numpy"),
                         ("linear", "keras"), ("linear", "edge")}
    assert all(r["windows"] == 2880 - 24 + 1 for r in rows.values())
    assert rows["linear", "keras"]["mse"] < rows["persistence", "numpy"]["mse"]
    assert rows["linear", "edge"]["mode"] == "fp32"
    assert abs(rows["linear", "edge"]["mse"] - rows["linear", "keras"]["mse"]) < 1e-4
    assert "linear" in capsys.readouterr().out


DATA = Path(os.environ.get("PROCEDGE_DATA", Path(__file__).resolve().parents[2] / "shared/data"))


@pytest.mark.skipif(not (DATA / "ett" / "ETTh1.csv").is_file(), reason="no $PROCEDGE_DATA/ett")
def test_etth1_persistence_reproduces_the_published_baseline(tmp_path):
    result = ett.main(["--csv", str(DATA / "ett" / "ETTh1.csv"), "--json", str(tmp_path / "r")])
    persist = result["results"][0]
    assert persist["model"] == "persistence" and persist["windows"] == 2785
    assert round(persist["mse"], 3) == 1.294 and round(persist["mae"], 3) == 0.713


def test_quantile_rows_score_p50_and_report_coverage():
    from training.metrics import forecast_metrics

    y = np.zeros((4, 2, 1))
    y[0] = 5.0  # outside every interval below
    pred = np.stack([np.full((4, 2, 1), v) for v in (-1.0, 0.5, 1.0)], axis=-1)  # P10/P50/P90
    m = forecast_metrics(y, pred, [0.1, 0.5, 0.9])
    assert m["mse"] == pytest.approx(np.mean((y - 0.5) ** 2))  # on P50, not on all quantiles
    assert m["coverage"] == pytest.approx(0.75) and m["crossing_share"] == 0.0
    pred[1, 0, 0] = [1.0, 0.5, -1.0]  # one crossed cell
    assert forecast_metrics(y, pred, [0.1, 0.5, 0.9])["crossing_share"] == pytest.approx(1 / 8)
    row = ett._row("lstm", "edge", "int8", m, 4)
    assert row["coverage"] == pytest.approx(0.75) and "crossing_share" not in row
    table = ett.format_table({"dataset": "ETTx", "features": "M", "input_len": 8, "horizon": 2,
                              "period_s": 3600, "split_rows": [1, 2, 3], "results": [row],
                              "train_seconds": {}, "protocol_check": "-"})
    assert "0.7500" in table and "P10–P90" in table


def test_median_loss_flag_reaches_the_fit_and_the_run_record(tmp_path):
    """``--median-loss mse`` trains the quantile model's 0.5 head on the squared error and the
    run record says so; without it the record says plain pinball."""
    csv = synthetic_ett(tmp_path / "ETTx.csv", 14400, "h")
    for flag in ([], ["--median-loss", "mse"]):
        out = tmp_path / ("mse" if flag else "pinball")
        ett.main(["--csv", str(csv), "--input-len", "24", "--horizon", "6", "--model", "lstm",
                  "--model-args", '{"units": [4], "quantiles": [0.1, 0.5, 0.9]}',
                  "--epochs", "1", "--batch-size", "512", "--mode", "none",
                  "--out", str(out), "--json", str(out / "r.json"), *flag])
        record = json.loads(next(out.rglob("training.json")).read_text())
        assert record["training"]["loss"] == (
            "pinball, squared error at 0.5" if flag else "pinball")
