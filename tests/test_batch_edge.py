"""A batch-end soft sensor at the edge: the tracker rebuilds the training windows row by row
(a new batch id resets it, rows without an id belong to no batch), and over a real Mosquitto
the daemon publishes the estimate every period once the first K % of the batch has run, with
the batch id in the payload, equal to the model's estimate of the training-built window."""

from __future__ import annotations

import json
import time

import numpy as np
import paho.mqtt.client as mqtt
import pandas as pd
import pytest

from edge_runtime.batch_tracker import BatchSpec, BatchTracker, early_window
from edge_runtime.payloads import iso_ms, parse_timestamp

TAGS = ["a", "b"]


def test_tracker_rebuilds_training_windows_and_resets_on_a_new_batch():
    spec = BatchSpec(id_tag="batch", nominal_rows=10, early_percent=[30, 50])
    tracker = BatchTracker(spec, [*TAGS, "batch_progress"], window=4)
    assert tracker.buffer_tags == ["a", "b", "batch"] and spec.first_rows == 3
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(12, 2)), rng.normal(size=(6, 2))
    out = [tracker.add(float(i), np.r_[row, 7.0]) for i, row in enumerate(first)]
    assert out[:2] == [None, None]  # fewer than 30 % of 10 rows
    for n in range(3, 13):
        np.testing.assert_allclose(out[n - 1], early_window(first[:n], 4, 10), rtol=1e-6)
    assert tracker.info(11.0).batch_id == 7.0 and tracker.info(11.0).rows == 12
    assert tracker.add(12.0, np.array([np.nan, np.nan, np.nan])) is None  # turnaround
    out = [tracker.add(13.0 + i, np.r_[row, 8.0]) for i, row in enumerate(second)]
    assert out[:2] == [None, None]  # batch 8 starts over: no row of batch 7 in it
    np.testing.assert_allclose(out[2], early_window(second[:3], 4, 10), rtol=1e-6)
    assert tracker.batches_started == 2 and tracker.rows_without_id == 1
    assert tracker.info(15.0).progress_pct == pytest.approx(30.0)


@pytest.fixture(scope="module")
def batch_bundle(tmp_path_factory):
    from converters.build import build_auto
    from training.config import TrainConfig
    from training.control.batch_export import simulate_batches
    from training.train import train

    out = tmp_path_factory.mktemp("batch")
    export = simulate_batches(8, seed=2, steps=20)
    export.to_csv(out / "batches.csv", index=False)
    config = TrainConfig.model_validate({
        "name": "by", "task": "soft_sensor", "family": "cnn1d",
        "model": {"filters": 4, "depth": 1},
        "data": {"source": "historian", "path": str(out / "batches.csv"),
                 "batch": {"id_column": "batch_id", "phase_column": "phase"}},
        "window": {"period_s": 180, "length": 4, "max_gap_s": 360},
        "soft_sensor": {"target": "yield", "early_percent": [20, 30]},
        "split": {"by": "group", "group_column": "batch_id", "folds": 3},
        "fit": {"epochs": 1, "batch_size": 8}, "output_dir": str(out / "runs")})
    bundle, _ = build_auto(train(config), out / "bundles", ("fp32",))
    return bundle.root, export


def test_daemon_publishes_batch_end_estimates_per_batch(batch_bundle, broker, tmp_path):
    from edge_runtime.bundle import Bundle
    from edge_runtime.config import EdgeConfig, ModelConfig, MqttConfig, OutboxConfig, TopicConfig
    from edge_runtime.daemon import EdgeDaemon
    from edge_runtime.interpreter import EdgeModel
    from edge_runtime.scaling import StandardScaler
    from tests.daemon_support import Collector
    from training.historian import epoch_seconds

    root, export = batch_bundle
    uns = "t/s/a/batch"
    manifest = Bundle.load(root).manifest
    spec = manifest.soft_sensor.batch
    inputs = [t for t in manifest.input.tag_names if t != "batch_progress"]
    rows = export[export.batch_id.isin([1, 2])].copy()
    # re-stamp into the recent past (the gateway refuses samples far in the future only)
    stamps = epoch_seconds(pd.to_datetime(rows.timestamp, utc=True))
    shift = time.time() - 3 * 3600 - stamps[0]
    shift -= shift % 180
    rows["t"] = stamps + shift
    config = EdgeConfig(gateway="bt", mqtt=MqttConfig(port=broker.port),
                        topics=TopicConfig(uns=uns),
                        outbox=OutboxConfig(path=tmp_path / "outbox.sqlite"),
                        models=[ModelConfig(name="by", bundle=root)])
    daemon = EdgeDaemon(config)
    collector = Collector(broker.port, [f"{uns}/inference/#"], client_id="bt-collector")
    daemon.start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        assert daemon.subscribed.wait(10)
        for _, r in rows.iterrows():
            for tag in [*inputs, "batch_id"]:
                body = {"v": float(r[tag]), "ts": iso_ms(float(r.t))}
                pub.publish(f"{uns}/raw/{tag}", json.dumps(body), qos=1).wait_for_publish(5)
        per_batch = 21 - spec.first_rows + 1  # from the first 20 % on, every period
        done = lambda: len(collector.messages) >= 2 * per_batch - 1  # noqa: E731
        assert collector.wait(done, 30), collector.messages[-2:]
    finally:
        pub.loop_stop()
        collector.close()
        daemon.stop()
    got = [json.loads(p) for t, p in collector.messages if t == f"{uns}/inference/by"]
    first = [g for g in got if g["batch_id"] == 1]
    # every period from the 5th row on; the id is held up to max_gap_s past the last sample
    assert [g["batch_rows"] for g in first] == list(range(5, 5 + len(first)))
    assert per_batch <= len(first) <= per_batch + 2
    assert first[0]["batch_rows"] == spec.first_rows == 5
    assert first[0]["batch_progress_pct"] == pytest.approx(100 * 5 / 21, abs=1e-3)
    # the estimate is the model's on the window training builds from the batch's first rows
    model, scaler = EdgeModel(root / "model.tflite"), StandardScaler.from_spec(manifest.scaler)
    b1 = rows[rows.batch_id == 1]
    for g in (first[0], first[per_batch - 1]):  # rows 5 and 21, the batch's last
        n = g["batch_rows"]
        x = early_window(b1[inputs].to_numpy()[:n], manifest.input.window, spec.nominal_rows)
        want = manifest.soft_sensor.to_units(model.predict_each(
            scaler.transform(x[None]).astype(np.float32))[0].reshape(-1))[0]
        assert g["estimate"] == pytest.approx(want, abs=1e-4)
        assert parse_timestamp(g["ts"]) == pytest.approx(float(b1.t.iloc[n - 1]))
    # batch 2 starts over: its first estimate comes at its own 20 %
    second = [g for g in got if g["batch_id"] == 2]
    assert second and second[0]["batch_rows"] == 5
