"""Bad input at the gateway is counted, logged once per topic per minute, and skipped; a
tampered bundle stops the daemon from starting, with the file named."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from edge_runtime.config import EdgeConfig, ModelConfig, MqttConfig, TopicConfig
from edge_runtime.daemon import EdgeDaemon
from procedge.demo import write_edge_config

ROOT = Path(__file__).resolve().parent.parent


def test_malformed_payloads_are_counted_logged_once_and_skipped(tank_bundles, broker, caplog):
    config = EdgeConfig(
        gateway="t2", mqtt=MqttConfig(port=broker.port), topics=TopicConfig(uns="t/s/a/l"),
        models=[ModelConfig(name="tank_anomaly", bundle=tank_bundles["tank_anomaly"])])
    daemon = EdgeDaemon(config)
    daemon.start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        assert daemon.subscribed.wait(10)
        with caplog.at_level(logging.WARNING, logger="procedge.edge"):
            for payload in (b"{oops", b'{"v": "x"}', b"NaN", b'{"v": 1, "ts": "?"}') * 5:
                pub.publish("t/s/a/l/raw/temperature", payload, qos=1).wait_for_publish(5)
            pub.publish("t/s/a/l/raw/level", b"1.5", qos=1).wait_for_publish(5)
            deadline = time.monotonic() + 10
            while daemon.metrics.value("procedge_messages_total") < 21:
                assert time.monotonic() < deadline, "daemon did not process the messages"
                time.sleep(0.05)
        m = daemon.metrics
        assert m.value("procedge_messages_rejected_total", reason="not_json") == 5
        assert m.value("procedge_messages_rejected_total", reason="not_a_number") == 5
        assert m.value("procedge_messages_rejected_total", reason="not_finite") == 5
        assert m.value("procedge_messages_rejected_total", reason="bad_timestamp") == 5
        warnings = [r for r in caplog.records if "rejected payload" in r.getMessage()]
        assert len(warnings) == 1  # one topic, one minute: logged once
        assert daemon._worker.is_alive()
    finally:
        pub.loop_stop()
        daemon.stop()


def test_tampered_bundle_is_refused_at_start(tank_bundles, tmp_path):
    bundle = tmp_path / "tampered"
    shutil.copytree(tank_bundles["tank_anomaly"], bundle)
    data = bytearray((bundle / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / "model.tflite").write_bytes(bytes(data))
    config = write_edge_config(tmp_path / "edge.yaml", 1, {"tank_anomaly": bundle})
    out = subprocess.run([sys.executable, "-m", "procedge", "run", "--config", str(config)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "model.tflite: SHA-256 does not match the manifest" in out.stderr
    verify = subprocess.run([sys.executable, "-m", "procedge", "verify",
                             str(tank_bundles["tank_anomaly"])], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert verify.returncode == 0 and verify.stdout.startswith("OK tank_anomaly")
