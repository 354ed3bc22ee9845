"""Operating the daemon over MQTT: alarm commands, hot reload, metrics and health."""

from __future__ import annotations

import gc
import json
import logging
import re
import shutil
import socket
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path

from edge_runtime.bundle import MANIFEST, Bundle, write_bundle
from edge_runtime.config import EdgeConfig
from edge_runtime.daemon import EdgeDaemon, Inbound
from edge_runtime.payloads import parse_timestamp
from procedge.broker import free_port
from tests.daemon_support import (
    UNS,
    Collector,
    commander,
    edge_config,
    labelled_run,
    reference_events,
    replies,
    samples,
    send,
    wait_for,
)

RAW = UNS + "/raw/{tag}"


def feed_local(daemon: EdgeDaemon, items: list[tuple[str, bytes]]) -> None:
    for tag, payload in items:
        daemon.inbox.put(Inbound(RAW.format(tag=tag), payload, time.time()))


def reply(collector: Collector, request_id: str, timeout_s: float = 10) -> dict | None:
    found = replies(collector, request_id, timeout_s)
    return found[0] if found else None


def test_alarm_commands_over_mqtt5(tmp_path: Path, broker, bundles):
    port = free_port()
    config = edge_config(tmp_path, broker.port, bundles, metrics_port=port)
    config["mqtt"] |= {"protocol": "5"}
    config["alarms"] = {"max_shelve_s": 60}
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    daemon.start()
    watch = Collector(broker.port, [f"{UNS}/alarm/#", "edge/gwtest/#"], client_id="watch")
    console = commander(broker.port)
    aid = "tank_anomaly.anomaly"
    try:
        assert daemon.subscribed.wait(10)  # not just connected: inputs flow
        # Nagle off: a small alarm publish must not wait for the ACK of the previous segment
        assert daemon.client.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        items = samples(labelled_run(400), 0, 160)
        ref, _ = reference_events(config, tmp_path, items)
        raised = parse_timestamp(next(e for e in ref if e["event"] == "raise")["source_ts"])
        feed_local(daemon, [(t, p) for t, p in items  # up to the first raise, not its clear
                            if parse_timestamp(json.loads(p)["ts"]) <= raised])
        assert wait_for(lambda: any(e.get("event") == "raise"
                                    for e in watch.json(f"/alarm/tank_anomaly/{aid}")), 30)
        send(console, "alarm/ack", {"alarm_id": aid, "by": "mallory", "request_id": "r1"})
        assert reply(watch, "r1")["accepted"] is False
        send(console, "alarm/ack", {"alarm_id": aid, "request_id": "r2"}, by_property="operator1")
        r2 = reply(watch, "r2")
        assert r2["accepted"] is True and r2["by"] == "operator1"
        state_topic = f"{UNS}/alarm/tank_anomaly/{aid}/state"
        ok = wait_for(lambda: watch.json(state_topic)[-1]["state"] == "active_acknowledged", 10)
        assert ok, [(s["state"], s["context"]) for s in watch.json(state_topic)]
        send(console, "alarm/ack", {"alarm_id": aid, "by": "operator1", "request_id": "r3"})
        assert "nothing to acknowledge" in reply(watch, "r3")["reason"]
        send(console, "alarm/shelve", {"alarm_id": aid, "by": "operator1", "request_id": "r4",
                                       "duration_s": 3600})
        assert reply(watch, "r4")["accepted"] is False  # longer than max_shelve_s
        send(console, "alarm/shelve", {"alarm_id": aid, "by": "operator1", "request_id": "r5",
                                       "duration_s": 1})
        assert reply(watch, "r5")["accepted"] is True
        # the shelve runs out by itself: the timer unshelves it
        assert wait_for(lambda: any(e.get("by") == "shelve-timer"
                                    for e in watch.json(f"/alarm/tank_anomaly/{aid}")), 10)
        send(console, "alarm/out_of_service", {"alarm_id": "nope", "by": "operator1",
                                               "request_id": "r6"})
        assert reply(watch, "r6")["reason"] == "unknown alarm_id"
        events = [e for e in watch.json(f"/alarm/tank_anomaly/{aid}") if "event_id" in e]
        assert [e["event"] for e in events][:3] == ["raise", "ack", "shelve"]
        for e in events:
            assert e["source_ts"].endswith("Z") and e["processed_at"].endswith("Z")
            assert {"model", "version", "score", "threshold", "contributions"} <= set(e)
        # observability: metrics and health on one port
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        assert 'procedge_commands_total{command="alarm/ack",result="accepted"} 1.0' in text
        assert "procedge_stage_seconds_bucket" in text and "procedge_outbox_depth" in text
        for model in bundles:  # pre / invoke / post timed for every model that ran windows
            windows = daemon.metrics.value("procedge_windows_total", model=model)
            assert windows > 0, model
            for stage in ("pre", "invoke", "post"):
                found = re.search(rf'procedge_model_stage_seconds_count{{model="{model}",'
                                  rf'stage="{stage}"}} (\S+)', text)
                assert found and 0 < float(found.group(1)) <= windows, (model, stage)
                assert daemon.metrics.value("procedge_model_stage_seconds_sum", model=model,
                                            stage=stage) > 0, (model, stage)
        assert 'procedge_alarms{state="active_acknowledged"}' in text
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read())
        assert health["ok"] and health["connected"] and health["subscribed"]
    finally:
        console.loop_stop()
        daemon.stop(drain_timeout_s=2)
        watch.close()
    try:  # stopped: the health endpoint is gone with it
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
        raise AssertionError("health endpoint still up")
    except (urllib.error.URLError, ConnectionError):
        pass


