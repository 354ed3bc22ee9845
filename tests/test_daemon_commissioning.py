"""Commissioning calibration end to end: a tiny tank autoencoder trained with
``calibration: {mode: commission}``, converted to int8, run by the daemon over a real
Mosquitto with the plant's samples published on their raw topics.

A fault while the first samples are collected raises nothing; the operator re-baselines on
clean data; then the same fault raises the alarm naming the tag; the retained status says
what is in force; a restart keeps the baseline; a re-baseline is refused while the alarm is
active (and from a client not allowed, counted), and accepted with ``force``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.bundle import MANIFEST, Bundle, CalibrationSpec, write_bundle
from edge_runtime.commissioner import BaselineStore
from edge_runtime.commissioning import Baseline
from edge_runtime.config import EdgeConfig
from edge_runtime.daemon import EdgeDaemon
from edge_runtime.payloads import iso_ms
from edge_runtime.reload import Swap, load_pipeline
from procedge.feeds import connect, publish_rows
from tests.daemon_support import UNS, Collector, commander, edge_config, replies, send, wait_for
from training.simulator import EPOCH_2026, simulate

N = 400  # commissioning samples (SKAB's protocol: each file's first 400 rows are normal)
FAULT = 20.0  # degC added to the temperature sensor
STATUS = "edge/gwtest/status/commissioning/tank_anomaly"
AID = "tank_anomaly.anomaly"


@pytest.fixture(scope="module")
def commissioned_bundle(tmp_path_factory) -> Path:
    """The demo's tank autoencoder, tiny, declaring a commissioning of N samples (both)."""
    from converters.build import build_auto
    from tests.helpers import tiny_config
    from training.train import train

    out = tmp_path_factory.mktemp("commissioned")
    config = tiny_config("tank_anomaly", out, calibration=CalibrationSpec(
        mode="commission", samples=N, fit="both"))
    bundle, _ = build_auto(train(config), out / "bundles", candidates=("int8",))
    return bundle.root


def plant(steps: int, fault_rows: list[tuple[int, int]]):
    """The plant's run (another seed than training) with the temperature reading FAULT high
    in ``fault_rows``."""
    run = simulate(steps, 5.0, seed=7, start_epoch_s=EPOCH_2026)
    col = run.tag_names.index("temperature")
    for a, b in fault_rows:
        run.values[a:b, col] += FAULT
    return run


def statuses(watch: Collector) -> list[dict]:
    return watch.json(STATUS)


def inference(watch: Collector) -> list[dict]:
    return watch.json(f"{UNS}/inference/tank_anomaly")


def raised(watch: Collector) -> list[dict]:
    return [e for e in watch.json(f"{UNS}/alarm/tank_anomaly/{AID}")
            if e.get("event") == "raise"]


