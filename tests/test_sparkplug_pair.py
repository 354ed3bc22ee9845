"""Sparkplug B out from an active/standby pair, against a real Mosquitto (docs/edge_daemon.md,
"Sparkplug B in a pair"): the two peers are one edge node. A host subscribed to that node
sees one NBIRTH (the standby holds no session), NDATA with consecutive seq; the active's NDATA
then stall while its JSON results still go out (a result's two forms leave from two outboxes),
and the active stops: its NDEATH carries the bdSeq of its NBIRTH, the new active's NBIRTH
another one, and every forecast, score and alarm event the pair decided arrives as NDATA.
The SIGKILL (the will NDEATH) is in test_daemon_failover.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from pydantic import ValidationError

from edge_runtime.config import EdgeConfig, MqttConfig, OutboxConfig, SparkplugOutputConfig
from edge_runtime.daemon import EdgeDaemon
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.payloads import parse_timestamp
from edge_runtime.sparkplug import codec
from edge_runtime.sparkplug.catalogue import Catalogue
from edge_runtime.sparkplug.node import SparkplugNode
from tests.daemon_support import (
    UNS,
    Collector,
    edge_config,
    labelled_run,
    process_alarm_events,
    reference_events,
    samples,
    wait_for,
)

GROUP, NODE = "Line1", "line1-edge"
LEASE = "procedge/test/spb-pair"
STEPS = 90  # alarm events at steps 38, 49 (held by the standby) and 65, 75 (after takeover)


def peer(tmp_path: Path, port: int, bundles, name: str, priority: int) -> EdgeDaemon:
    base = edge_config(tmp_path, port, bundles)
    return EdgeDaemon(EdgeConfig.model_validate(base | {
        "gateway": f"gw{name}", "state_dir": str(tmp_path / f"state-{name}"),
        "mqtt": base["mqtt"] | {"client_id": f"procedge-gw{name}"},
        "outbox": base["outbox"] | {"path": str(tmp_path / f"outbox-{name}.sqlite"),
                                    "late_after_s": 0.2},
        "ha": {"peer_id": name, "priority": priority, "lease_topic": LEASE,
               "keepalive_s": 1, "heartbeat_s": 0.3},
        "sparkplug": {"output": {"group": GROUP, "node": NODE}}}))


def test_the_pair_is_one_edge_node_and_loses_no_value(tmp_path: Path, broker, bundles):
    run = labelled_run(STEPS, segments=((0.4, 0.7),))
    items = samples(run)
    events, inference = reference_events(edge_config(tmp_path, broker.port, bundles),
                                         tmp_path, items)
    want_ts = {round(1000 * parse_timestamp(e["ts"])) for e in inference}
    want_ids = {e["event_id"] for e in process_alarm_events(events)}
    per_step = len(run.tag_names)
    parts = [items[:30 * per_step], items[30 * per_step:60 * per_step], items[60 * per_step:]]

    host = Collector(broker.port, [f"spBv1.0/{GROUP}/+/{NODE}", f"{UNS}/inference/#"],
                     client_id="spb-host")
    peers = {n: peer(tmp_path, broker.port, bundles, n, p) for n, p in (("a", 0), ("b", 1))}
    feed = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="spb-feed")
    feed.connect("127.0.0.1", broker.port)
    feed.loop_start()

    def spb() -> list[tuple[str, object]]:  # (kind, payload) in arrival order
        with host.lock:
            got = [(t, p) for t, p in host.messages if t.startswith("spBv1.0/")]
        return [(t.split("/")[2], codec.decode(p)) for t, p in got]

    def stamps() -> set[int]:
        return {m.timestamp for kind, p in spb() if kind == "NDATA" for m in p.metrics}

    def json_stamps() -> set[int]:
        return {round(1000 * parse_timestamp(e["ts"])) for e in host.json("/inference/")}

    def publish(part) -> None:
        for tag, payload in part:
            feed.publish(f"{UNS}/raw/{tag}", payload, qos=1)

    try:
        for daemon in peers.values():
            daemon.start()
        assert wait_for(lambda: sorted(d.failover.lease.role for d in peers.values())
                        == ["active", "standby"] and any(k == "NBIRTH" for k, _ in spb()), 20)
        active = next(n for n, d in peers.items() if d.failover.active)
        standby = peers["b" if active == "a" else "a"]

        publish(parts[0])  # both decide; the standby drops each row it sees as NDATA
        assert wait_for(lambda: len(host.json("/inference/")) > 20
                        and len(standby.sparkplug.pair.shadow) == 0, 20)

        # the active's NDATA stall (its JSON still goes out); then it stops
        peers[active].sparkplug.node._fill = lambda client, last_row: last_row
        publish(parts[1])
        final = {ts for ts in want_ts if ts <= 1000 * float(run.timestamps[50])}
        assert wait_for(lambda: final <= json_stamps(), 20)
        assert wait_for(lambda: len(standby.failover.shadow) == 0, 10)  # JSON: all seen
        part2 = json_stamps() - stamps()  # delivered as JSON, not as NDATA
        assert len(part2) > 20 and len(standby.sparkplug.pair.shadow) >= len(part2)  # held
        peers[active].stop(drain_timeout_s=0.3)
        assert wait_for(lambda: standby.failover.active, 10)
        publish(parts[2])
        assert wait_for(lambda: want_ts <= stamps(), 20), sorted(want_ts - stamps())[:5]

        seen = spb()
        kinds = [k for k, _ in seen]
        assert kinds.count("NBIRTH") == 2 and kinds.count("NDEATH") == 1, kinds
        first, death, second = (kinds.index("NBIRTH"), kinds.index("NDEATH"),
                                len(kinds) - 1 - kinds[::-1].index("NBIRTH"))
        assert first < death < second  # the old session ends before the new one opens
        bd_seq = [next(m.long_value for m in seen[i][1].metrics if m.name == codec.BDSEQ)
                  for i in (first, death, second)]
        assert bd_seq[1] == bd_seq[0] and bd_seq[2] == (bd_seq[0] + 1) % 256, bd_seq
        for start, end in ((first, death), (second, len(seen))):
            seqs = [p.seq for k, p in seen[start + 1:end] if k == "NDATA"]
            assert seqs and seqs == [(1 + k) % 256 for k in range(len(seqs))], seqs
        born = {m.name: m for m in seen[second][1].metrics}
        assert born["tank_anomaly/score"].HasField("double_value")  # the last value published
        names = {m.alias: m.name for m in seen[second][1].metrics}
        event_ids = {m.string_value for k, p in seen if k == "NDATA" for m in p.metrics
                     if names.get(m.alias, "").endswith("/alarm/event_id")}
        assert want_ids <= event_ids and len(want_ids) == 4, (want_ids, event_ids)
        held = [m for k, p in seen[second + 1:] if k == "NDATA" for m in p.metrics
                if m.timestamp in part2]
        assert held and all(m.is_historical for m in held)  # decided by the standby, late
    finally:
        feed.loop_stop()
        for daemon in peers.values():
            daemon.stop(drain_timeout_s=1)
        host.close()


def test_a_pair_names_its_one_edge_node():
    """The default node id is the gateway name, which differs between the peers."""
    base = {"models": [{"name": "m", "bundle": "b"}],
            "ha": {"peer_id": "a", "lease_topic": LEASE}}
    with pytest.raises(ValidationError, match=r"ha: sparkplug.output.node is required"):
        EdgeConfig.model_validate(base | {"sparkplug": {"output": {"group": GROUP}}})
    EdgeConfig.model_validate(base | {"sparkplug": {"output": {"group": GROUP, "node": NODE}}})
    EdgeConfig.model_validate({"models": base["models"], "sparkplug": {"output": {
        "group": GROUP}}})  # alone: the gateway name is the node id, as before


def test_a_peer_that_loses_the_lease_ends_its_session_and_opens_none(tmp_path: Path, broker):
    """The edge node alone, its lease flipped by hand: NDEATH when it is lost, no session
    while standby (no reconnect), a new session with the next bdSeq when it is back."""
    holds = threading.Event()
    holds.set()
    node = SparkplugNode(SparkplugOutputConfig(group=GROUP, node=NODE), "gw",
                         MqttConfig(port=broker.port, reconnect_min_s=0.1, reconnect_max_s=0.5),
                         OutboxConfig(path=tmp_path / "o.sqlite"),
                         Catalogue({}, lambda kind, **fields: f"x/{kind}"), DaemonMetrics())
    node.holds_session = holds.is_set
    host = Collector(broker.port, [f"spBv1.0/{GROUP}/+/{NODE}"], client_id="spb-host2")

    def sessions() -> list[tuple[str, int]]:
        with host.lock:
            got = [(t.split("/")[2], codec.decode(p)) for t, p in host.messages]
        return [(k, next(m.long_value for m in p.metrics if m.name == codec.BDSEQ))
                for k, p in got]

    node.start()
    try:
        assert wait_for(lambda: sessions() == [("NBIRTH", 0)], 10), sessions()
        holds.clear()  # the other peer holds the lease now
        assert wait_for(lambda: sessions() == [("NBIRTH", 0), ("NDEATH", 0)], 10), sessions()
        time.sleep(0.4)  # 4 reconnect delays: a standby does not connect again
        assert sessions() == [("NBIRTH", 0), ("NDEATH", 0)]
        holds.set()
        assert wait_for(lambda: sessions()[2:] == [("NBIRTH", 1)], 10), sessions()
    finally:
        node.stop(drain_timeout_s=1)
        host.close()
