"""OPC UA input (`opcua:`): asyncua's own server on a loopback port, the real daemon over a
real Mosquitto, a real tiny bundle in LiteRT. What the daemon publishes from OPC UA values
must be exactly what the same samples give over MQTT (:func:`reference_events`)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from edge_runtime.config import EdgeConfig, OpcUaConfig
from edge_runtime.daemon import EdgeDaemon
from edge_runtime.inputs.opcua import BAD, GOOD, UNCERTAIN, OpcUaChange, judge, severity
from edge_runtime.validation import ConfigError
from tests.daemon_support import (
    UNS,
    Collector,
    alarm_events,
    check_same_events,
    edge_config,
    labelled_run,
    reference_events,
    wait_for,
    write_config,
)
from tests.opcua_support import OpcUaTestServer, make_certificate

TAGS = ["flow_in", "temperature", "heater_power", "level", "pressure"]
BAD_SENSOR = 0x808B0000  # BadSensorFailure
UNCERTAIN_LAST = 0x40900000  # UncertainLastUsableValue


def opcua_section(server: OpcUaTestServer, **extra) -> dict:
    return {"endpoint": server.endpoint, "publishing_interval_ms": 50,
            "reconnect_min_s": 0.2, "reconnect_max_s": 1.0,
            "nodes": {server.node_id(t): t for t in TAGS}} | extra


def test_config_names_bad_node_ids_and_endpoints(tmp_path: Path, monkeypatch):
    with pytest.raises(ValueError, match=r"not OPC UA NodeIds: \['TT101'\]"):
        OpcUaConfig(endpoint="opc.tcp://plc:4840/", nodes={"TT101": "temperature"})
    with pytest.raises(ValueError, match="opc.tcp://host:4840/path"):
        OpcUaConfig(endpoint="http://plc:4840/", nodes={"ns=2;s=TT101": "temperature"})
    with pytest.raises(ValueError, match="needs `certificate` and `private_key`"):
        OpcUaConfig(endpoint="opc.tcp://plc:4840", nodes={"ns=2;i=7": "t"},
                    security={"policy": "Basic256Sha256"})
    ok = OpcUaConfig(endpoint="opc.tcp://plc:4840", nodes={
        "ns=2;s=TT101": "a", "i=2258": "b", "ns=3;g=09087e75-8e5e-499b-954f-f2a9603db28a": "c"})
    assert len(ok.nodes) == 3
    from edge_runtime.config import check_files, load_edge_config

    config = write_config(tmp_path / "edge.yaml", edge_config(
        tmp_path, 1883, {"m": tmp_path}, opcua={
            "endpoint": "opc.tcp://plc:4840", "nodes": {"ns=2;s=a": "a"},
            "security": {"policy": "Basic256Sha256", "certificate": "client.pem",
                         "private_key": "client-key.pem"}}))
    with pytest.raises(ConfigError, match=r"opcua\.security\.certificate: .*client\.pem"):
        check_files(load_edge_config(config), config)
    monkeypatch.setattr("edge_runtime.config.find_spec", lambda name: None)  # a gateway
    with pytest.raises(ConfigError, match=r"needs asyncua.*\.\[edge,opcua\]"):  # without it
        check_files(load_edge_config(config), config)


def test_status_value_and_time_rules():
    """Bad always refused, Uncertain unless accepted; SourceTimestamp first."""
    config = OpcUaConfig(endpoint="opc.tcp://x:4840", nodes={"ns=2;s=a": "a"})
    now = time.time()

    def change(value=1.5, status=0, source=now - 10, server=now - 5):
        return OpcUaChange("$opcua/ns=2;s=a", b"", now, tag="a", value=value, status=status,
                           source_s=source, server_s=server)

    assert [severity(s) for s in (0, UNCERTAIN_LAST, BAD_SENSOR)] == [GOOD, UNCERTAIN, BAD]
    assert judge(change(), config) == (now - 10, 1.5)
    assert judge(change(source=None), config) == (now - 5, 1.5)
    assert judge(change(source=None, server=None), config) == (now, 1.5)
    assert judge(change(), config.model_copy(update={"time": "server"})) == (now - 5, 1.5)
    assert judge(change(status=BAD_SENSOR), config) == "opcua_bad_status"
    assert judge(change(status=UNCERTAIN_LAST), config) == "opcua_uncertain_status"
    accepting = config.model_copy(update={"accept_uncertain": True})
    assert judge(change(status=UNCERTAIN_LAST), accepting) == (now - 10, 1.5)
    assert judge(change(value="7"), config) == "not_a_number"
    assert judge(change(value=True), config) == "not_a_number"
    assert judge(change(value=float("nan")), config) == "not_finite"
    assert judge(change(source=now + 2 * 86_400), config) == "timestamp_out_of_range"


def test_opcua_values_drive_the_model_and_its_alarms(bundles, broker, tmp_path: Path):
    """A labelled run written to the server's variables with source timestamps: the daemon
    publishes the same inference results and alarm events as the same samples over MQTT; a
    value with a Bad status is counted and not used (the reference never gets it)."""
    run = labelled_run(240)
    col = {t: i for i, t in enumerate(run.tag_names)}
    bad_step = 100  # temperature at this step: Bad status, a wild value that must not count
    items, writes = [], []
    for k, (ts, row) in enumerate(zip(run.timestamps, run.values, strict=True)):
        for tag in TAGS:
            value = round(float(row[col[tag]]), 6)
            if tag == "temperature" and k == bad_step:
                writes.append((tag, 1000.0, float(ts), BAD_SENSOR))
                continue
            writes.append((tag, value, float(ts), 0))
            items.append((tag, json.dumps({"v": value, "ts": float(ts) * 1000}).encode()))
    server = OpcUaTestServer(TAGS)
    server.start()
    models = {"tank_anomaly": bundles["tank_anomaly"]}
    # a publish carries each node's queued changes one node after the other: a burst of
    # data time beyond the lateness would finalise steps before the last node's samples came
    lateness = {"allowed_lateness_s": 600}
    config = edge_config(tmp_path, broker.port, models, opcua=opcua_section(server),
                         event_time=lateness)
    reference = edge_config(tmp_path, broker.port, models, event_time=lateness)
    expected, expected_inf = reference_events(reference, tmp_path, items)
    assert len(expected) >= 2, "the labelled run should raise (and clear) the alarm"
    collector = Collector(broker.port, [f"{UNS}/alarm/#", f"{UNS}/inference/#"])
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    daemon.start()
    try:
        assert wait_for(lambda: daemon.metrics.value("procedge_opcua_connected") == 1, 20)
        chunk = 10 * len(TAGS)  # 10 steps per burst: within the monitored items' queues
        for i in range(0, len(writes), chunk):
            server.write_many(writes[i:i + chunk])
            time.sleep(0.1)
        want = {(m["ts"], m["score"]) for m in expected_inf}

        def got() -> set:
            return {(m["ts"], m["score"]) for m in collector.json("/inference/tank_anomaly")}

        assert wait_for(lambda: want <= got(), 60), (len(want), sorted(want - got())[:2])
        want_ids = {e["event_id"] for e in expected}
        assert wait_for(lambda: want_ids <= {e["event_id"] for e in alarm_events(collector)},
                        30)
        check_same_events(alarm_events(collector), expected)
        # the written one, and each node's first notification (waiting for initial data)
        assert daemon.metrics.value("procedge_messages_rejected_total",
                                    reason="opcua_bad_status") == 1 + len(TAGS)
        assert daemon.metrics.value("procedge_messages_rejected_total", reason="late") == 0
        assert daemon.metrics.value("procedge_opcua_nodes_refused_total") == 0
    finally:
        collector.close()
        daemon.stop(drain_timeout_s=2)
        server.close()


def test_unknown_node_is_named_and_the_others_still_run(bundles, broker, tmp_path: Path,
                                                        caplog):
    server = OpcUaTestServer(TAGS)
    server.start()
    section = opcua_section(server)
    section["nodes"]["ns=2;s=NoSuchTag"] = "level"
    config = edge_config(tmp_path, broker.port, {"tank_anomaly": bundles["tank_anomaly"]},
                         opcua=section)
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    caplog.set_level(logging.ERROR, logger="procedge.edge")
    daemon.start()
    try:
        assert wait_for(lambda: daemon.metrics.value("procedge_opcua_connected") == 1, 20)
        assert daemon.metrics.value("procedge_opcua_nodes_refused_total") == 1
        assert any("ns=2;s=NoSuchTag" in r.getMessage() and "BadNodeIdUnknown" in r.getMessage()
                   and "tag level" in r.getMessage() for r in caplog.records), caplog.text
        before = daemon.metrics.value("procedge_messages_total")
        now = time.time()
        server.write("temperature", 21.5, now - 1)
        server.write("temperature", 21.5, now)  # unchanged value, new reading: a sample too
        assert wait_for(lambda: daemon.metrics.value("procedge_messages_total") == before + 2,
                        10)
        time.sleep(0.5)
        assert daemon.metrics.value("procedge_messages_total") == before + 2
    finally:
        daemon.stop(drain_timeout_s=2)
        server.close()


def test_server_gone_and_back_reconnects_and_is_counted(bundles, broker, tmp_path: Path):
    server = OpcUaTestServer(TAGS)
    server.start()
    config = edge_config(tmp_path, broker.port, {"tank_anomaly": bundles["tank_anomaly"]},
                         opcua=opcua_section(server))
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    daemon.start()
    metric = daemon.metrics.value
    try:
        assert wait_for(lambda: metric("procedge_opcua_connected") == 1, 20)
        server.stop()
        assert wait_for(lambda: metric("procedge_opcua_disconnects_total") == 1, 20)
        assert metric("procedge_opcua_connected") == 0
        assert daemon.health()[1]["opcua"] is False  # reported ...
        assert daemon.health()[0]  # ... without making the daemon unhealthy
        assert wait_for(lambda: metric("procedge_opcua_connect_failures_total") >= 1, 10)
        server.start()  # same port, same node ids
        assert wait_for(lambda: metric("procedge_opcua_connects_total") == 2, 20)
        assert metric("procedge_opcua_connected") == 1 and daemon.health()[1]["opcua"]
        before = metric("procedge_messages_total")
        server.write("pressure", 1.25, time.time())  # values flow again after the reconnect
        assert wait_for(lambda: metric("procedge_messages_total") > before, 10)
    finally:
        daemon.stop(drain_timeout_s=2)
        server.close()


def test_basic256sha256_with_certificates(bundles, broker, tmp_path: Path):
    """A server offering only Basic256Sha256 SignAndEncrypt: the daemon with its certificate
    and key (and the server's pinned) gets the values; one configured without security is
    refused at every attempt, counted."""
    server_cert, server_key = make_certificate(tmp_path, "server", "urn:freeopcua:python:server",
                                               server=True)
    client_cert, client_key = make_certificate(tmp_path, "gateway", "urn:procedge:gw", False)
    server = OpcUaTestServer(TAGS, secure=(server_cert, server_key))
    server.start()
    models = {"tank_anomaly": bundles["tank_anomaly"]}
    secure = opcua_section(server, security={
        "policy": "Basic256Sha256", "certificate": str(client_cert),
        "private_key": str(client_key), "server_certificate": str(server_cert)})
    plain = EdgeDaemon(EdgeConfig.model_validate(edge_config(
        tmp_path, broker.port, models, opcua=opcua_section(server),
        mqtt={"client_id": "procedge-plain"}, outbox={"path": str(tmp_path / "plain.sqlite")})))
    daemon = EdgeDaemon(EdgeConfig.model_validate(edge_config(
        tmp_path, broker.port, models, opcua=secure)))
    plain.start()
    daemon.start()
    try:
        assert wait_for(lambda: daemon.metrics.value("procedge_opcua_connected") == 1, 30)
        before = daemon.metrics.value("procedge_messages_total")
        server.write("level", 1.5, time.time())
        assert wait_for(lambda: daemon.metrics.value("procedge_messages_total") > before, 10)
        assert wait_for(lambda: plain.metrics.value(
            "procedge_opcua_connect_failures_total") >= 2, 20)
        assert plain.metrics.value("procedge_opcua_connects_total") == 0
    finally:
        plain.stop(drain_timeout_s=1)
        daemon.stop(drain_timeout_s=2)
        server.close()


def test_commented_sample_in_gateway_yaml_is_a_valid_section():
    import yaml

    from tests.daemon_support import ROOT

    lines = (ROOT / "deploy/gateway.yaml").read_text().splitlines()
    start = lines.index("# opcua:")
    block = []
    for line in lines[start:]:
        if not line.startswith("# "):
            break
        block.append(line[2:])
    section = yaml.safe_load("\n".join(block))["opcua"]
    config = OpcUaConfig.model_validate(section)
    assert config.security.policy == "Basic256Sha256" and len(config.nodes) == 2
