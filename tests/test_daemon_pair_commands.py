"""Operator commands in an active/standby pair (docs/edge_daemon.md, "Active/standby pair"),
against a real Mosquitto: both peers subscribe one command prefix, so both apply a shelve and
each replies on its own topic; only the active announces the operator's event; and when the
active stops, the peer that takes over publishes the alarm's retained state still shelved —
the operator's decision survives the failover."""

from __future__ import annotations

import json
from pathlib import Path

import paho.mqtt.client as mqtt

from edge_runtime.config import EdgeConfig
from edge_runtime.daemon import EdgeDaemon
from tests.daemon_support import (
    UNS,
    Collector,
    edge_config,
    labelled_run,
    samples,
    wait_for,
)

AID = "tank_anomaly.anomaly"
CMD = "edge/line1/cmd"
LEASE = "procedge/test/pair-commands"


def peer(tmp_path: Path, port: int, bundles, name: str, priority: int) -> EdgeDaemon:
    base = edge_config(tmp_path, port, bundles)
    config = base | {
        "gateway": f"gw{name}", "state_dir": str(tmp_path / f"state-{name}"),
        "mqtt": base["mqtt"] | {"client_id": f"procedge-gw{name}"},
        "topics": base["topics"] | {"cmd": CMD},  # one prefix: both peers obey every command
        "outbox": base["outbox"] | {"path": str(tmp_path / f"outbox-{name}.sqlite")},
        "ha": {"peer_id": name, "priority": priority, "lease_topic": LEASE,
               "keepalive_s": 1, "heartbeat_s": 0.3}}
    return EdgeDaemon(EdgeConfig.model_validate(config))


def test_a_shelve_reaches_both_peers_and_survives_the_failover(tmp_path: Path, broker,
                                                                bundles):
    peers = {name: peer(tmp_path, broker.port, bundles, name, prio)
             for name, prio in (("a", 0), ("b", 1))}
    watch = Collector(broker.port, ["edge/+/reply", f"{UNS}/alarm/#"], client_id="pair-watch")
    console = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pair-console")
    console.connect("127.0.0.1", broker.port)
    console.loop_start()
    try:
        for daemon in peers.values():
            daemon.start()
        assert wait_for(lambda: all(d.subscribed.is_set() for d in peers.values())
                        and sorted(d.failover.lease.role for d in peers.values())
                        == ["active", "standby"], 20)
        active = next(n for n, d in peers.items() if d.failover.active)
        standby = next(n for n in peers if n != active)

        console.publish(f"{CMD}/alarm/shelve", json.dumps(
            {"alarm_id": AID, "by": "operator1", "request_id": "p1", "duration_s": 600}), qos=1)
        replies = lambda name: [r for r in watch.json(f"edge/gw{name}/reply")  # noqa: E731
                                if r.get("request_id") == "p1"]
        assert wait_for(lambda: all(replies(n) for n in peers), 10), watch.json("/reply")
        for name in peers:  # each peer applied it and answered on its own reply topic
            [reply] = replies(name)
            assert reply["accepted"] is True and reply["by"] == "operator1", (name, reply)
            assert peers[name].alarms[AID].shelved_until is not None, name
        shelves = lambda: [e for e in watch.json(f"/alarm/tank_anomaly/{AID}")  # noqa: E731
                           if e.get("event") == "shelve"]
        assert wait_for(lambda: len(shelves()) >= 1, 10)
        wait_for(lambda: len(shelves()) > 1, 1.0)  # a second announcement would come now
        assert len(shelves()) == 1, shelves()  # the operator's event: the active announces it

        peers[active].stop(drain_timeout_s=2)  # the lease is released; the standby claims it
        assert wait_for(lambda: peers[standby].failover.active, 10)
        states_before = len(watch.json(f"{AID}/state"))
        feed = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pair-feed")
        feed.connect("127.0.0.1", broker.port)
        feed.loop_start()
        for tag, payload in samples(labelled_run(20, segments=()))[:25]:  # a batch to act on
            feed.publish(f"{UNS}/raw/{tag}", payload, qos=1)
        assert wait_for(lambda: len(watch.json(f"{AID}/state")) > states_before, 10)
        feed.loop_stop()
        state = watch.json(f"{AID}/state")[-1]  # the new active's retained state, on takeover
        assert state["state"] == "shelved" and state["shelved_until"] is not None, state
    finally:
        console.loop_stop()
        for daemon in peers.values():
            daemon.stop(drain_timeout_s=1)
        watch.close()