def copy_bundle(src: Path, dst: Path, version: str) -> Path:
    shutil.copytree(src, dst)
    manifest = Bundle.load(dst).manifest.model_copy(update={"version": version})
    (dst / MANIFEST).unlink()
    return write_bundle(dst, manifest)


def test_hot_reload_good_and_tampered(tmp_path: Path, broker, bundles):
    models = tmp_path / "models"
    models.mkdir()
    config = edge_config(tmp_path, broker.port, bundles,
                         reload={"models_dir": str(models), "poll_s": 0.2})
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    daemon.start()
    watch = Collector(broker.port, [f"{UNS}/inference/#", "edge/gwtest/#"], client_id="watch")
    items = samples(labelled_run(300))
    old = Bundle.load(bundles["tank_anomaly"]).manifest.version
    replaced = weakref.ref(daemon.pipelines["tank_anomaly"])
    gc.disable()  # as in `procedge run`, whose start-up is frozen out of the collector's scans:
    try:  # a replaced model must go by reference counting alone, or each reload leaks it
        assert daemon.subscribed.wait(10)  # not just connected: inputs flow
        feed_local(daemon, items[:500])
        staged = copy_bundle(bundles["tank_anomaly"], tmp_path / "staged", "v-next")
        staged.rename(models / "anomaly-next")  # atomic drop into the watched folder
        assert wait_for(lambda: any(r.get("event") == "reload" and r["accepted"]
                                    for r in watch.json("edge/gwtest/reply")), 20)
        feed_local(daemon, items[500:1000])
        assert wait_for(lambda: watch.json("edge/gwtest/status/models")[-1]
                        .get("tank_anomaly") == "v-next", 10)
        assert daemon.subscribed.wait(10)  # the reload subscribed again: its SUBACK came back
        assert wait_for(lambda: replaced() is None, 5), "the replaced pipeline is still alive"
        # tampered: the model file changed after sealing → refused, running version kept
        bad = copy_bundle(bundles["tank_anomaly"], tmp_path / "bad", "v-evil")
        (bad / "model.tflite").write_bytes((bad / "model.tflite").read_bytes()[:-8] + b"\0" * 8)
        bad.rename(models / "anomaly-evil")
        assert wait_for(lambda: any(r.get("event") == "reload" and not r["accepted"]
                                    for r in watch.json("edge/gwtest/reply")), 20)
        refused = [r for r in watch.json("edge/gwtest/reply") if r.get("accepted") is False]
        assert "SHA-256" in refused[0]["reason"]
        feed_local(daemon, items[1000:])
        n = len(samples(labelled_run(300))) // 5 - 12 + 1
        assert wait_for(lambda: len(watch.json("inference/tank_anomaly")) >= n, 30)
        results = watch.json("inference/tank_anomaly")
        versions = [r["version"] for r in results]
        assert versions[0] == old and versions[-1] == "v-next"
        assert "v-evil" not in versions and versions == sorted(versions, key=versions.index)
        stamps = [r["ts"] for r in results]
        assert len(stamps) == n and len(set(stamps)) == n  # no window lost across the swap
        assert daemon.metrics.value("procedge_reloads_total", result="refused") == 1
        assert daemon.pipelines["tank_anomaly"].bundle.manifest.version == "v-next"
        # announced on the command topic instead of dropped into the folder
        third = copy_bundle(bundles["tank_anomaly"], tmp_path / "third", "v-three")
        console = commander(broker.port)
        send(console, "model/load", {"path": str(third), "by": "operator1", "request_id": "m1"})
        assert reply(watch, "m1")["accepted"] is True
        assert wait_for(lambda: watch.json("edge/gwtest/status/models")[-1]
                        .get("tank_anomaly") == "v-three", 20)
        console.loop_stop()
    finally:
        gc.enable()
        daemon.stop(drain_timeout_s=2)
        watch.close()


