"""pysparkplug as a Sparkplug *primary host* (runs in its own virtualenv: paho-mqtt < 2).

argv: port group node host_id rebirth_after timeout_s. Publishes its STATE (online, retained,
will offline), decodes every message of edge node ``node`` with pysparkplug's classes
(aliases and datatypes resolved from the NBIRTH), sends one NCMD Node Control/Rebirth at QoS 0
after ``rebirth_after`` NDATA, and prints one JSON report when an NDEATH follows the second
NBIRTH (or at the timeout). Prints READY once subscribed."""

import json
import sys
import threading

import paho.mqtt.client as paho
import pysparkplug as spb
from pysparkplug import _protobuf as pb  # its generated protobuf classes: the raw wire fields

port, group, node, host_id = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
rebirth_after, timeout_s = int(sys.argv[5]), float(sys.argv[6])
REBIRTH = "Node Control/Rebirth"
report = {"births": [], "datas": 0, "data_seqs": [], "data_qos": [], "unresolved": 0,
          "no_datatype": 0, "with_name": 0, "with_datatype_on_wire": 0, "deaths": [],
          "errors": [], "rebirth_sent": False, "is_historical": 0}
births = {}
done = threading.Event()
subscribed = threading.Event()
state_topic = f"spBv1.0/STATE/{host_id}"
ts0 = spb.get_current_timestamp()
client = paho.Client(client_id=host_id, clean_session=True)
client.will_set(state_topic, spb.State(ts0, False).encode(), qos=1, retain=True)


def on_connect(c, userdata, flags, rc):
    c.subscribe([(f"spBv1.0/{group}/+/{node}", 1), (state_topic, 1)])


def on_subscribe(c, userdata, mid, granted):
    c.publish(state_topic, spb.State(ts0, True).encode(), qos=1, retain=True)
    subscribed.set()


def on_message(c, userdata, msg):
    try:
        handle(c, msg)
    except Exception as exc:  # noqa: BLE001 - reported, the test fails on it
        report["errors"].append(f"{msg.topic}: {type(exc).__name__}: {exc}")


def handle(c, msg):
    if msg.topic == state_topic:
        return
    topic = spb.Topic.from_str(msg.topic)
    kind = str(topic.message_type)
    if kind == "NCMD":
        return
    wire = pb.Payload.FromString(msg.payload)
    key = (topic.group_id, topic.edge_node_id, topic.device_id)
    message = spb.Message.from_mqtt_message(msg, birth=births.get(key))
    payload = message.payload
    if kind == "NBIRTH":
        births[key] = payload
        metrics = {m.name: m for m in payload.metrics}
        report["births"].append({
            "seq": payload.seq, "qos": message.qos, "retain": bool(message.retain),
            "bdSeq": metrics["bdSeq"].value, "n": len(metrics),
            "rebirth": [metrics[REBIRTH].value, metrics[REBIRTH].alias,
                        metrics[REBIRTH].datatype.name],
            "all_aliased": all(m.alias is not None for n, m in metrics.items() if n != REBIRTH),
            "aliases_unique": len({m.alias for m in payload.metrics if m.alias is not None})
            == sum(m.alias is not None for m in payload.metrics),
            "all_timestamped": all(m.timestamp is not None for m in payload.metrics)})
    elif kind == "NDATA":
        report["datas"] += 1
        report["data_seqs"].append(payload.seq)
        report["data_qos"].append(message.qos)
        for raw, m in zip(wire.metrics, payload.metrics, strict=True):
            report["with_name"] += raw.HasField("name")
            report["with_datatype_on_wire"] += raw.HasField("datatype")
            report["unresolved"] += m.name is None
            report["no_datatype"] += int(m.datatype) == 0
            report["is_historical"] += m.is_historical
        if report["datas"] == rebirth_after and not report["rebirth_sent"]:
            now = spb.get_current_timestamp()
            cmd = spb.NCmd(now, (spb.Metric(now, REBIRTH, spb.DataType.BOOLEAN, value=True),))
            c.publish(f"spBv1.0/{group}/NCMD/{node}", cmd.encode(include_dtypes=True), qos=0)
            report["rebirth_sent"] = True
    elif kind == "NDEATH":
        report["deaths"].append({"bdSeq": payload.bd_seq_metric.value, "qos": message.qos})
        if len(report["births"]) >= 2:
            done.set()


client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
client.connect("127.0.0.1", port)
client.loop_start()
if not subscribed.wait(10):
    sys.exit("host: no SUBACK")
print("READY", flush=True)
done.wait(timeout_s)
client.publish(state_topic, spb.State(ts0, False).encode(), qos=1, retain=True).wait_for_publish()
client.disconnect()
client.loop_stop()
print(json.dumps(report), flush=True)
