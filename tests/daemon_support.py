"""Test support for the edge daemon: a restartable Mosquitto, a collector, labelled runs."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_runtime.payloads import iso_ms
from procedge.broker import _wait_for_port, free_port, mosquitto_binary

ROOT = Path(__file__).resolve().parent.parent
UNS = "procedge/test/area/tank"


def wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def healthy(metrics_port: int) -> bool:
    """A daemon process's /healthz says 200: connected, subscribed, threads alive."""
    try:
        url = f"http://127.0.0.1:{metrics_port}/healthz"
        return urllib.request.urlopen(url, timeout=2).status == 200
    except OSError:  # not listening yet, or 503
        return False


class RestartableBroker:
    """Mosquitto on one fixed loopback port that a test can kill and start again."""

    def __init__(self, workdir: Path, extra: str = "", port: int | None = None):
        self.port = port or free_port()
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        # as root, mosquitto drops to user `mosquitto` before saving: it needs a folder it can
        # reach (pytest's tmp folders are 0700) and write
        store = Path(tempfile.mkdtemp(prefix="procedge-mosq-"))
        store.chmod(0o777)
        self.store = store
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nlog_dest stderr\n"
            f"persistence true\npersistence_location {store}/\nautosave_interval 1\n"
            f"max_queued_messages 100000\n{extra}\n")
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        log = (self.workdir / f"mosquitto-{self.starts}.log").open("wb")
        self.process = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)],
                                        stdout=log, stderr=log)
        self.starts += 1
        _wait_for_port(self.port, self.process, timeout_s=10)
        time.sleep(0.3)  # still alive? (if another process took the port, mosquitto exits)
        assert self.process.poll() is None, "mosquitto exited after start (port taken?)"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=10)
        self.process = None

    def wait_saved(self, timeout_s: float = 30.0) -> None:
        """Return once Mosquitto has written its store twice from now (it saves every
        ``autosave_interval``, 1 s): the second save began after every acknowledgement the
        broker had processed by the call, so a SIGKILL then loses none of them, however
        loaded the machine (a fixed sleep can be outrun)."""
        db = self.store / "mosquitto.db"

        def saved_after(t_ns: int) -> bool:
            return db.exists() and db.stat().st_mtime_ns > t_ns

        called = time.time_ns()
        assert wait_for(lambda: saved_after(called), timeout_s)
        first = db.stat().st_mtime_ns
        assert wait_for(lambda: saved_after(first), timeout_s)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.store, ignore_errors=True)


class Collector:
    """A persistent-session QoS 1 subscriber that survives broker restarts; returns once the
    broker has granted its subscriptions (before that, what is published is not for it)."""

    def __init__(self, port: int, topics: list[str], client_id: str = "collector", **tls):
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=False)
        if tls:
            self.client.tls_set(**tls)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10), f"{client_id}: no SUBACK within 10 s"

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload))

    def json(self, fragment: str) -> list[dict]:
        with self.lock:
            items = [p for t, p in self.messages if fragment in t]
        out = []
        for p in items:
            with contextlib.suppress(ValueError):
                out.append(json.loads(p))
        return out

    def wait(self, predicate, timeout_s: float) -> bool:
        return wait_for(predicate, timeout_s)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def labelled_run(steps: int = 400, segments=((0.35, 0.5), (0.7, 0.8)), seed: int = 3):
    """A simulated tank run whose temperature sensor reads 5 degC high in ``segments``
    (fractions of the run): each segment should raise and then clear the alarm."""
    from training.simulator import Fault, simulate

    period = 5.0
    start = time.time() - steps * period - 3600
    start -= start % period
    normal = simulate(steps, period, seed=seed, start_epoch_s=start)
    faulty = simulate(steps, period, seed=seed, start_epoch_s=start,
                      faults=[Fault("step", "temperature", 0.0, 5.0)])
    for a, b in segments:
        normal.values[int(a * steps):int(b * steps)] = faulty.values[int(a * steps):int(b * steps)]
    return normal


def samples(run, first: int = 0, last: int | None = None) -> list[tuple[str, bytes]]:
    """(tag, payload) in publishing order for rows first..last."""
    out = []
    for ts, row in zip(run.timestamps[first:last], run.values[first:last], strict=True):
        for tag, value in zip(run.tag_names, row, strict=True):
            out.append((tag, json.dumps({"v": round(float(value), 6),
                                         "ts": iso_ms(float(ts))}).encode()))
    return out


