"""Active/standby pair against real Mosquitto: two daemon processes with the same models, the
active SIGKILLed mid-fault; every alarm event is delivered (by id), and the standby takes over
within 3 grid periods (docs/edge_daemon.md, "Active/standby pair").

The feed replays a labelled run at one grid step per ``PERIOD_S`` of wall time, so a grid
period here is ``PERIOD_S``: the takeover is measured against it. The active stalls
(SIGSTOP) for ``STALL_S`` before the SIGKILL, shorter than its lease takes to expire, as a
gateway that hangs before it dies: the standby then holds results the active never delivered
(an alarm event among them), and must publish them on takeover.
"""

from __future__ import annotations

import collections
import json
import signal
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt

from edge_runtime.payloads import parse_timestamp
from edge_runtime.sparkplug import codec
from procedge.broker import free_port
from tests.daemon_support import (
    UNS,
    Collector,
    alarm_events,
    check_same_events,
    edge_config,
    labelled_run,
    reference_events,
    samples,
    start_daemon_process,
    wait_for,
    write_config,
)

PERIOD_S = 0.08  # wall time per grid step of the replay (5 s of data time)
STALL_S = 1.0  # 12 grid steps: the alarm clears 11 steps after it is raised
LEASE = "procedge/test/ha"
RAW = UNS + "/raw/{tag}"


class TimedCollector(Collector):
    """A collector that also keeps when each message arrived."""

    def __init__(self, port: int, topics: list[str]):
        self.arrivals: list[tuple[float, str, bytes]] = []
        super().__init__(port, topics, client_id="failover-collector")

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            self.arrivals.append((time.monotonic(), message.topic, message.payload))
        super()._on_message(client, userdata, message)


def role(metrics_port: int) -> str:
    """The peer's lease role from its /healthz ("" while it does not answer)."""
    try:
        url = f"http://127.0.0.1:{metrics_port}/healthz"
        with urllib.request.urlopen(url, timeout=2) as reply:
            return json.loads(reply.read())["ha"]["role"]
    except (OSError, ValueError, KeyError):
        return ""


