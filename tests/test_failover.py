"""The pair's rules without a broker: who holds the lease, what a standby holds back and what
it publishes on takeover (tests/test_daemon_failover.py runs two daemon processes)."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from edge_runtime.config import EdgeConfig
from edge_runtime.failover import Failover, Shadow, output_key
from edge_runtime.lease import ACTIVE, STANDBY, Peer, decide
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.outbox import Message
from edge_runtime.routing import Topics

NOW = 100.0


def peer(name: str, priority: int, role: str = STANDBY, term: int = 0, online: bool = True,
         heard: float = NOW) -> Peer:
    return Peer(name, priority, online, role, term, heard)


def test_the_lowest_priority_number_claims_a_free_lease_above_every_term_seen():
    peers = {"a": peer("a", 0), "b": peer("b", 1), "c": peer("c", 0, online=False, term=6)}
    assert decide("a", STANDBY, 0, peers, NOW - 1) == (ACTIVE, 7)
    assert decide("b", STANDBY, 0, peers, NOW - 1) == (STANDBY, 0)
    assert decide("a", STANDBY, 0, peers, NOW - 1, may_claim=False) == (STANDBY, 0)


def test_a_holder_keeps_the_lease_and_the_higher_term_wins_a_double_claim():
    holder = {"a": peer("a", 0), "b": peer("b", 1, ACTIVE, 3)}
    assert decide("a", STANDBY, 0, holder, NOW - 1) == (STANDBY, 0)  # not pre-emptive
    both = {"a": peer("a", 0, ACTIVE, 2), "b": peer("b", 1, ACTIVE, 3)}
    assert decide("a", ACTIVE, 2, both, NOW - 1) == (STANDBY, 2)  # steps down
    assert decide("b", ACTIVE, 3, both, NOW - 1) == (ACTIVE, 3)


def test_a_dead_or_stale_holder_is_no_lease_and_an_unsynced_peer_keeps_its_role():
    stale = {"a": peer("a", 0, ACTIVE, 4, heard=NOW - 10), "b": peer("b", 1)}
    assert decide("b", STANDBY, 0, stale, NOW - 1) == (ACTIVE, 5)
    assert decide("a", ACTIVE, 4, {"b": peer("b", 1, ACTIVE, 5)}, NOW - 1) == (ACTIVE, 4)


def test_shadow_drops_what_the_active_published_and_keeps_the_rest_in_order():
    registry = CollectorRegistry()
    shadow = Shadow(max_held=3, dropped_metric=Counter("dropped", "held, dropped",
                                                       registry=registry))
    msg = {k: Message("t", k.encode()) for k in "abcde"}
    shadow.seen("b")  # the active was first
    for k in "abc":
        shadow.hold(k, msg[k])
    shadow.seen("a")  # the standby was first
    assert [m.payload for m in shadow.take()] == [b"c"]
    for k in "abcde":
        shadow.hold(k, msg[k])
    assert shadow.dropped == 2 and [m.payload for m in shadow.take()] == [b"c", b"d", b"e"]
    assert registry.get_sample_value("dropped_total") == 2  # counted as each one is dropped


def pair_config(**extra) -> dict:
    return {"gateway": "gwa", "models": [{"name": "m", "bundle": "m"}],
            "ha": {"peer_id": "a", "lease_topic": "procedge/ha/line1"}} | extra


class FakeLease:
    active = False


def test_standby_holds_results_and_publishes_them_on_takeover():
    config = EdgeConfig.model_validate(pair_config())
    topics = Topics(config)
    states = [Message(topics.get("alarm_state", model="m", alarm_id="m.anomaly"), b"{}")]
    failover = Failover(config, topics, DaemonMetrics(), lambda: states)
    failover.lease = FakeLease()
    alarm = topics.get("alarm", model="m", alarm_id="m.anomaly")
    event = Message(alarm, json.dumps({"event_id": "m.anomaly@5000:raise"}).encode())
    ack = Message(alarm, json.dumps({"event_id": "m.anomaly@9:ack", "by": "op"}).encode())
    forecast = Message(topics.get("inference", model="m"), b'{"ts": "T1"}')
    reply = Message(topics.get("reply"), b'{"accepted": true}')
    assert failover.route([event, ack, forecast, states[0], reply]) == [reply]
    failover._on_output(forecast.topic, forecast.payload)  # the active published it
    failover.lease.active = True
    taken = failover.route([reply])
    assert [m.payload for m in taken] == [event.payload, reply.payload, b"{}"]
    assert taken[0].created_s > 0  # when it was decided: late ones go out as historical
    assert failover.route([forecast]) == [forecast]  # active: everything, as it comes
    assert output_key(alarm, event.payload) == "m.anomaly@5000:raise"


@pytest.mark.parametrize("extra, field", [
    ({"mqtt": {"shared_group": "g"}}, "shared_group"),
    ({"topics": {"alarm": "{uns}/{gateway}/alarm/{model}/{alarm_id}"}}, "topics.alarm"),
    ({"topics": {"inference": "{uns}/inference-{model}"}}, "topics.inference"),
    ({"ha": {"peer_id": "a/b", "lease_topic": "x"}}, "peer_id"),
    ({"ha": {"peer_id": "a", "lease_topic": "x/+"}}, "lease_topic"),
    ({"workers": 2, "models": [{"name": "m", "bundle": "m"}, {"name": "n", "bundle": "n"}]},
     "runs one process"),
])
def test_a_pair_config_that_cannot_work_is_refused_naming_the_field(extra, field):
    with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
        EdgeConfig.model_validate(pair_config(**extra))


def test_commented_ha_sample_in_gateway_yaml_is_a_valid_section():
    import yaml

    from edge_runtime.ha_config import HaConfig
    from tests.daemon_support import ROOT

    lines = (ROOT / "deploy/gateway.yaml").read_text().splitlines()
    block = []
    for line in lines[lines.index("# ha:"):]:
        if not line.startswith("# "):
            break
        block.append(line[2:])
    config = HaConfig.model_validate(yaml.safe_load("\n".join(block))["ha"])
    assert config.peer_id == "gw1" and config.priority == 0