def test_shared_subscription_topics(tmp_path: Path, bundles):
    config = edge_config(tmp_path, 1, bundles)
    config["mqtt"] |= {"shared_group": "plant1"}
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    subs = [t for t, _ in daemon._subscriptions()]
    assert f"$share/plant1/{UNS}/raw/temperature" in subs
    assert "edge/gwtest/cmd/#" in subs  # commands stay addressed to this gateway
    daemon.outbox.close()


def test_sample_gateway_config_is_valid():
    from edge_runtime.config import load_edge_config

    config = load_edge_config(Path(__file__).parent.parent / "deploy" / "gateway.yaml")
    assert config.mqtt.require_tls and config.outbox.synchronous == "FULL"
    # issue 17: the sample turns on signed bundles and signed commands, bounded out of service
    assert all(m.public_key is not None for m in config.models)
    assert config.commands.require_signature
    assert set(config.commands.allowed) <= set(config.commands.operator_keys)
    assert config.alarms.max_out_of_service_s <= 8 * 3600


def test_json_log_lines():
    import logging

    from edge_runtime.daemon import JsonLogFormatter

    record = logging.LogRecord("procedge.edge", logging.WARNING, __file__, 1, "alarm %s", ("x",),
                               None)
    line = json.loads(JsonLogFormatter().format(record))
    assert line["msg"] == "alarm x" and line["level"] == "WARNING" and line["ts"].endswith("Z")


def test_full_outbox_keeps_alarms_and_counts_evictions(tmp_path: Path, bundles):
    """Broker unreachable, outbox bounded: forecasts go first, every alarm event stays."""
    config = edge_config(tmp_path, 1, bundles, outbox={"max_rows": 30})
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    items = samples(labelled_run(400))
    ref, _ = reference_events(config | {"outbox": {"path": str(tmp_path / "r.sqlite")}},
                              tmp_path, items)
    for k in range(0, len(items), 50):
        daemon._process([Inbound(RAW.format(tag=t), p, time.time()) for t, p in items[k:k + 50]])
    rows = daemon.outbox.peek(0, 1000)
    kept = [json.loads(m.payload)["event_id"] for m in rows
            if "/alarm/" in m.topic and not m.topic.endswith("/state")]
    assert daemon.outbox.depth == 30
    assert kept == [e["event_id"] for e in ref]  # all alarm events, in order
    assert daemon.metrics.value("procedge_outbox_evicted_total", priority="0") > 700
    assert daemon.metrics.value("procedge_outbox_evicted_total", priority="2") == 0
    daemon.outbox.close()


# --- issue 17: zip bundles leave no folders; hot reload serialised and rate-limited ---------


def test_zip_bundles_leave_no_temp_folders(tmp_path: Path, bundles, monkeypatch):
    """A daemon started from a zip, then 5 zip reloads accepted and 2 refused: no
    ``procedge-bundle-*`` folder is left behind, and the zip-loaded models still run."""
    import tempfile
    import zipfile

    from edge_runtime.bundle import pack_bundle

    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    leftovers = lambda: sorted(tmp.glob("procedge-bundle-*"))  # noqa: E731
    archive = pack_bundle(bundles["tank_anomaly"], tmp_path / "anomaly.zip")
    config = edge_config(tmp_path, 1, {"tank_anomaly": archive,
                                       "tank_forecast": bundles["tank_forecast"]})
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    assert leftovers() == []
    for k in range(5):
        copy = copy_bundle(bundles["tank_anomaly"], tmp_path / f"v{k}", f"v-{k}")
        daemon.reloader.try_bundle(pack_bundle(copy, tmp_path / f"v{k}.zip"), "test")
        daemon._process([daemon.inbox.get(timeout=10)])  # the swap
        assert daemon.pipelines["tank_anomaly"].bundle.manifest.version == f"v-{k}"
    tampered = copy_bundle(bundles["tank_anomaly"], tmp_path / "bad", "v-evil")
    (tampered / "model.tflite").write_bytes((tampered / "model.tflite").read_bytes()[:-8]
                                            + b"\0" * 8)
    extra = pack_bundle(copy_bundle(bundles["tank_anomaly"], tmp_path / "x", "v-x"),
                        tmp_path / "extra.zip")
    with zipfile.ZipFile(extra, "a") as zf:
        zf.writestr("payload.sh", "#!/bin/sh\n")
    for refused in (pack_bundle(tampered, tmp_path / "bad.zip"), extra):
        daemon.reloader.try_bundle(refused, "test")
    assert daemon.metrics.value("procedge_reloads_total", result="refused") == 2
    assert daemon.metrics.value("procedge_reloads_total", result="swapped") == 5
    assert leftovers() == []
    for tag, payload in samples(labelled_run(100)):  # the model from the zip still runs
        daemon._process([Inbound(RAW.format(tag=tag), payload, time.time())])
    rows = [json.loads(m.payload) for m in daemon.outbox.peek(0, 10**6)
            if "inference/tank_anomaly" in m.topic]
    assert rows and rows[-1]["version"] == "v-4"
    daemon.outbox.close()


