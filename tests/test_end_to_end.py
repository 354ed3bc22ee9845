"""The spine, for real: trained + converted bundles, `procedge run` in a subprocess, a real
Mosquitto, simulated plant data over MQTT — alarms for a fault, none for normal operation,
and forecasts that match the Keras model on the same window."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from edge_runtime.bundle import Bundle
from edge_runtime.scaling import StandardScaler
from procedge.demo import Collector, start_daemon, stop_daemon, write_edge_config
from procedge.feeds import connect, publish_rows
from training.simulator import EPOCH_2026, Fault, simulate

UNS = "test/site/area/tank"
PERIOD = 5.0
NORMAL_STEPS, FAULT_STEPS = 300, 300


@pytest.fixture
def running(tank_bundles, broker, tmp_path):
    config = write_edge_config(tmp_path / "edge.yaml", broker.port, tank_bundles, "t1", UNS)
    watch = Collector(broker.host, broker.port,
                      [f"{UNS}/alarm/#", f"{UNS}/inference/#", "edge/t1/status"])
    daemon = start_daemon(config, tmp_path / "daemon.log")
    try:
        assert watch.wait_for(lambda w: ("edge/t1/status", "online") in w.messages, 60), (
            (tmp_path / "daemon.log").read_text())
        yield watch, broker
    finally:
        assert stop_daemon(daemon) == 0, (tmp_path / "daemon.log").read_text()
        watch.close()


def _scored(watch: Collector) -> int:
    return len(watch.matching("inference/tank_anomaly"))


def test_fault_raises_alarm_naming_the_drifting_tag_and_normal_data_does_not(running):
    watch, broker = running
    fault = Fault("drift", "temperature", NORMAL_STEPS * PERIOD, 0.02)
    run = simulate(NORMAL_STEPS + FAULT_STEPS, PERIOD, seed=11, start_epoch_s=EPOCH_2026,
                   faults=[fault])
    feed = connect(broker.host, broker.port)
    publish_rows(feed, "{uns}/raw/{tag}", UNS, run.tag_names, run.timestamps[:NORMAL_STEPS],
                 run.values[:NORMAL_STEPS])
    window = 12
    assert watch.wait_for(lambda w: _scored(w) >= NORMAL_STEPS - window + 1, 60)
    assert watch.matching("/alarm/") == []  # normal operation: no alarm

    publish_rows(feed, "{uns}/raw/{tag}", UNS, run.tag_names, run.timestamps[NORMAL_STEPS:],
                 run.values[NORMAL_STEPS:])
    feed.disconnect()
    assert watch.wait_for(lambda w: _scored(w) >= NORMAL_STEPS + FAULT_STEPS - window, 60)
    alarms = [body for _, body in watch.matching("/alarm/tank_anomaly/")]
    assert alarms, "the drifting temperature sensor raised no alarm"
    first = alarms[0]
    assert first["event"] == "raise" and first["score"] >= first["threshold"]
    assert first["contributions"][0]["tag"] == "temperature"
    assert first["contributions"][0]["unit"] == "degC"
    assert abs(sum(c["share"] for c in first["contributions"]) - 1) < 1e-3
    assert first["ts"] > "2026-01-01T00:25:00.000Z"  # after the fault began (t0 + 1500 s)


def test_forecast_payload_matches_keras_on_the_same_window(running, tank_bundles):
    watch, broker = running
    run = simulate(80, PERIOD, seed=21, start_epoch_s=EPOCH_2026)
    feed = connect(broker.host, broker.port)
    publish_rows(feed, "{uns}/raw/{tag}", UNS, run.tag_names, run.timestamps, run.values)
    feed.disconnect()
    bundle = Bundle.load(tank_bundles["tank_forecast"])
    m = bundle.manifest
    L, H = m.input.window, m.output.horizon
    assert watch.wait_for(lambda w: len(w.matching("inference/tank_forecast")) >= 80 - L + 1, 60)
    keras_model = keras.models.load_model(
        bundle.root.parent.parent / "runs" / "tank_forecast" / "model.keras")
    scaler = StandardScaler.from_spec(m.scaler)
    cols = [m.input.tag_names.index(t) for t in m.output.targets]
    stamps = {t: i for i, t in enumerate(run.timestamps)}
    worst = 0.0
    for _, body in watch.matching("inference/tank_forecast"):
        assert len(body["timestamps"]) == H
        assert set(body["forecast"]) == set(m.output.targets)
        end = stamps[_epoch(body["ts"])]
        window = scaler.transform(run.values[end - L + 1 : end + 1])
        expected = scaler.inverse(keras_model.predict(window[None], verbose=0)[0], cols)
        got = np.array([body["forecast"][t] for t in m.output.targets]).T
        assert got.shape == (H, len(cols))
        worst = max(worst, float(np.max(np.abs(got - expected) / scaler.scale[cols])))
    assert worst < 0.1, f"edge forecast deviates {worst:.3f} sigma from Keras"
    print(json.dumps({"max_deviation_sigma": worst, "mode": m.quantization}))


def _epoch(iso: str) -> float:
    from edge_runtime.payloads import parse_timestamp

    return parse_timestamp(iso)
