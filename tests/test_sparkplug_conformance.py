"""Sparkplug B 3.0 conformance of the edge node and the Sparkplug input (issue 25): one test
per requirement procedge used to miss, each naming its tck-id. Pure parts (birth contents,
NDATA fields, alias resolution, outbox rows) with a recording stand-in for paho; QoS, the
MQTT 5 disconnect and the primary host's STATE against a real Mosquitto and the real daemon.
The interoperability test with an independent implementation is test_sparkplug_interop.py."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest

from edge_runtime.config import (
    EdgeConfig,
    MqttConfig,
    OutboxConfig,
    SparkplugInputConfig,
    SparkplugOutputConfig,
)
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.outbox import Message, Outbox
from edge_runtime.sparkplug import codec
from edge_runtime.sparkplug.catalogue import Catalogue, row_payload
from edge_runtime.sparkplug.inputs import SparkplugInput
from edge_runtime.sparkplug.node import SparkplugNode
from tests.daemon_support import UNS, edge_config, labelled_run, samples, wait_for

GROUP, PLC, DEVICE = "Plant1", "tankplc", "tank1"
ME = f"spBv1.0/{GROUP}/%s/gwtest"


class Recorder:
    """Stands in for the paho client where only the payloads are under test."""

    def __init__(self):
        self.sent: list[tuple[str, int, object]] = []

    def publish(self, topic, payload, qos=0, retain=False):
        self.sent.append((topic, qos, codec.decode(payload)))
        return mqtt.MQTTMessageInfo(len(self.sent))

    def unsubscribe(self, topic):
        return mqtt.MQTT_ERR_SUCCESS, 10_000 + len(self.sent)


class TwoMetrics:  # a catalogue as the node reads it
    types = {codec.BDSEQ: codec.INT64, codec.REBIRTH: codec.BOOLEAN,
             "m/score": codec.DOUBLE, "m/version": codec.STRING}
    aliases = {codec.BDSEQ: 1, "m/score": 2, "m/version": 3}


def node_for(tmp_path: Path, catalogue, **output) -> SparkplugNode:
    return SparkplugNode(SparkplugOutputConfig(group=GROUP, **output), "gw", MqttConfig(),
                         OutboxConfig(path=tmp_path / "o.sqlite", late_after_s=10), catalogue,
                         DaemonMetrics())


def metric(payload, name: str):
    return next(m for m in payload.metrics if m.name == name)


# -- 1. tck-id-operational-behavior-data-commands-rebirth-name-aliases ------------------------
def test_rebirth_metric_is_born_without_an_alias_and_commanded_by_name(tmp_path: Path):
    catalogue = Catalogue({}, lambda kind, **fields: f"x/{kind}")
    assert codec.REBIRTH not in catalogue.aliases and catalogue.aliases[codec.BDSEQ] == 1
    node = node_for(tmp_path, catalogue)
    client = Recorder()
    node._publish_birth(client)
    (topic, _, birth), = client.sent
    rebirth = metric(birth, codec.REBIRTH)
    assert topic == f"spBv1.0/{GROUP}/NBIRTH/gw" and birth.seq == 0
    assert not rebirth.HasField("alias")
    assert rebirth.datatype == codec.BOOLEAN and rebirth.boolean_value is False
    assert metric(birth, codec.BDSEQ).HasField("alias")  # the others keep theirs
    node._on_message(None, None, SimpleNamespace(topic=f"spBv1.0/{GROUP}/NCMD/gw",
                                                 payload=codec.rebirth_request(1)))
    assert node.rebirth.is_set()
    node.outbox.close()


# -- 4. tck-id-payloads-metric-datatype-not-req; 6. last values keep their capture time -----
def test_ndata_without_datatype_and_rebirth_keeps_capture_times(tmp_path: Path):
    node = node_for(tmp_path, TwoMetrics())
    node.outbox.put([Message("x", row_payload(1000, [["m/score", 0.5]]), is_json=False),
                     Message("x", row_payload(2000, [["m/version", "v2"]]), is_json=False)])
    client = Recorder()
    node.seq.birth()
    node._fill(client, 0)
    datas = [p for _, _, p in client.sent]
    assert [m.alias for p in datas for m in p.metrics] == [2, 3]
    assert not any(m.HasField("datatype") for p in datas for m in p.metrics)
    before = round(time.time() * 1000)
    node._publish_birth(client)
    birth = client.sent[-1][2]
    assert birth.timestamp >= before
    stamps = {m.name: m.timestamp for m in birth.metrics}
    assert stamps["m/score"] == 1000 and stamps["m/version"] == 2000  # not the birth time
    assert metric(birth, "m/score").double_value == 0.5
    assert stamps[codec.BDSEQ] >= before
    order = [m.timestamp for m in birth.metrics]  # tck-id-...-data-publish-nbirth-order
    assert order == sorted(order)
    assert all(m.HasField("datatype") for m in birth.metrics)  # the birth keeps them
    node.outbox.close()


# -- 7. DATA names that differ from the BIRTH: resolved by alias, counted -----------------
def test_data_names_unknown_to_the_birth_fall_back_to_the_alias():
    sp = SparkplugInput(SparkplugInputConfig.model_validate({"group": GROUP, "tags": [
        {"tag": "temperature", "node": PLC, "device": DEVICE, "metric": "TT101/PV"},
        {"tag": "pressure", "node": PLC, "device": DEVICE, "alias": 11}]}))
    now = time.time()
    ms = round(now * 1000) - 1000
    born = codec.Payload(timestamp=ms, seq=1)
    for name, alias in (("TT101/PV", 10), ("PT101/PV", 11)):
        born.metrics.add(name=name, alias=alias, datatype=codec.DOUBLE, timestamp=ms).is_null = True
    sp.handle(codec.topic(GROUP, "DBIRTH", PLC, DEVICE), born.SerializeToString(), now)
    data = codec.Payload(timestamp=ms, seq=2)
    for name, alias, value in (("Temperature", 10, 50.0), ("Pressure", 11, 1.5),
                               ("TT101/PV", 11, 2.5), ("Ghost", 99, 1.0)):
        m = data.metrics.add(name=name, alias=alias, timestamp=ms)
        m.double_value = value
    got = sp.handle(codec.topic(GROUP, "DDATA", PLC, DEVICE), data.SerializeToString(), now)
    # a known name wins over its alias (TT101/PV with alias 11 is the temperature)
    assert got.samples == {"temperature": [(ms / 1000, 50.0), (ms / 1000, 2.5)],
                           "pressure": [(ms / 1000, 1.5)]}
    assert got.alias_fallbacks == 2
    assert got.rejects == {"sparkplug_unknown_metric": 1}  # neither name nor alias born


# -- 3. tck-id-payloads-ncmd-qos: the outbox keeps a QoS per row -------------------------
def test_outbox_rows_keep_their_qos_and_old_files_are_migrated(tmp_path: Path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)  # the schema before rows had a QoS
    db.executescript("CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT"
                     " NULL, payload BLOB NOT NULL, retain INTEGER NOT NULL DEFAULT 0, priority"
                     " INTEGER NOT NULL, created_s REAL NOT NULL, is_json INTEGER NOT NULL"
                     " DEFAULT 1); INSERT INTO outbox (topic, payload, priority, created_s)"
                     " VALUES ('a', x'7b7d', 1, 1.0);")
    db.commit()
    db.close()
    outbox = Outbox(path)
    outbox.put([Message("b", b"{}", qos=0)])
    assert [(m.topic, m.qos) for m in outbox.peek(0, 10)] == [("a", 1), ("b", 0)]
    outbox.close()

    from edge_runtime.sparkplug.bridge import SparkplugBridge

    config = EdgeConfig.model_validate({"models": [{"name": "m", "bundle": "b"}], "sparkplug": {
        "input": {"group": GROUP, "tags": [{"tag": "level", "node": PLC, "metric": "x"}]}}})
    bridge = SparkplugBridge(config, DaemonMetrics(), {"m": SimpleNamespace(tags=["level"])},
                             lambda *a, **k: "")
    early = codec.Payload(timestamp=1, seq=1)
    early.metrics.add(alias=1, timestamp=1).double_value = 1.0
    _, out = bridge.handle(codec.topic(GROUP, "NDATA", PLC), early.SerializeToString(),
                           time.time())
    assert [(m.topic, m.qos) for m in out] == [(f"spBv1.0/{GROUP}/NCMD/{PLC}", 0)]


# -- against Mosquitto and the daemon ---------------------------------------------------------
class Spy:
    """A QoS 1 subscriber: what it receives carries min(publish QoS, 1), so the publisher's."""

    def __init__(self, port: int, protocol=mqtt.MQTTv311):
        self.got: list[tuple[str, int, bytes, float]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="spy",
                                  protocol=protocol)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("spBv1.0/#", qos=1)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def _on_message(self, client, userdata, message) -> None:
        with self.lock:
            self.got.append((message.topic, message.qos, message.payload, time.time()))

    def of(self, topic: str) -> list[tuple[int, object]]:
        with self.lock:
            return [(q, codec.decode(p)) for t, q, p, _ in self.got if t == topic]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def daemon_with(tmp_path: Path, port: int, bundles, **overrides):
    from edge_runtime.daemon import EdgeDaemon

    return EdgeDaemon(EdgeConfig.model_validate(edge_config(tmp_path, port, bundles,
                                                            **overrides)))


