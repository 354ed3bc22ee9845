"""``tag_map``: a model fed from an existing topic tree and payload shape (no bridge), through
a real Mosquitto; JSON pointers resolved as RFC 6901 says."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest

from edge_runtime.config import EdgeConfig, MappedTag, ModelConfig, MqttConfig, TopicConfig
from edge_runtime.daemon import EdgeDaemon
from edge_runtime.inputs.mapped import extract, pointer
from edge_runtime.payloads import PayloadError, iso_ms
from tests.daemon_support import Collector, wait_for
from training.simulator import simulate

UNS = "t/s/a/l"


def test_pointers_and_extraction():
    doc = {"a/b": {"~x": [1, {"v": 2.5}]}, "value": 3, "time": 1_770_076_800_000}
    assert pointer(doc, "/a~1b/~0x/1/v") == 2.5 and pointer(doc, "") is doc
    with pytest.raises(PayloadError, match="missing_field"):
        pointer(doc, "/a~1b/~0x/2")
    entry = MappedTag(topic="p/PT101", value="/value", time="/time")
    assert extract(doc, entry, 1_770_076_900.0) == (1_770_076_800.0, 3.0)
    in_s = MappedTag(topic="p/PT101", value="/value", time="/time", time_unit="s")
    assert extract({"value": 1, "time": 1_770_076_800}, in_s, 1_770_076_900.0)[0] == 1_770_076_800
    with pytest.raises(PayloadError, match="not_a_number"):
        extract({"value": "3,2"}, entry, 0.0)
    with pytest.raises(ValueError, match="exact topic"):
        MappedTag(topic="plant/+/PT101")


def test_a_model_reads_an_existing_topic_tree(bundles, broker):
    """Three tags on their own topics as {"value", "time"}, two sharing one topic in a nested
    payload with an epoch-ms stamp: windows run, results are published; a payload lacking a
    mapped field is rejected for that tag only."""
    tag_map = {
        "flow_in": MappedTag(topic="plant/area/FT101/value", value="/value", time="/time"),
        "temperature": MappedTag(topic="plant/area/TT101/value", value="/value", time="/time"),
        "heater_power": MappedTag(topic="plant/area/JQ101/value", value="/value",
                                  time="/time"),
        "level": MappedTag(topic="plant/area/tank", value="/pv/LT101", time="/t"),
        "pressure": MappedTag(topic="plant/area/tank", value="/pv/PT101", time="/t"),
    }
    config = EdgeConfig(gateway="tm", mqtt=MqttConfig(port=broker.port),
                        topics=TopicConfig(uns=UNS), tag_map=tag_map,
                        models=[ModelConfig(name="tank_anomaly",
                                            bundle=bundles["tank_anomaly"])])
    daemon = EdgeDaemon(config)
    collector = Collector(broker.port, [f"{UNS}/inference/#"], client_id="tm-collector")
    daemon.start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    steps = 30
    start = time.time() - steps * 5.0 - 120
    run = simulate(steps, 5.0, seed=4, start_epoch_s=start - start % 5.0)
    col = {t: i for i, t in enumerate(run.tag_names)}
    try:
        assert daemon.subscribed.wait(10)
        for ts, row in zip(run.timestamps, run.values, strict=True):
            for tag in ("flow_in", "temperature", "heater_power"):
                body = {"value": float(row[col[tag]]), "time": iso_ms(float(ts)), "q": 192}
                pub.publish(tag_map[tag].topic, json.dumps(body), qos=1).wait_for_publish(5)
            body = {"t": int(ts * 1000), "pv": {"LT101": float(row[col["level"]]),
                                                "PT101": float(row[col["pressure"]])}}
            pub.publish("plant/area/tank", json.dumps(body), qos=1).wait_for_publish(5)
        pub.publish("plant/area/tank", json.dumps({"t": int(run.timestamps[-1] * 1000),
                                                   "pv": {"LT101": 1.0}}), qos=1)
        windows = steps - 12 + 1  # window 12: every final grid step from the 12th on
        assert collector.wait(lambda: len(collector.json("/inference/tank_anomaly"))
                              >= windows - 1, 20), collector.messages[-3:]
        assert wait_for(lambda: daemon.metrics.value(
            "procedge_messages_rejected_total", reason="missing_field") == 1, 10)
        results = collector.json("/inference/tank_anomaly")
        assert all("score" in r for r in results)
        assert daemon.metrics.value("procedge_messages_rejected_total",
                                    reason="unknown_topic") == 0
    finally:
        pub.loop_stop()
        collector.close()
        daemon.stop()