def republished(metrics_port: int) -> float:
    """procedge_ha_republished_total of a peer: results it held, published on takeover."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as reply:
        text = reply.read().decode()
    return next(float(line.split()[1]) for line in text.splitlines()
                if line.startswith("procedge_ha_republished_total "))


def check_sparkplug(collector: Collector, inference: list[dict], event_ids: set[str]) -> str:
    """The pair as one Sparkplug edge node across the SIGKILL: NBIRTH, the will NDEATH with
    its bdSeq, the new active's NBIRTH with the next bdSeq; every window time and alarm event
    of the reference arrives as NDATA (docs/edge_daemon.md, "Sparkplug B in a pair")."""
    def births() -> list[tuple[str, object]]:
        with collector.lock:
            got = [(t.split("/")[2], p) for t, p in collector.messages
                   if t.startswith("spBv1.0/")]
        return [(kind, codec.decode(p)) for kind, p in got]

    want = {round(1000 * parse_timestamp(e["ts"])) for e in inference}
    stamps = lambda: {m.timestamp for k, p in births() if k == "NDATA"  # noqa: E731
                      for m in p.metrics}
    assert wait_for(lambda: want <= stamps(), 15), sorted(want - stamps())[:5]
    seen = births()
    sessions = [(k, next(m.long_value for m in p.metrics if m.name == codec.BDSEQ))
                for k, p in seen if k != "NDATA"]
    bd_seq = sessions[0][1]
    assert sessions == [("NBIRTH", bd_seq), ("NDEATH", bd_seq),
                        ("NBIRTH", (bd_seq + 1) % 256)], sessions
    names = {m.alias: m.name for k, p in seen if k == "NBIRTH" for m in p.metrics}
    ids = {m.string_value for k, p in seen if k == "NDATA" for m in p.metrics
           if names.get(m.alias, "").endswith("/alarm/event_id")}
    assert event_ids <= ids, event_ids - ids
    return (f"{sessions}, {len(want)}/{len(want)} window times and {len(event_ids)} alarm "
            "events as NDATA")


def test_active_sigkilled_mid_fault_loses_no_alarm_event(tmp_path: Path, bundles, broker):
    items = samples(labelled_run(120, segments=((0.4, 0.7),)))
    base = edge_config(tmp_path, broker.port, bundles,
                       event_time={"allowed_lateness_s": 600.0})
    spb = {"group": "Line1", "node": "line1-edge"}  # the pair is one Sparkplug edge node
    peers, procs = {}, {}
    for peer, priority in (("a", 0), ("b", 1)):
        port = free_port()
        config = base | {
            "gateway": f"gw{peer}", "metrics_port": port,
            "mqtt": base["mqtt"] | {"client_id": f"procedge-gw{peer}"},
            "outbox": base["outbox"] | {"path": str(tmp_path / f"outbox-{peer}.sqlite")},
            # a stalled peer's lease expires 2 s after its last heartbeat at the earliest
            "ha": {"peer_id": peer, "priority": priority, "lease_topic": LEASE,
                   "keepalive_s": 2, "heartbeat_s": 1.0},
            "sparkplug": {"output": spb}}
        peers[peer] = port
        procs[peer] = start_daemon_process(write_config(tmp_path / f"{peer}.yaml", config),
                                           tmp_path / f"daemon-{peer}.log")
    expected, inference = reference_events(base, tmp_path, items)  # while the peers start
    assert len(expected) >= 4  # raise ... clear, twice
    node = f"spBv1.0/{spb['group']}/+/{spb['node']}"
    collector = TimedCollector(broker.port, [f"{UNS}/alarm/#", f"{UNS}/inference/#",
                                             f"{LEASE}/+", node])
    feed = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="feed")
    feed.connect("127.0.0.1", broker.port)
    feed.loop_start()
    try:
        roles = lambda: {p: role(port) for p, port in peers.items()}  # noqa: E731
        assert wait_for(lambda: sorted(roles().values()) == ["active", "standby"], 60), roles()
        active = next(p for p, r in roles().items() if r == "active")
        standby = next(p for p in peers if p != active)
        kill: dict[str, float] = {}

        def killer():  # mid-fault: as soon as the first raise is out, a stall, then death
            if wait_for(lambda: any(e["event"] == "raise" for e in alarm_events(collector)),
                        60):
                procs[active].send_signal(signal.SIGSTOP)
                kill["stall"] = time.monotonic()
                time.sleep(STALL_S)
                procs[active].send_signal(signal.SIGKILL)
                kill["at"] = time.monotonic()

        watcher = threading.Thread(target=killer, daemon=True)
        watcher.start()
        t0 = time.monotonic()
        for step in range(0, len(items), 5):  # one grid step (5 tags) per PERIOD_S
            time.sleep(max(0.0, t0 + step / 5 * PERIOD_S - time.monotonic()))
            for tag, payload in items[step:step + 5]:
                feed.publish(RAW.format(tag=tag), payload, qos=1)
        watcher.join(timeout=10)
        assert "at" in kill, "the first raise never came"
        want = {e["event_id"] for e in expected}
        got = lambda: {e["event_id"] for e in alarm_events(collector)}  # noqa: E731
        wait_for(lambda: want <= got(), 15)
        received = alarm_events(collector)
        check_same_events(received, expected)  # every id, each the reference's event
        counts = collections.Counter(e["event_id"] for e in received)
        assert set(counts) == want and len(set(counts)) == len(expected)  # once after de-dup
        # takeover: the standby's claim (after the kill, unless a stall on a loaded machine
        # outlasted the lease), and its first result after both
        with collector.lock:
            arrivals = list(collector.arrivals)
        claim = next(t for t, topic, p in arrivals if t > kill["stall"]
                     and topic == f"{LEASE}/{standby}" and json.loads(p).get("role") == "active")
        since = max(claim, kill["at"])
        first = next(t for t, topic, _ in arrivals if t > since and "/inference/" in topic)
        assert first - kill["at"] <= 3 * PERIOD_S, (claim - kill["at"], first - kill["at"])
        assert role(peers[standby]) == "active"
        held = republished(peers[standby])
        assert held > 0  # the stall's results: the active never delivered them
        after = sum(t > kill["at"] for t, topic, p in arrivals
                    if "/alarm/" in topic and "event_id" in json.loads(p))
        sparkplug = check_sparkplug(collector, inference, want)
        print(f"\nfailover: active {active} SIGKILLed mid-fault; lease claimed by {standby} "
              f"{(claim - kill['at']) * 1000:.0f} ms later, its first result at "
              f"{(first - kill['at']) * 1000:.0f} ms (grid period {PERIOD_S * 1000:.0f} ms); "
              f"{held:.0f} held results republished; alarm events {len(set(counts))}/"
              f"{len(expected)} by id, {after} after the kill, "
              f"{sum(counts.values()) - len(counts)} duplicate(s) by id; Sparkplug: "
              f"{sparkplug}")
    finally:
        feed.loop_stop()
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
        collector.close()