def feed_json(daemon, steps: int) -> None:
    from edge_runtime.daemon import Inbound

    for tag, payload in samples(labelled_run(steps)):
        daemon.inbox.put(Inbound(f"{UNS}/raw/{tag}", payload, time.time()))


# -- 2. tck-id-payloads-nbirth-qos, -ndata-qos; 3. -ncmd-qos ---------------------------------
def test_births_data_and_rebirth_requests_go_out_at_qos0(tmp_path: Path, broker, bundles):
    spy = Spy(broker.port)
    daemon = daemon_with(tmp_path, broker.port, bundles, sparkplug={
        "input": {"group": GROUP, "tags": [{"tag": "level", "node": PLC, "metric": "LT101/PV"}]},
        "output": {"group": GROUP}})
    plc = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=PLC)
    plc.connect("127.0.0.1", broker.port)
    plc.loop_start()
    try:
        daemon.start()
        assert wait_for(lambda: spy.of(ME % "NBIRTH"), 20)
        feed_json(daemon, 120)
        assert wait_for(lambda: len(spy.of(ME % "NDATA")) > 30, 30)
        # DATA before its BIRTH: the daemon asks for a rebirth (through its own outbox)
        early = codec.Payload(timestamp=round(time.time() * 1000), seq=1)
        early.metrics.add(alias=1, timestamp=early.timestamp).double_value = 1.0
        plc.publish(codec.topic(GROUP, "NDATA", PLC), early.SerializeToString(), qos=1)
        ncmd = f"spBv1.0/{GROUP}/NCMD/{PLC}"
        assert wait_for(lambda: spy.of(ncmd), 20)
        # the QoS 0 rows leave the Sparkplug outbox once a later fence is acknowledged
        assert wait_for(lambda: daemon.sparkplug.node.outbox.depth == 0, 20)
        assert wait_for(lambda: daemon.outbox.depth == 0, 20)
        births, datas = spy.of(ME % "NBIRTH"), spy.of(ME % "NDATA")
        assert {q for q, _ in births} == {0} and {q for q, _ in datas} == {0}
        assert [q for q, _ in spy.of(ncmd)] == [0]
        assert metric(spy.of(ncmd)[0][1], codec.REBIRTH).boolean_value is True
        seqs = [p.seq for _, p in datas]
        assert seqs[0] == 1 and all(b == (a + 1) % 256 for a, b in zip(seqs, seqs[1:],
                                                                         strict=False))
    finally:
        daemon.stop(drain_timeout_s=2)
        plc.loop_stop()
        spy.close()


