"""Issue 17 (6): operator commands prove who sent them (Ed25519 signatures, replay
protection), and out_of_service is bounded in time — against a real Mosquitto and real
bundles. The signature rules themselves are also checked as pure logic."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edge_runtime.config import EdgeConfig
from edge_runtime.daemon import EdgeDaemon
from tests.bundle_support import ed25519_keypair
from tests.daemon_support import UNS, Collector, commander, edge_config, replies, send, wait_for

AID = "tank_anomaly.anomaly"


# -- pure logic: the envelope and its checks ------------------------------------------------
def test_verifier_checks_key_signature_time_and_nonce(tmp_path: Path):
    from edge_runtime.command_signing import CommandVerifier, canonical_bytes, sign_command

    op_key, op_pub = ed25519_keypair(tmp_path, "operator1")
    other_key, _ = ed25519_keypair(tmp_path, "mallory")
    verifier = CommandVerifier({"operator1": op_pub}, max_clock_skew_s=60, max_nonces=3)
    now = 1_700_000_000.0
    body = sign_command({"alarm_id": "a", "request_id": "x"}, op_key, by="operator1", now_s=now)
    assert set(body) >= {"ts", "nonce", "by", "sig"} and len(body["nonce"]) == 32
    # canonical: sorted keys, no spaces, without sig
    assert canonical_bytes(body) == json.dumps(
        {k: v for k, v in body.items() if k != "sig"}, sort_keys=True,
        separators=(",", ":")).encode()
    assert verifier.verify(body, now + 1) == ("operator1", None)
    assert verifier.verify(body, now + 2)[1].startswith("replay")  # the same nonce again
    tampered = sign_command({"alarm_id": "a"}, op_key, by="operator1", now_s=now) | {
        "alarm_id": "b"}
    assert "signature" in verifier.verify(tampered, now)[1]
    forged = sign_command({"alarm_id": "a"}, other_key, by="operator1", now_s=now)
    assert "signature" in verifier.verify(forged, now)[1]
    assert "unknown operator" in verifier.verify(
        sign_command({"alarm_id": "a"}, other_key, by="mallory", now_s=now), now)[1]
    stale = sign_command({"alarm_id": "a"}, op_key, by="operator1", now_s=now - 61)
    assert "ts" in verifier.verify(stale, now)[1]
    future = sign_command({"alarm_id": "a"}, op_key, by="operator1", now_s=now + 61)
    assert "ts" in verifier.verify(future, now)[1]
    iso = sign_command({"alarm_id": "a"}, op_key, by="operator1", now_s=now, iso_ts=True)
    assert iso["ts"].endswith("Z") and verifier.verify(iso, now)[1] is None
    assert "unsigned" in verifier.verify({"alarm_id": "a", "by": "operator1"}, now)[1]
    assert verifier.verify({"sig": 5, "by": "operator1"}, now)[1] is not None  # never a crash
    # bounded memory: full of live nonces = refuse (evicting one would re-open a replay)
    for k in range(3):
        verifier.verify(sign_command({"k": k}, op_key, by="operator1", now_s=now), now)
    assert len(verifier.nonces) <= 3
    full = verifier.verify(sign_command({"k": 9}, op_key, by="operator1", now_s=now), now)
    assert "too many" in full[1]
    # nonces are forgotten once their command would be stale anyway
    later = now + 200
    assert verifier.verify(sign_command({"k": 10}, op_key, by="operator1", now_s=later),
                           later)[1] is None
    assert len(verifier.nonces) == 1


def test_require_signature_needs_operator_keys(tmp_path: Path, bundles):
    config = edge_config(tmp_path, 1, bundles)
    config["commands"] |= {"require_signature": True}
    with pytest.raises(ValueError, match="operator_keys"):
        EdgeConfig.model_validate(config)


# -- over MQTT ------------------------------------------------------------------------------
def test_signed_commands_over_mqtt(tmp_path: Path, broker, bundles):
    """An anonymous client wrote ``"by": "operator1"`` and was obeyed; with
    ``commands.require_signature`` only a valid, fresh, unreplayed signature is."""
    from edge_runtime.command_signing import sign_command

    op_key, op_pub = ed25519_keypair(tmp_path, "operator1")
    mallory_key, _ = ed25519_keypair(tmp_path, "mallory")
    config = edge_config(tmp_path, broker.port, bundles)
    config["mqtt"] |= {"protocol": "5"}
    config["commands"] |= {"require_signature": True, "max_clock_skew_s": 30,
                           "operator_keys": {"operator1": str(op_pub)}}
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    daemon.start()
    watch = Collector(broker.port, ["edge/gwtest/#", f"{UNS}/alarm/#"], client_id="watch")
    console = commander(broker.port)
    try:
        assert daemon.subscribed.wait(10)
        # forged identity, no signature: in the body and as the MQTT 5 user property
        send(console, "alarm/out_of_service", {"alarm_id": AID, "by": "operator1",
                                               "request_id": "f1"}, by_property="operator1")
        [r] = replies(watch, "f1")
        assert r["accepted"] is False and "unsigned" in r["reason"], r
        # signed with someone else's key, claiming operator1
        forged = sign_command({"alarm_id": AID, "request_id": "f2"}, mallory_key, by="operator1")
        send(console, "alarm/out_of_service", forged)
        [r] = replies(watch, "f2")
        assert r["accepted"] is False and "signature" in r["reason"], r
        # a valid signature: accepted, and the identity is the verified one
        good = sign_command({"alarm_id": AID, "request_id": "g1", "duration_s": 30}, op_key,
                            by="operator1")
        send(console, "alarm/shelve", good, by_property="someone-else")
        [r] = replies(watch, "g1")
        assert r["accepted"] is True and r["by"] == "operator1", r
        assert wait_for(lambda: any(e.get("event") == "shelve" and e.get("by") == "operator1"
                                    for e in watch.json(f"/alarm/tank_anomaly/{AID}")), 10)
        # the very same message again (a replay): refused
        send(console, "alarm/shelve", good)
        assert wait_for(lambda: len(replies(watch, "g1", 0)) == 2, 10)
        replay = replies(watch, "g1")[1]
        assert replay["accepted"] is False and "replay" in replay["reason"], replay
        # an old command, correctly signed: refused as stale
        stale = sign_command({"alarm_id": AID, "request_id": "s1"}, op_key, by="operator1",
                             now_s=time.time() - 120)
        send(console, "alarm/unshelve", stale)
        [r] = replies(watch, "s1")
        assert r["accepted"] is False and "ts" in r["reason"], r
        # only the signed shelve changed the alarm; every refusal was counted by reason
        assert daemon.alarms[AID].shelved_until is not None
        assert not daemon.alarms[AID].out_of_service
        m = daemon.metrics
        assert m.value("procedge_commands_total", command="alarm/shelve",
                       result="accepted") == 1
        for reason in ("unsigned", "bad_signature", "replay", "stale"):
            assert m.value("procedge_command_auth_failures_total", reason=reason) == 1, reason
    finally:
        console.loop_stop()
        daemon.stop(drain_timeout_s=2)
        watch.close()


def test_out_of_service_is_capped_and_returns_over_mqtt(tmp_path: Path, broker, bundles):
    """out_of_service without a duration (or with one too long) is capped at
    ``alarms.max_out_of_service_s`` and the alarm returns to service by itself."""
    config = edge_config(tmp_path, broker.port, bundles, alarms={"max_out_of_service_s": 1.5})
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    daemon.start()
    watch = Collector(broker.port, ["edge/gwtest/#", f"{UNS}/alarm/#"], client_id="watch")
    console = commander(broker.port)
    events = f"/alarm/tank_anomaly/{AID}"

    def returned(count: int) -> bool:
        return sum(e.get("event") == "return_to_service" and e.get("by") ==
                   "out-of-service-timer" for e in watch.json(events)) >= count

    try:
        assert daemon.subscribed.wait(10)
        send(console, "alarm/out_of_service", {"alarm_id": AID, "request_id": "o1",
                                               "by": "operator1"})
        [r] = replies(watch, "o1")
        assert r["accepted"] is True and "1.5" in r["reason"], r
        assert wait_for(lambda: daemon.alarms[AID].out_of_service, 5)
        assert wait_for(lambda: returned(1), 10)
        assert not daemon.alarms[AID].out_of_service
        assert wait_for(lambda: watch.json(events + "/state")[-1]["state"] == "normal", 5)
        send(console, "alarm/out_of_service", {"alarm_id": AID, "request_id": "o2",
                                               "duration_s": 86400, "by": "operator1"})
        [r] = replies(watch, "o2")
        assert r["accepted"] is True and "capped" in r["reason"], r
        assert wait_for(lambda: returned(2), 10)
    finally:
        console.loop_stop()
        daemon.stop(drain_timeout_s=2)
        watch.close()