def test_commissioning_over_mqtt(tmp_path: Path, broker, commissioned_bundle):
    manifest = Bundle.load(commissioned_bundle).manifest
    assert manifest.calibration == CalibrationSpec(mode="commission", samples=N, fit="both")
    window = manifest.input.window
    run = plant(2 * N + 110, [(N - 60, N), (2 * N, 2 * N + 110)])
    config = edge_config(tmp_path, broker.port, {"tank_anomaly": commissioned_bundle},
                         state_dir=str(tmp_path / "state"))
    config["mqtt"] |= {"protocol": "5"}
    feed = connect(broker.host, broker.port, client_id="plant")

    def publish(first: int, last: int) -> None:
        publish_rows(feed, "{uns}/raw/{tag}", UNS, run.tag_names, run.timestamps[first:last],
                     run.values[first:last])

    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    daemon.start()
    watch = Collector(broker.port, [f"{UNS}/alarm/#", f"{UNS}/inference/#", "edge/gwtest/#"],
                      client_id="watch")
    console = commander(broker.port)
    try:
        assert daemon.subscribed.wait(10)
        assert wait_for(lambda: statuses(watch), 10)
        first = statuses(watch)[0]  # retained: what a SCADA sees on subscribing
        assert first["state"] == "collecting" and first["progress"] == {"samples": 0, "of": N}
        assert daemon.metrics.value("procedge_commissioning", model="tank_anomaly",
                                    state="collecting") == 1

        # 1. a fault in the last 60 of the N samples: no alarm while commissioning
        publish(0, N)
        assert wait_for(lambda: any(s["state"] == "calibrated" for s in statuses(watch))
                        and len(inference(watch)) >= N - window + 1, 30)
        results = inference(watch)
        assert [daemon.metrics.value("procedge_commissioning", model="tank_anomaly", state=s)
                for s in ("collecting", "calibrated", "refused")] == [0, 1, 0]
        assert len(results) == N - window + 1
        assert all(r["commissioning"] is True for r in results)
        assert results[-1]["progress"] == {"samples": N, "of": N}
        assert results[0]["threshold"] == manifest.thresholds.raise_at  # the bundle's
        # the fault was there to see: the bundle's own limit would have raised on it
        assert max(r["score"] for r in results) > 3 * manifest.thresholds.raise_at
        assert raised(watch) == [] and watch.json(f"{UNS}/alarm/") == []
        assert statuses(watch)[-1]["progress"] == {"samples": N, "of": N}
        v1 = statuses(watch)[-1]["baseline"]
        assert v1["version"] == 1 and v1["samples"] == N and v1["by"] == "start"
        # the drift monitor now watches the commissioned rows, not the training references
        drift = daemon.pipelines["tank_anomaly"].drift
        assert drift is not None and manifest.drift is not None
        assert drift.spec.rule == "commissioning baseline v1" and drift.spec.rows == N
        assert [r["tag"] for r in v1["drift"]] == drift.tags
        assert drift.spec.tags != manifest.drift.tags

        # 2. the first N samples held a fault: the operator re-baselines on clean data
        send(console, "model/rebaseline", {"model": "tank_anomaly", "request_id": "rb1"},
             by_property="operator1")
        answer = replies(watch, "rb1")[0]
        assert answer["accepted"] is True and f"collecting {N} samples" in answer["reason"]
        publish(N, 2 * N)
        assert wait_for(lambda: statuses(watch)[-1]["state"] == "calibrated", 30)
        v2 = statuses(watch)[-1]["baseline"]
        assert v2["version"] == 2 and v2["by"] == "operator1"
        assert v2["raise_at"] != v1["raise_at"] and v2["scaler"] != v1["scaler"]
        assert daemon.pipelines["tank_anomaly"].thresholds.raise_at == v2["raise_at"]

        # 3. the same fault after commissioning: the alarm, naming the tag
        publish(2 * N, 2 * N + 60)
        assert wait_for(lambda: raised(watch), 30), inference(watch)[-3:]
        alarm = raised(watch)[0]
        assert alarm["ts"] >= iso_ms(float(run.timestamps[2 * N]))  # not before the fault
        assert alarm["threshold"] == v2["raise_at"] and alarm["score"] >= v2["raise_at"]
        assert alarm["contributions"][0]["tag"] == "temperature"
        assert alarm["contributions"][0]["unit"] == "degC"
        after = [r for r in inference(watch) if r["ts"] > v2["last_ts"]]
        assert after and not any("commissioning" in r for r in after)
    finally:
        daemon.stop(drain_timeout_s=5)

    # 4. a restart keeps the baseline (no commissioning again) and the active alarm
    assert BaselineStore(tmp_path / "state").versions("tank_anomaly") == [1, 2]
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    pipeline = daemon.pipelines["tank_anomaly"]
    assert pipeline.commissioning.state == "calibrated"
    assert pipeline.thresholds.raise_at == v2["raise_at"]
    np.testing.assert_allclose(pipeline.scaler.mean, v2["scaler"]["mean"])
    assert pipeline.drift.spec.rule == "commissioning baseline v2"
    seen = len(inference(watch))
    daemon.start()
    try:
        assert daemon.subscribed.wait(10)
        publish(2 * N + 60, 2 * N + 90)  # a fresh window grid: 30 - window + 1 windows
        assert wait_for(lambda: len(inference(watch)) >= seen + 31 - window, 30)
        assert not any("commissioning" in r for r in inference(watch)[seen:])
        assert statuses(watch)[-1]["baseline"]["version"] == 2  # republished at start

        # 5. re-baseline while the alarm is active: refused, unless forced; and a client
        # that is not allowed is refused and counted
        send(console, "model/rebaseline", {"model": "tank_anomaly", "request_id": "rb2"},
             by_property="operator1")
        assert "is active" in replies(watch, "rb2")[0]["reason"]
        send(console, "model/rebaseline", {"model": "tank_anomaly", "request_id": "rb3",
                                           "force": True}, by_property="mallory")
        assert replies(watch, "rb3")[0]["reason"] == "identity not allowed to command this gateway"
        assert daemon.metrics.value("procedge_commands_total", command="model/rebaseline",
                                    result="refused") == 2
        assert pipeline.commissioning.state == "calibrated"
        send(console, "model/rebaseline", {"model": "tank_anomaly", "request_id": "rb4",
                                           "force": True}, by_property="operator1")
        assert replies(watch, "rb4")[0]["accepted"] is True
        assert wait_for(lambda: statuses(watch)[-1]["state"] == "collecting", 10)
        cleared = [e for e in watch.json(f"{UNS}/alarm/tank_anomaly/{AID}")
                   if e.get("event") == "clear"]
        assert cleared and cleared[-1]["reason"] == "forced rebaseline by operator1"
        assert statuses(watch)[-1]["note"] == "rebaseline by operator1 (forced)"
        seen = len(inference(watch))
        publish(2 * N + 90, 2 * N + 110)  # the fault goes on: collected, no alarm
        assert wait_for(lambda: len(inference(watch)) >= seen + 20, 30)
        assert all(r["commissioning"] for r in inference(watch)[seen:])
        assert len(raised(watch)) == 1
    finally:
        console.loop_stop()
        feed.loop_stop()
        daemon.stop(drain_timeout_s=5)
        watch.close()