def test_qos1_stays_available_as_a_documented_option(tmp_path: Path, broker, bundles):
    spy = Spy(broker.port)
    daemon = daemon_with(tmp_path, broker.port, bundles,
                         sparkplug={"output": {"group": GROUP, "qos": 1}})
    try:
        daemon.start()
        assert wait_for(lambda: spy.of(ME % "NBIRTH"), 20)
        feed_json(daemon, 60)
        assert wait_for(lambda: len(spy.of(ME % "NDATA")) > 10, 30)
        assert {q for q, _ in spy.of(ME % "NDATA")} == {1}
        assert wait_for(lambda: daemon.sparkplug.node.outbox.depth == 0, 20)
    finally:
        daemon.stop(drain_timeout_s=2)
        spy.close()


# -- 5. tck-id-payloads-ndeath-will-message-publisher-disconnect-mqtt50 ---------------------
def test_mqtt5_graceful_stop_disconnects_with_the_will(tmp_path: Path, broker, bundles):
    """MQTT 5: DISCONNECT with reason code 0x04, so the broker publishes the NDEATH will,
    registered at CONNECT (before the NBIRTH), and no second, explicit NDEATH is sent."""
    spy = Spy(broker.port, protocol=mqtt.MQTTv5)
    daemon = daemon_with(tmp_path, broker.port, bundles, mqtt={"protocol": "5"},
                         sparkplug={"output": {"group": GROUP}})
    try:
        daemon.start()
        assert wait_for(lambda: spy.of(ME % "NBIRTH"), 20)
        _, birth = spy.of(ME % "NBIRTH")[0]
        time.sleep(1.1)  # an NDEATH written at stop time would be stamped > 1 s later
    finally:
        daemon.stop(drain_timeout_s=2)
    try:
        assert wait_for(lambda: spy.of(ME % "NDEATH"), 10)
        time.sleep(0.5)  # room for a second one, had it been sent
        (qos, death), = spy.of(ME % "NDEATH")
        assert qos == 1  # tck-id-payloads-ndeath-will-message-qos
        assert metric(death, codec.BDSEQ).long_value == metric(birth, codec.BDSEQ).long_value
        assert death.timestamp <= birth.timestamp  # the will, not a publish at stop time
        assert not death.HasField("seq")  # tck-id-payloads-ndeath-seq
    finally:
        spy.close()