def edge_config(workdir: Path, port: int, bundles: dict[str, Path], **overrides) -> dict:
    config = {
        "gateway": "gwtest",
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_min_s": 0.1,
                 "reconnect_max_s": 0.5, "client_id": "procedge-gwtest"},
        "topics": {"uns": UNS},
        "models": [{"name": name, "bundle": str(path)} for name, path in bundles.items()],
        "outbox": {"path": str(workdir / "outbox.sqlite"), "late_after_s": 1.0,
                   "synchronous": "NORMAL"},
        "commands": {"allowed": ["operator1"]},
        "log_level": "INFO",
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            config[key] = config.get(key, {}) | value
        else:
            config[key] = value
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_daemon_process(config_path: Path, log_path: Path) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "procedge", "run", "--config",
                             str(config_path)], stdout=log_path.open("ab"),
                            stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def reference_events(config: dict, workdir: Path, items: list[tuple[str, bytes]]):
    """What the daemon must publish for these inputs: the same code, no MQTT, in order."""
    from edge_runtime.config import EdgeConfig
    from edge_runtime.daemon import EdgeDaemon, Inbound

    ref = dict(config) | {"outbox": config["outbox"] | {"path": str(workdir / "ref.sqlite")}}
    daemon = EdgeDaemon(EdgeConfig.model_validate(ref))
    for k in range(0, len(items), 200):
        daemon._process([Inbound(daemon._topic("raw", tag=t), p, time.time())
                         for t, p in items[k:k + 200]])
    rows = daemon.outbox.peek(0, 10**7)
    events = [json.loads(m.payload) for m in rows
              if "/alarm/" in m.topic and not m.topic.endswith("/state")]
    inference = [json.loads(m.payload) for m in rows if "/inference/" in m.topic]
    daemon.outbox.close()
    return events, inference


def prebuilt_bundles() -> dict[str, Path] | None:
    """``PROCEDGE_TEST_BUNDLES=<dir>`` (holding tank_anomaly-*/ and tank_forecast-*/) skips
    the session's tiny training while iterating locally; CI trains them."""
    root = os.environ.get("PROCEDGE_TEST_BUNDLES")
    if not root:
        return None
    found = {}
    for name in ("tank_anomaly", "tank_forecast"):
        found[name] = next(p for p in sorted(Path(root).glob(f"{name}-*")) if p.is_dir())
    return found


# --- operator console: commands to the daemon under test -------------------------------


def commander(port: int) -> mqtt.Client:
    """An MQTT 5 client for the command topics (user properties carry the identity)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="console",
                         protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def send(client: mqtt.Client, verb: str, body: dict, by_property: str = "") -> None:
    props = None
    if by_property:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = ("by", by_property)
    client.publish(f"edge/gwtest/cmd/{verb}", json.dumps(body), qos=1, properties=props)


def replies(watch: Collector, request_id: str, timeout_s: float = 10) -> list[dict]:
    """The daemon's command replies with ``request_id``, once at least one arrived (or
    ``timeout_s`` passed: then none)."""
    found: list[dict] = []

    def check() -> bool:
        found[:] = [r for r in watch.json("edge/gwtest/reply")
                    if r.get("request_id") == request_id]
        return bool(found)

    wait_for(check, timeout_s)
    return found


def alarm_events(collector: Collector) -> list[dict]:
    """The alarm events a collector received (not retained states or other payloads)."""
    return [e for e in collector.json("/alarm/") if "event_id" in e]


def check_same_events(received: list[dict], expected: list[dict],
                      drift_rel: float = 0.0) -> None:
    """The same alarm events by id (a duplicate is the same event, not a new one), each
    with the reference's transition and score; ``drift_rel``: relative tolerance on the
    advisory drift alarms' scores (for runs where late samples were refused)."""
    ids = collections.Counter(e["event_id"] for e in received)
    assert set(ids) == {e["event_id"] for e in expected}
    by_id = {e["event_id"]: e for e in expected}
    for event in received:  # a duplicate is the same event, not a new one
        want = by_id[event["event_id"]]
        assert event["event"] == want["event"], (event, want)
        tolerance = drift_rel if event.get("advisory") else 0.0
        assert event["score"] == pytest.approx(want["score"], rel=tolerance, abs=0.0), (
            f"{event['event_id']} {event['event']}: score {event['score']!r}, "
            f"reference {want['score']!r} (relative tolerance {tolerance})")


def process_alarm_events(events: list[dict]) -> list[dict]:
    """Without the advisory drift alarms: their window and CUSUM live in memory, so after a
    daemon restart they start afresh (docs/edge_daemon.md, "Drift") and differ from a run
    without one; and Sparkplug carries no drift alarms."""
    return [e for e in events if not e.get("advisory")]