def test_a_refused_commissioning_keeps_the_bundles_limits(tmp_path: Path, broker,
                                                          commissioned_bundle, caplog):
    """A flat-lined tag in the commissioning samples: refused naming the tag (status and
    log), the bundle's own scaler and limits stay in force, and alarms are live again."""
    manifest = Bundle.load(commissioned_bundle).manifest
    run = plant(N + 40, [])
    run.values[:, run.tag_names.index("pressure")] = 101.3  # a stuck transmitter
    config = edge_config(tmp_path, broker.port, {"tank_anomaly": commissioned_bundle},
                         state_dir=str(tmp_path / "state"))
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    daemon.start()
    watch = Collector(broker.port, [f"{UNS}/inference/#", "edge/gwtest/#"], client_id="watch")
    feed = connect(broker.host, broker.port, client_id="plant")
    try:
        assert daemon.subscribed.wait(10)
        publish_rows(feed, "{uns}/raw/{tag}", UNS, run.tag_names, run.timestamps, run.values)
        assert wait_for(lambda: statuses(watch) and statuses(watch)[-1]["state"] == "refused",
                        30)
        status = statuses(watch)[-1]
        assert status["tag"] == "pressure" and "flat-lined" in status["reason"]
        assert "commissioning refused" in caplog.text and "'pressure'" in caplog.text
        assert daemon.metrics.value("procedge_commissioning", model="tank_anomaly",
                                    state="refused") == 1
        pipeline = daemon.pipelines["tank_anomaly"]
        assert pipeline.thresholds == manifest.thresholds
        assert pipeline.scaler.mean.tolist() == manifest.scaler.mean
        assert wait_for(lambda: len(inference(watch)) >= N + 40 - manifest.input.window, 30)
        later = [r for r in inference(watch) if r["ts"] > status["baseline"]["last_ts"]]
        assert later and all("commissioning" not in r for r in later)
        assert all(r["threshold"] == manifest.thresholds.raise_at for r in later)
    finally:
        feed.loop_stop()
        daemon.stop(drain_timeout_s=5)
        watch.close()