# -- 8. primary host STATE (tck-id-message-flow-edge-node-birth-publish-phid-*) --------------
def test_edge_node_waits_for_its_primary_host_and_rebirths_when_it_returns(
        tmp_path: Path, broker, bundles):
    spy = Spy(broker.port)
    host = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="scada")
    host.connect("127.0.0.1", broker.port)
    host.loop_start()

    def state(online: bool, ts: int) -> None:
        host.publish("spBv1.0/STATE/scada", json.dumps({"online": online, "timestamp": ts}),
                     qos=1, retain=True).wait_for_publish(5)

    daemon = daemon_with(tmp_path, broker.port, bundles,
                         sparkplug={"output": {"group": GROUP, "primary_host": "scada"}})
    t0 = round(time.time() * 1000)
    try:
        state(False, t0 - 10)  # the host's will, retained from an earlier run
        daemon.start()
        feed_json(daemon, 60)  # results keep coming meanwhile: they wait in the outbox
        assert wait_for(lambda: daemon.sparkplug.node.outbox.depth > 5, 20)
        time.sleep(1.0)
        assert not spy.of(ME % "NBIRTH") and not spy.of(ME % "NDATA")  # waits for the host
        state(True, t0)
        assert wait_for(lambda: spy.of(ME % "NBIRTH"), 10)
        first = metric(spy.of(ME % "NBIRTH")[0][1], codec.BDSEQ).long_value
        assert wait_for(lambda: spy.of(ME % "NDATA"), 10)  # the backlog follows the birth
        state(False, t0 - 5)  # older than the last online STATE: ignored
        time.sleep(1.0)
        assert not spy.of(ME % "NDEATH")
        state(False, t0 + 1)  # the host went offline: NDEATH, session over
        assert wait_for(lambda: spy.of(ME % "NDEATH"), 10)
        assert metric(spy.of(ME % "NDEATH")[0][1], codec.BDSEQ).long_value == first
        time.sleep(1.5)  # reconnected, but waits again (the retained STATE says offline)
        assert len(spy.of(ME % "NBIRTH")) == 1
        state(True, t0 + 2)
        assert wait_for(lambda: len(spy.of(ME % "NBIRTH")) == 2, 10)
        second = spy.of(ME % "NBIRTH")[1][1]
        assert metric(second, codec.BDSEQ).long_value == (first + 1) % 256 and second.seq == 0
    finally:
        daemon.stop(drain_timeout_s=2)
        host.publish("spBv1.0/STATE/scada", b"", qos=1, retain=True)
        host.loop_stop()
        spy.close()


@pytest.mark.parametrize("bad", [b"online", b'{"online": "yes", "timestamp": 1}', b"{}"])
def test_malformed_state_is_counted_not_trusted(tmp_path: Path, bad: bytes):
    node = node_for(tmp_path, TwoMetrics(), primary_host="scada")
    node._on_message(None, None, SimpleNamespace(topic="spBv1.0/STATE/scada", payload=bad))
    assert node.host_online is False
    assert node.metrics.value("procedge_messages_rejected_total",
                              reason="sparkplug_bad_state") == 1
    node.outbox.close()
