"""Sparkplug B in and out, against a real Mosquitto: a simulated edge node (births, then DATA by
alias) feeds the daemon, which publishes the same alarms as from JSON inputs and is itself an
edge node (NBIRTH with bdSeq, NDATA seq wrapping at 256, rebirth on NCMD, NDEATH as its will).
Pure parts (sequencer, codec, birth tracking, send-time stamping) are tested without MQTT."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge_runtime.config import SparkplugInputConfig
from edge_runtime.outbox import Message
from edge_runtime.payloads import parse_timestamp
from edge_runtime.sparkplug import codec
from edge_runtime.sparkplug.inputs import SparkplugInput
from edge_runtime.sparkplug.node import Sequencer
from procedge.broker import free_port
from tests.daemon_support import (
    UNS,
    edge_config,
    healthy,
    labelled_run,
    process_alarm_events,
    reference_events,
    samples,
    start_daemon_process,
    wait_for,
    write_config,
)

GROUP, PLC, DEVICE = "Plant1", "tankplc", "tank1"
# the PLC's metrics: node-level ones mapped by name, the device's by alias
NODE_METRICS = {"flow_in": ("FT101/PV", 1), "level": ("LT101/PV", 2)}
DEVICE_METRICS = {"temperature": ("TT101/PV", 10), "pressure": ("PT101/PV", 11),
                  "heater_power": ("EH101/kW", 12)}
INPUT = {"group": GROUP, "tags": [
    *({"tag": t, "node": PLC, "metric": name} for t, (name, _) in NODE_METRICS.items()),
    *({"tag": t, "node": PLC, "device": DEVICE, "alias": a}
      for t, (_, a) in DEVICE_METRICS.items())]}


# -- pure logic ------------------------------------------------------------------------------
def test_sequencer_counts_from_birth_and_wraps_at_256():
    seq = Sequencer()
    assert seq.birth() == 0
    values = [seq.next() for _ in range(300)]
    assert values[:3] == [1, 2, 3] and values[254] == 255 and values[255] == 0
    assert values[256] == 1 and max(values) == 255
    seq.next()
    assert seq.birth() == 0 and seq.next() == 1


def test_wire_format_matches_the_sparkplug_field_numbers():
    """Bytes computed by hand from sparkplug_b.proto's field numbers: the generated classes
    really are that schema (timestamp=1, metrics=2, seq=3; alias=2, datatype=4,
    double_value=13, boolean_value=14)."""
    payload = codec.Payload(timestamp=1, seq=255)
    m = payload.metrics.add(alias=3, datatype=codec.DOUBLE)
    m.double_value = 1.5
    assert payload.SerializeToString() == (
        b"\x08\x01" + b"\x12\x0d" + b"\x10\x03" + b"\x20\x0a" + b"\x69" +
        bytes.fromhex("000000000000f83f") + b"\x18\xff\x01")
    with pytest.raises(codec.SparkplugError, match="sparkplug_malformed"):
        codec.decode(b"\x12\x05\x0a\x09")  # a metric claiming more bytes than there are


def test_signed_and_special_values():
    m = codec.Metric()
    m.int_value = 0xFFFFFFFF  # Int8 -1 sign-extended to 32 bits (Tahu)
    assert codec.number(m, codec.INT8) == -1
    m.int_value = 0xFE  # Int8 -2 in its own 8 bits
    assert codec.number(m, codec.INT8) == -2
    m.long_value = (1 << 64) - 5
    assert codec.number(m, codec.INT64) == -5
    m.boolean_value = True
    assert codec.number(m, codec.BOOLEAN) == 1.0
    m.double_value = float("nan")
    with pytest.raises(codec.SparkplugError, match="not_finite"):
        codec.number(m, codec.DOUBLE)
    m.string_value = "12"
    with pytest.raises(codec.SparkplugError, match="not_a_number"):
        codec.number(m, codec.STRING)
    m.is_null = True
    with pytest.raises(codec.SparkplugError, match="sparkplug_null"):
        codec.number(m, codec.DOUBLE)
    with pytest.raises(codec.SparkplugError, match="sparkplug_bad_topic"):
        codec.parse_topic("spBv1.0/g/NDATA/node/extra")  # a device on a node message type


def birth(metrics: dict[str, tuple[str, int]], ts_ms: int, bd_seq: int | None = None) -> bytes:
    payload = codec.Payload(timestamp=ts_ms, seq=0)
    if bd_seq is not None:
        m = payload.metrics.add(name=codec.BDSEQ, datatype=codec.INT64)
        m.long_value = bd_seq
        m = payload.metrics.add(name=codec.REBIRTH, datatype=codec.BOOLEAN)
        m.boolean_value = False
    for name, alias in metrics.values():
        m = payload.metrics.add(name=name, alias=alias, datatype=codec.DOUBLE, timestamp=ts_ms)
        m.is_null = True  # no current value yet
    return payload.SerializeToString()


def data(values: dict[int, float], ts_ms: int, seq: int) -> bytes:
    payload = codec.Payload(timestamp=ts_ms, seq=seq)
    for alias, value in values.items():
        m = payload.metrics.add(alias=alias, timestamp=ts_ms)
        m.double_value = value
    return payload.SerializeToString()


def test_births_resolve_aliases_and_data_before_birth_is_refused():
    sp = SparkplugInput(SparkplugInputConfig.model_validate(INPUT))
    now = time.time()
    ms = round(now * 1000) - 5000
    dtopic = codec.topic(GROUP, "DDATA", PLC, DEVICE)
    early = sp.handle(dtopic, data({10: 50.0}, ms, 1), now)
    assert early.rejects == {"sparkplug_before_birth": 1} and not early.samples
    assert early.rebirth_topic == f"spBv1.0/{GROUP}/NCMD/{PLC}"
    again = sp.handle(dtopic, data({10: 50.0}, ms, 2), now)
    assert again.rejects == {"sparkplug_before_birth": 1} and not again.rebirth_topic  # limited
    sp.handle(codec.topic(GROUP, "NBIRTH", PLC), birth(NODE_METRICS, ms, bd_seq=7), now)
    sp.handle(codec.topic(GROUP, "DBIRTH", PLC, DEVICE), birth(DEVICE_METRICS, ms), now)
    got = sp.handle(dtopic, data({10: 50.0, 11: 101.5, 99: 1.0}, ms, 3), now)
    assert got.samples == {"temperature": [(ms / 1000, 50.0)], "pressure": [(ms / 1000, 101.5)]}
    assert got.rejects == {"sparkplug_unknown_metric": 1}  # alias 99 was never born
    node = sp.handle(codec.topic(GROUP, "NDATA", PLC), data({2: 1.25}, ms, 4), now)
    assert node.samples == {"level": [(ms / 1000, 1.25)]}  # mapped by name, sent by alias
    stale = codec.Payload()
    stale.metrics.add(name=codec.BDSEQ, datatype=codec.INT64).long_value = 6
    sp.handle(codec.topic(GROUP, "NDEATH", PLC), stale.SerializeToString(), now)
    assert sp.handle(dtopic, data({10: 1.0}, ms, 5), now).samples  # old will: still born
    stale.metrics[0].long_value = 7
    sp.handle(codec.topic(GROUP, "NDEATH", PLC), stale.SerializeToString(), now)
    assert sp.handle(dtopic, data({10: 1.0}, ms, 6), now).rejects == {
        "sparkplug_before_birth": 1}  # the node died: its devices' births are gone too
    junk = sp.handle(dtopic, b"\xff\xff\xff", now)
    assert junk.rejects == {"sparkplug_malformed": 1}


def test_rows_are_stamped_when_sent_historical_when_late(tmp_path: Path):
    """seq comes from the sender at publish time; a row older than late_after_s is historical."""
    from edge_runtime.config import MqttConfig, OutboxConfig, SparkplugOutputConfig
    from edge_runtime.metrics import DaemonMetrics
    from edge_runtime.sparkplug.catalogue import row_payload
    from edge_runtime.sparkplug.node import SparkplugNode

    class Catalogue:  # two metrics are enough here
        types = {codec.BDSEQ: codec.INT64, "m/score": codec.DOUBLE}
        aliases = {codec.BDSEQ: 1, "m/score": 2}

    class Client:  # records what would go on the wire
        def __init__(self):
            self.sent = []

        def publish(self, topic, payload, qos):
            self.sent.append(codec.decode(payload))
            return mqtt.MQTTMessageInfo(len(self.sent))

        def unsubscribe(self, topic):  # the QoS 0 fence
            return mqtt.MQTT_ERR_SUCCESS, 1000

    node = SparkplugNode(SparkplugOutputConfig(group="G"), "gw", MqttConfig(),
                         OutboxConfig(path=tmp_path / "o.sqlite", late_after_s=10), Catalogue(),
                         DaemonMetrics())
    now = time.time()
    node.outbox.put([Message("x", row_payload(1000, [["m/score", 0.5]]), created_s=now - 60,
                             is_json=False),
                     Message("x", row_payload(2000, [["m/score", 0.7], ["gone", 1]]),
                             is_json=False),
                     Message("x", row_payload(1500, [["m/score", 0.6]]), is_json=False)])
    client = Client()
    node.seq.birth()
    assert node._fill(client, 0) == 3
    old, new, older = client.sent
    assert (old.seq, new.seq, older.seq) == (1, 2, 3)
    assert old.metrics[0].is_historical and not new.metrics[0].HasField("is_historical")
    assert [(m.alias, m.double_value, m.timestamp) for m in new.metrics] == [(2, 0.7, 2000)]
    assert not any(m.HasField("datatype") for m in [*old.metrics, *new.metrics])  # after birth
    # historical values do not become current, nor does one older than the held one
    assert node.last == {"m/score": (0.7, 2000)}
    node.outbox.close()


# -- against Mosquitto -----------------------------------------------------------------------
class Watch:
    """Records every Sparkplug message in arrival order (decoded) and the JSON outputs."""

    def __init__(self, port: int):
        self.messages: list[tuple[str, object]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="spwatch")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([("spBv1.0/#", 1), (f"{UNS}/#", 1)])
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        body = (codec.decode(message.payload) if message.topic.startswith("spBv1.0/")
                else json.loads(message.payload))
        with self.lock:
            self.messages.append((message.topic, body))

    def of(self, topic: str) -> list:
        with self.lock:
            return [b for t, b in self.messages if t == topic]

    def under(self, fragment: str) -> list:
        with self.lock:
            return [b for t, b in self.messages if fragment in t]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def metric(payload, name: str):
    return next(m for m in payload.metrics if m.name == name)


def scrape(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name))


def test_sparkplug_in_and_out_against_mosquitto(tmp_path: Path, broker, bundles):
    http = free_port()
    config = edge_config(tmp_path, broker.port, bundles, metrics_port=http)
    config["sparkplug"] = {"input": INPUT, "output": {"group": GROUP}}
    run = labelled_run(400)
    expected, expected_inf = reference_events(
        {k: v for k, v in config.items() if k != "sparkplug"}, tmp_path, samples(run))
    # without the advisory drift alarms: they are published as JSON only, not in Sparkplug
    expected = process_alarm_events(expected)
    watch = Watch(broker.port)
    plc = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=PLC)
    plc.connect("127.0.0.1", broker.port)
    plc.loop_start()
    daemon = start_daemon_process(write_config(tmp_path / "edge.yaml", config),
                                  tmp_path / "daemon.log")
    me = f"spBv1.0/{GROUP}/%s/gwtest"
    try:
        assert wait_for(lambda: watch.of(me % "NBIRTH"), 60), (tmp_path / "daemon.log").read_text()
        # NBIRTH comes from the edge node's own session: the inputs are subscribed by another
        assert wait_for(lambda: healthy(http), 30), (tmp_path / "daemon.log").read_text()
        nbirth = watch.of(me % "NBIRTH")[0]
        bd_seq = metric(nbirth, codec.BDSEQ).long_value
        assert nbirth.seq == 0 and metric(nbirth, codec.REBIRTH).boolean_value is False
        born = {m.name: (m.alias, m.datatype) for m in nbirth.metrics}
        assert born["tank_anomaly/score"][1] == codec.DOUBLE
        assert born["tank_forecast/forecast/level/1"][1] == codec.DOUBLE
        assert len({a for a, _ in born.values()}) == len(born)  # aliases unique

        # (b) DATA before BIRTH: counted, skipped, and a rebirth is requested
        ts = [round(float(t) * 1000) for t in run.timestamps]
        cols = {t: i for i, t in enumerate(run.tag_names)}
        dtopic = codec.topic(GROUP, "DDATA", PLC, DEVICE)
        plc.publish(dtopic, data({a: 1e6 for _, a in DEVICE_METRICS.values()}, ts[0], 0),
                    qos=1).wait_for_publish(5)
        assert wait_for(lambda: watch.of(f"spBv1.0/{GROUP}/NCMD/{PLC}"), 20)
        request = watch.of(f"spBv1.0/{GROUP}/NCMD/{PLC}")[0]
        assert metric(request, codec.REBIRTH).boolean_value is True

        # (a) births, then DATA by alias for the whole labelled run
        plc.publish(codec.topic(GROUP, "NBIRTH", PLC), birth(NODE_METRICS, ts[0], 0), qos=1)
        plc.publish(codec.topic(GROUP, "DBIRTH", PLC, DEVICE), birth(DEVICE_METRICS, ts[0]),
                    qos=1)
        def part(row, metrics):  # the JSON tests' values: rounded to 6 digits
            return {a: round(float(row[cols[t]]), 6) for t, (_, a) in metrics.items()}

        for k, row in enumerate(run.values):
            plc.publish(codec.topic(GROUP, "NDATA", PLC),
                        data(part(row, NODE_METRICS), ts[k], 2 * k % 256), qos=1)
            plc.publish(dtopic, data(part(row, DEVICE_METRICS), ts[k], (2 * k + 1) % 256), qos=1)
        events = f"{UNS}/alarm/tank_anomaly/tank_anomaly.anomaly"
        assert wait_for(lambda: len(watch.of(events)) >= len(expected), 60)
        assert wait_for(lambda: len(watch.under(f"{UNS}/inference/")) >= len(expected_inf), 30)
        # the same alarms as from the same samples sent as JSON; the early DATA was not used
        assert {e["event_id"] for e in watch.of(events)} == {e["event_id"] for e in expected}
        assert scrape(http, 'procedge_messages_rejected_total{reason="sparkplug_before_birth"}') \
            == 1

        # (c) our NDATA: seq continues 1, 2, ... from the NBIRTH and wraps after 255
        assert wait_for(lambda: len(watch.of(me % "NDATA")) >= len(expected_inf), 30)
        seqs = [p.seq for p in watch.of(me % "NDATA")]
        assert seqs[:3] == [1, 2, 3] and 0 in seqs
        assert all(b == (a + 1) % 256 for a, b in zip(seqs, seqs[1:], strict=False))
        by_alias = {a: n for n, (a, _) in born.items()}
        raised = [p for p in watch.of(me % "NDATA")
                  if any(by_alias[m.alias] == "tank_anomaly/alarm/event" and
                         m.string_value == "raise" for m in p.metrics)]
        assert len(raised) == sum(e["event"] == "raise" for e in expected)

        # rebirth on NCMD: NBIRTH again (seq 0, same bdSeq), then NDATA from 1
        cmd = codec.Payload(timestamp=ts[-1])
        cmd.metrics.add(name=codec.REBIRTH, datatype=codec.BOOLEAN).boolean_value = True
        plc.publish(me % "NCMD", cmd.SerializeToString(), qos=1).wait_for_publish(5)
        assert wait_for(lambda: len(watch.of(me % "NBIRTH")) == 2, 20)
        second = watch.of(me % "NBIRTH")[1]
        assert second.seq == 0 and metric(second, codec.BDSEQ).long_value == bd_seq
        assert metric(second, "tank_anomaly/score").HasField("double_value")  # last value

        # SIGKILL: the broker publishes our will, the NDEATH with the same bdSeq
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(10)
        assert wait_for(lambda: watch.of(me % "NDEATH"), 10)
        assert metric(watch.of(me % "NDEATH")[0], codec.BDSEQ).long_value == bd_seq
        # a restart is a new session: the next bdSeq
        daemon = start_daemon_process(tmp_path / "edge.yaml", tmp_path / "daemon.log")
        assert wait_for(lambda: len(watch.of(me % "NBIRTH")) == 3, 60)
        third = watch.of(me % "NBIRTH")[2]
        assert metric(third, codec.BDSEQ).long_value == (bd_seq + 1) % 256
        # a graceful stop says NDEATH itself (a clean DISCONNECT suppresses the will)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        assert wait_for(lambda: len(watch.of(me % "NDEATH")) == 2, 10)
        assert metric(watch.of(me % "NDEATH")[1], codec.BDSEQ).long_value == (bd_seq + 1) % 256
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
        plc.loop_stop()
        watch.close()


def test_config_mistakes_are_named():
    from types import SimpleNamespace

    from pydantic import ValidationError

    from edge_runtime.config import EdgeConfig
    from edge_runtime.metrics import DaemonMetrics
    from edge_runtime.sparkplug.bridge import SparkplugBridge

    base = {"models": [{"name": "m", "bundle": "b"}]}
    for bad, words in (({"tag": "a", "node": "n", "metric": "x", "alias": 1}, "exactly one"),
                       ({"tag": "a", "node": "n/x", "metric": "x"}, "one non-empty topic level"),
                       ({"tag": "a", "node": "n", "metric": "x", "colour": 1}, "colour")):
        with pytest.raises(ValidationError, match=words):
            EdgeConfig.model_validate(base | {"sparkplug": {"input": {"group": "G",
                                                                      "tags": [bad]}}})
    config = EdgeConfig.model_validate(base | {"sparkplug": {"input": {"group": "G", "tags": [
        {"tag": "level", "node": "n", "metric": "x"}]}}})
    with pytest.raises(ValueError, match=r"\['level'\] are inputs of no model"):
        SparkplugBridge(config, DaemonMetrics(), {"m": SimpleNamespace(tags=["flow"])},
                        lambda *a, **k: "")


def test_outage_drains_after_a_new_birth_with_fresh_seq(tmp_path: Path, bundles):
    """Broker down while results keep coming: they wait in the Sparkplug outbox and go out
    after the next session's NBIRTH (next bdSeq) with seq 1, 2, ... assigned when sent, the
    late ones flagged is_historical; no forecast/score is lost."""
    from edge_runtime.config import EdgeConfig
    from edge_runtime.daemon import EdgeDaemon, Inbound
    from tests.daemon_support import Collector, RestartableBroker

    # NBIRTH/NDATA are QoS 0: a watcher that reconnects after the node would miss the new
    # NBIRTH unless the broker queues QoS 0 for its persistent session
    broker = RestartableBroker(tmp_path, extra="queue_qos0_messages true")
    broker.start()
    config = edge_config(tmp_path, broker.port, bundles, sparkplug={"output": {"group": GROUP}})
    items = samples(labelled_run(200))
    _, expected_inf = reference_events({k: v for k, v in config.items() if k != "sparkplug"},
                                       tmp_path, items)
    watch = Collector(broker.port, ["spBv1.0/#"], client_id="spcollector")
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    me = f"spBv1.0/{GROUP}/%s/gwtest"

    def of(kind: str) -> list:
        with watch.lock:
            return [codec.decode(p) for t, p in watch.messages if t == me % kind]

    def feed(part: list[tuple[str, bytes]]) -> None:
        for tag, payload in part:
            daemon.inbox.put(Inbound(f"{UNS}/raw/{tag}", payload, time.time()))

    try:
        daemon.start()
        assert wait_for(lambda: of("NBIRTH"), 20)
        half = len(items) // 2
        feed(items[:half])
        assert wait_for(lambda: len(of("NDATA")) > 50, 30)
        broker.wait_saved()  # the watcher's session, as acknowledged, is on disk
        broker.stop(signal.SIGKILL)
        feed(items[half:])
        assert wait_for(lambda: daemon.sparkplug.node.outbox.depth > 50, 30)
        time.sleep(1.2)  # older than outbox.late_after_s (1 s): historical when sent
        broker.start()
        assert wait_for(lambda: daemon.sparkplug.node.outbox.depth == 0, 30)
        assert wait_for(lambda: len(of("NBIRTH")) == 2, 30)  # the watcher reconnects too
        births = of("NBIRTH")
        assert [metric(b, codec.BDSEQ).long_value for b in births] == [0, 1]
        want = {round(1000 * parse_timestamp(e["ts"])) for e in expected_inf}
        assert wait_for(lambda: want <= {m.timestamp for p in of("NDATA") for m in p.metrics},
                        10)  # nothing lost
        with watch.lock:  # the second session, in arrival order, after its NBIRTH
            order = [t for t, _ in watch.messages]
            tail = watch.messages[order.index(me % "NBIRTH", 1):]
        second = [codec.decode(p) for t, p in tail if t == me % "NDATA"]
        seqs = [p.seq for p in second]
        assert seqs[:3] == [1, 2, 3]
        assert all(b == (a + 1) % 256 for a, b in zip(seqs, seqs[1:], strict=False))
        assert all(m.is_historical for m in second[0].metrics)  # waited out the outage
        assert not any(m.is_historical for m in of("NDATA")[0].metrics)  # sent at once
    finally:
        daemon.stop(drain_timeout_s=2)
        watch.close()
        broker.cleanup()


def test_full_sparkplug_outbox_is_counted_in_the_metrics(tmp_path: Path, bundles):
    """Broker unreachable, outboxes bounded: the Sparkplug outbox's depth and evictions are on
    /metrics as the main outbox's are, each counted once."""
    from edge_runtime.config import EdgeConfig
    from edge_runtime.daemon import EdgeDaemon, Inbound

    config = edge_config(tmp_path, free_port(), bundles, outbox={"max_rows": 30},
                         sparkplug={"output": {"group": GROUP}})
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    items = samples(labelled_run(200))
    for k in range(0, len(items), 50):
        daemon._process([Inbound(f"{UNS}/raw/{t}", p, time.time()) for t, p in items[k:k + 50]])
    node = daemon.sparkplug.node
    value = daemon.metrics.value
    assert node.outbox.depth == 30 and value("procedge_sparkplug_outbox_depth") == 30
    assert daemon.outbox.depth == 30 and value("procedge_outbox_depth") == 30
    for priority, n in node.outbox.evicted.items():
        assert value("procedge_sparkplug_outbox_evicted_total", priority=str(priority)) == n
    assert sum(node.outbox.evicted.values()) > 100
    for priority, n in daemon.outbox.evicted.items():
        assert value("procedge_outbox_evicted_total", priority=str(priority)) == n
    node.outbox.close()
    daemon.outbox.close()