def resealed(src: Path, dst: Path, **update) -> Path:
    """A copy of a bundle with manifest fields changed, sealed again (as the converter would)."""
    shutil.copytree(src, dst)
    manifest = Bundle.load(dst).manifest.model_copy(update=update)
    (dst / MANIFEST).unlink()
    return write_bundle(dst, manifest)


def test_baselines_belong_to_a_bundle_version(tmp_path: Path, commissioned_bundle):
    """No broker needed: the daemon built, fed a swap, asked to re-baseline in process. A
    stored baseline of this bundle version is put in force at start; a new version (by hot
    reload) invalidates it and commissioning starts again; bad re-baseline requests are refused
    with the reason."""
    manifest = Bundle.load(commissioned_bundle).manifest
    plain = resealed(commissioned_bundle, tmp_path / "plain", calibration=None)
    store = BaselineStore(tmp_path / "state")
    store.save(Baseline(model="tank_anomaly", bundle_version="older", state="calibrated",
                        raise_at=7.0, clear_at=6.0))
    stored = store.save(Baseline(model="tank_anomaly", bundle_version=manifest.version,
                                 state="calibrated", fit="limit", raise_at=9.0, clear_at=8.0))
    config = edge_config(tmp_path, 1, {"tank_anomaly": commissioned_bundle, "plain": plain},
                         state_dir=str(tmp_path / "state"))
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    try:
        pipeline = daemon.pipelines["tank_anomaly"]
        assert pipeline.commissioning.state == "calibrated"
        assert pipeline.commissioning.baseline == stored
        assert (pipeline.thresholds.raise_at, pipeline.alarm.spec.clear_at) == (9.0, 8.0)
        assert pipeline.scaler.mean.tolist() == manifest.scaler.mean  # fit: limit
        assert daemon.pipelines["plain"].commissioning is None
        status = json.loads(next(m.payload for m in daemon.outbox.peek(0, 100)
                                 if m.topic == STATUS))
        assert status["state"] == "calibrated" and status["baseline"]["version"] == 2

        out: list = []
        for body, reason in (({"model": "nope"}, "unknown model"),
                             ({"model": "plain"}, "model 'plain': its bundle declares no "
                                                        "commissioning"),
                             ({"model": "tank_anomaly", "force": "yes"},
                              "force must be true or false")):
            assert daemon._rebaseline(body, "operator1", out, set()) == (False, reason)
        assert out == [] and pipeline.commissioning.state == "calibrated"

        newer = resealed(commissioned_bundle, tmp_path / "newer", version="newer")
        swap = Swap(load_pipeline(daemon.config.models[0], Bundle.load(newer)), "test")
        daemon._process([swap])
        swapped = daemon.pipelines["tank_anomaly"]
        assert swapped.commissioning.state == "collecting"
        assert "baseline v2 was for bundle version " + manifest.version in \
            swapped.commissioning.note
        assert swapped.thresholds == manifest.thresholds  # the bundle's, meanwhile
        statuses_now = [json.loads(m.payload) for m in daemon.outbox.peek(0, 100)
                        if m.topic == STATUS]
        assert statuses_now[-1]["state"] == "collecting"
        assert statuses_now[-1]["bundle_version"] == "newer"
        assert all(m.retain for m in daemon.outbox.peek(0, 100) if m.topic == STATUS)
    finally:
        daemon.outbox.close()
