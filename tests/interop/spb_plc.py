"""pysparkplug as a Sparkplug *edge node with a device* (a PLC), in its own virtualenv.

argv: port group node device rows.json. rows.json: {"metrics": [[name, alias], ...],
"rows": [[ts_ms, [v, ...]], ...]}. NBIRTH (bdSeq, Node Control/Rebirth), DBIRTH (names,
aliases, Double), then one DDATA per row carrying aliases only; NDEATH and disconnect.
Everything encoded by pysparkplug's own payload classes. Prints a JSON summary."""

import json
import sys
import time

import pysparkplug as spb

port, group, node, device = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
with open(sys.argv[5]) as f:
    spec = json.load(f)
D = spb.DataType
client = spb.Client(client_id=f"{node}-plc")
now = spb.get_current_timestamp()
bd_seq = spb.Metric(now, "bdSeq", D.INT64, value=0)
death = spb.Message(spb.Topic(group_id=group, message_type=spb.MessageType.NDEATH,
                              edge_node_id=node), spb.NDeath(now, bd_seq), spb.QoS.AT_LEAST_ONCE,
                    False)
client.set_will(death)
client.connect("127.0.0.1", port=port, blocking=False)
time.sleep(0.5)


def send(kind, payload, dev=None):
    topic = spb.Topic(group_id=group, message_type=kind, edge_node_id=node, device_id=dev)
    client.publish(spb.Message(topic, payload, spb.QoS.AT_MOST_ONCE, False))


seq = 0
send(spb.MessageType.NBIRTH, spb.NBirth(now, seq, (
    bd_seq, spb.Metric(now, "Node Control/Rebirth", D.BOOLEAN, value=False))))
first_ts = spec["rows"][0][0]
seq += 1
send(spb.MessageType.DBIRTH, spb.DBirth(now, seq, tuple(
    spb.Metric(first_ts, name, D.DOUBLE, alias=alias, is_null=True)
    for name, alias in spec["metrics"])), device)
for ts, values in spec["rows"]:
    seq = (seq + 1) % 256
    metrics = tuple(spb.Metric(ts, None, D.DOUBLE, value=v, alias=alias)
                    for (_, alias), v in zip(spec["metrics"], values, strict=True))
    send(spb.MessageType.DDATA, spb.DData(spb.get_current_timestamp(), seq, metrics), device)
    time.sleep(0.002)
time.sleep(0.5)
client.publish(death)
client.disconnect()
print(json.dumps({"ddata": len(spec["rows"]), "last_seq": seq}), flush=True)
