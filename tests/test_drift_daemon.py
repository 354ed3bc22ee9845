"""The drift monitor in the daemon: statistics in trained bundles, old bundles without them,
and a slowly drifting sensor over a real Mosquitto whose advisory drift alarm comes before
the anomaly alarm."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from edge_runtime.bundle import MANIFEST, Bundle
from edge_runtime.config import EdgeConfig
from edge_runtime.daemon import EdgeDaemon, Inbound
from edge_runtime.payloads import parse_timestamp
from procedge.broker import free_port
from procedge.feeds import connect, publish_rows
from tests.daemon_support import UNS, Collector, edge_config, labelled_run, replies, samples
from training.simulator import EPOCH_2026, Fault, simulate

PERIOD = 5.0


def test_trained_bundles_carry_drift_statistics(bundles):
    for name, path in bundles.items():
        m = Bundle.load(path).manifest
        assert m.drift is not None, name
        assert [r.tag for r in m.drift.tags] == m.input.tag_names
        assert m.drift.window == 720 and m.drift.rows > 2 * 720  # the tiny runs: 2100 rows
        assert "largest PSI of a 720-row training sub-window" in m.drift.rule
        for ref in m.drift.tags:
            assert ref.psi_limit >= 0.25 and len(ref.expected) == 10
            assert sum(ref.expected) == pytest.approx(1.0)
            assert ref.edges == sorted(ref.edges) and ref.std > 0
        targets = [r.target for r in m.drift.residuals]
        assert targets == (m.output.targets if m.task == "forecast" else [])
        assert all(r.limit >= 5.0 and r.std > 0 for r in m.drift.residuals)


def old_bundle(src: Path, dst: Path) -> Path:
    """A copy of ``src`` as bundles made before drift statistics were: no ``drift`` key in
    its manifest (resealed with the manifest's own digest rule)."""
    shutil.copytree(src, dst)
    data = json.loads((dst / MANIFEST).read_text())
    data.pop("drift")
    body = {k: v for k, v in data.items() if k != "manifest_sha256"}
    data["manifest_sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    (dst / MANIFEST).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return dst


def test_old_bundle_without_drift_statistics_runs_without_a_monitor(tmp_path: Path, bundles):
    old = old_bundle(bundles["tank_anomaly"], tmp_path / "old")
    assert "drift" not in json.loads((old / MANIFEST).read_text())
    assert Bundle.load(old).manifest.drift is None
    config = edge_config(tmp_path, 1883, {"tank_anomaly": old})
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    try:
        assert daemon.pipelines["tank_anomaly"].drift is None
        assert list(daemon.alarms) == ["tank_anomaly.anomaly"]
        items = samples(labelled_run(200), 0, 200)
        daemon._process([Inbound(daemon._topic("raw", tag=t), p, time.time())
                          for t, p in items])
        rows = daemon.outbox.peek(0, 10**6)
        assert sum("/inference/" in m.topic for m in rows) == 200 - 12 + 1  # every window
        assert not any(".drift" in m.topic for m in rows)
    finally:
        daemon.outbox.close()
    # the same bundle with its statistics: a monitor and one alarm per tag, unless disabled
    config = edge_config(tmp_path, 1883, {"tank_anomaly": bundles["tank_anomaly"]},
                         outbox={"path": str(tmp_path / "new.sqlite")})
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    tags = daemon.pipelines["tank_anomaly"].tags
    assert sorted(daemon.alarms) == sorted(["tank_anomaly.anomaly"] +
                                           [f"tank_anomaly.drift.{t}" for t in tags])
    daemon.outbox.close()
    config["drift"] = {"enabled": False}
    config["outbox"]["path"] = str(tmp_path / "off.sqlite")
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    assert daemon.pipelines["tank_anomaly"].drift is None
    daemon.outbox.close()


def test_forecast_residuals_are_monitored_in_the_daemon(tmp_path: Path, bundles):
    """Each one-step forecast meets its realised value one window later; the CUSUM gauges
    follow the monitor."""
    config = edge_config(tmp_path, 1883, {"tank_forecast": bundles["tank_forecast"]})
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    try:
        pipeline = daemon.pipelines["tank_forecast"]
        monitor = pipeline.drift
        assert [r.target for r in monitor.residual_refs] == ["temperature", "level"]
        assert "tank_forecast.drift_residual.level" in daemon.alarms
        start = time.time() - 200 * PERIOD - 600
        run = simulate(200, PERIOD, seed=5, start_epoch_s=start - start % PERIOD)
        items = [(tag, json.dumps({"v": float(v), "ts": float(ts) * 1000}).encode())
                 for ts, row in zip(run.timestamps, run.values, strict=True)
                 for tag, v in zip(run.tag_names, row, strict=True)]
        daemon._process([Inbound(daemon._topic("raw", tag=t), p, time.time())
                         for t, p in items])
        windows = 200 - pipeline.bundle.manifest.input.window + 1
        assert daemon.metrics.value("procedge_windows_total", model="tank_forecast") == windows
        assert monitor.residuals_seen == windows - 1  # the newest forecast is still open
        for i, ref in enumerate(monitor.residual_refs):
            gauge = daemon.metrics.value("procedge_drift_residual_cusum", model="tank_forecast",
                                         target=ref.target)
            assert gauge == pytest.approx(monitor.cusum[i]) and gauge >= 0
            assert daemon.metrics.value("procedge_drift_residual_cusum_limit",
                                        model="tank_forecast", target=ref.target) == ref.limit
        assert monitor.checked == 0  # 200 rows: the 720-row PSI window is not full yet
    finally:
        daemon.outbox.close()


@pytest.fixture(scope="module")
def shipped_anomaly_bundle(tmp_path_factory) -> Path:
    """The anomaly model of configs/tank_anomaly.yaml as shipped (6000 rows, 40 epochs),
    converted to int8. The session's tiny bundle (3000 rows, 15 epochs) alarms on fresh
    normal runs and on sensor offsets of a third of a standard deviation: on it any slow
    drift is an anomaly first (measured, see the report of this test)."""
    from converters.build import build_auto
    from tests.helpers import CONFIGS
    from training.config import load_train_config
    from training.train import train

    out = tmp_path_factory.mktemp("shipped")
    config = load_train_config(CONFIGS / "tank_anomaly.yaml")
    config.output_dir = out / "runs"
    bundle, _ = build_auto(train(config), out / "bundles", candidates=("int8",))
    return bundle.root


@pytest.mark.slow
def test_slow_sensor_drift_raises_the_drift_alarm_before_the_anomaly_alarm(
        tmp_path: Path, broker, shipped_anomaly_bundle):
    """The flow sensor drifts by 2 m3/h per hour from the end of the first hour (the drift
    window's length) on a run whose normal twin raises no alarm at all."""
    warmup, steps, seed = 720, 1900, 19
    drift_start_s = warmup * PERIOD
    run = simulate(steps, PERIOD, seed=seed, start_epoch_s=EPOCH_2026,
                   faults=[Fault("drift", "flow_in", drift_start_s, 2.0 / 3600)])
    port = free_port()
    config = edge_config(tmp_path, broker.port, {"tank_anomaly": shipped_anomaly_bundle},
                         metrics_port=port)
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    daemon.start()
    watch = Collector(broker.port, [f"{UNS}/alarm/#", "edge/gwtest/reply"], client_id="watch")
    drift_id, anomaly_id = "tank_anomaly.drift.flow_in", "tank_anomaly.anomaly"
    try:
        assert daemon.subscribed.wait(10)
        feed = connect("127.0.0.1", broker.port)
        publish_rows(feed, "{uns}/raw/{tag}", UNS, run.tag_names, run.timestamps, run.values)
        feed.disconnect()
        events = f"{UNS}/alarm/tank_anomaly/"
        assert watch.wait(lambda: any(e.get("event") == "raise"
                                      for e in watch.json(events + anomaly_id)), 120), \
            "the drift never became an anomaly: the ordering below would say nothing"
        windows = steps - 12 + 1  # the run is done with when every window has run
        assert watch.wait(lambda: daemon.metrics.value(
            "procedge_windows_total", model="tank_anomaly") == windows, 60)
        with watch.lock:
            order = [(t, json.loads(p)) for t, p in watch.messages
                     if t.startswith(events) and not t.endswith("/state")]
        raises = [(t.rsplit("/", 1)[1], e) for t, e in order if e.get("event") == "raise"]
        first_id, first = raises[0]
        assert first_id == drift_id, [(aid, e["source_ts"]) for aid, e in raises]
        assert first["priority"] == "low" and first["advisory"] is True
        assert first["drift"]["kind"] == "input_psi" and first["drift"]["tag"] == "flow_in"
        assert first["drift"]["psi"] >= first["drift"]["limit"] == first["threshold"]
        assert first["drift"]["window_mean"] > first["drift"]["reference_mean"]
        start = EPOCH_2026 + drift_start_s
        drift_at = parse_timestamp(first["source_ts"])
        anomaly_at = parse_timestamp(next(e for aid, e in raises if aid == anomaly_id)
                                     ["source_ts"])
        assert start < drift_at < anomaly_at
        # an ISA-18.2 alarm like the others: retained state, operator commands
        state = watch.json(f"{events}{drift_id}/state")
        assert state and state[-1]["state"] == "active_unacknowledged"
        watch.client.publish("edge/gwtest/cmd/alarm/shelve", json.dumps(
            {"alarm_id": drift_id, "by": "operator1", "request_id": "s1", "duration_s": 600}),
            qos=1)
        assert replies(watch, "s1")[0]["accepted"] is True
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        psi = re.search(r'procedge_drift_psi\{model="tank_anomaly",tag="flow_in"\} (\S+)', text)
        limit = re.search(r'procedge_drift_psi_limit\{model="tank_anomaly",tag="flow_in"\} '
                          r'(\S+)', text)
        assert psi and limit and float(psi.group(1)) >= float(limit.group(1))
        checks = daemon.metrics.value("procedge_drift_checks_total", model="tank_anomaly")
        assert checks == (windows - 720) // 30 + 1  # every 30 rows once 720 are in
    finally:
        daemon.stop(drain_timeout_s=2)
        watch.close()
    print(f"drift alarm {(drift_at - start) / 60:.0f} min after the drift began, anomaly "
          f"alarm {(anomaly_at - start) / 60:.0f} min")