def test_model_load_flood_is_serialised_and_rate_limited(tmp_path: Path, broker, bundles,
                                                         caplog):
    """50 ``model/load`` commands at once over 8 bundles: every one answered; loads run one
    at a time in the one reload thread (no thread per command), at most one per
    ``reload.min_interval_s``; repeats of a queued path are coalesced, the rest refused
    (busy) beyond ``reload.max_pending``; the replaced interpreters are released."""
    import gc
    import threading
    import weakref

    from edge_runtime.config import ReloadConfig

    config = edge_config(tmp_path, broker.port, bundles)
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    defaults = ReloadConfig()
    copies = [copy_bundle(bundles["tank_anomaly"], tmp_path / f"c{i}", f"v-{i}")
              for i in range(8)]
    released = weakref.ref(daemon.pipelines["tank_anomaly"].model)
    daemon.start()
    watch = Collector(broker.port, ["edge/gwtest/#"], client_id="watch")
    console = commander(broker.port)
    done = threading.Event()
    try:
        assert daemon.subscribed.wait(10)
        baseline = threading.active_count()
        peak = [baseline]

        def sample_threads() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], threading.active_count() - 1)  # less this sampler
                time.sleep(0.002)

        threading.Thread(target=sample_threads, daemon=True).start()
        with caplog.at_level(logging.INFO, logger="procedge.edge"):
            for i in range(50):
                send(console, "model/load", {"path": str(copies[i % 8]), "by": "operator1",
                                             "request_id": f"L{i}"})
            answered = lambda: {r.get("request_id") for r in  # noqa: E731
                                watch.json("edge/gwtest/reply")} >= {f"L{i}" for i in range(50)}
            assert wait_for(answered, 20)
            replies = [r for r in watch.json("edge/gwtest/reply") if r.get("command")]
            assert len(replies) == 50
            busy = [r for r in replies if not r["accepted"]]
            coalesced = [r for r in replies if r["accepted"] and "coalesced" in r["reason"]]
            queued = [r for r in replies if r["accepted"] and "coalesced" not in r["reason"]]
            assert busy and all("busy" in r["reason"] for r in busy)
            assert coalesced and 1 <= len(queued) <= 1 + defaults.max_pending
            swapped = lambda: daemon.metrics.value("procedge_reloads_total",  # noqa: E731
                                                   result="swapped")
            assert wait_for(lambda: swapped() == len(queued),
                            10 + len(queued) * defaults.min_interval_s)
            time.sleep(defaults.min_interval_s + 0.5)  # nothing else follows
            assert swapped() == len(queued)
        done.set()
        assert peak[0] <= baseline, f"{peak[0] - baseline} thread(s) more during the flood"
        results = [r for r in watch.json("edge/gwtest/reply") if r.get("event") == "reload"]
        assert len(results) == len(queued) and all(r["accepted"] for r in results)
        swaps = [r.created for r in caplog.records if "model tank_anomaly: version" in
                 r.getMessage()]
        assert len(swaps) == len(queued)
        gaps = [b - a for a, b in zip(swaps, swaps[1:], strict=False)]
        assert all(g >= 0.8 * defaults.min_interval_s for g in gaps), gaps
        gc.collect()
        assert released() is None, "the replaced interpreter is still referenced"
    finally:
        done.set()
        console.loop_stop()
        daemon.stop(drain_timeout_s=2)
        watch.close()
