"""Publish plant data to MQTT: the simulator live, or a historian CSV replayed at N× speed."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import paho.mqtt.client as mqtt

from edge_runtime.payloads import iso_ms
from training.progress import progress


def connect(host: str, port: int, client_id: str = "", config=None,
            timeout_s: float = 10.0) -> mqtt.Client:
    """A connected publisher; ``config`` (an edge config's ``mqtt:`` section,
    :class:`edge_runtime.config.MqttConfig`) adds its TLS and credentials. An unreachable
    broker, or one that refuses the connection (credentials), is a :class:`RuntimeError`
    naming ``host:port``."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if config is not None:
        config.configure(client)
    try:
        client.connect(host, port)
    except OSError as exc:  # refused, unknown host, TLS handshake, timeout
        raise RuntimeError(f"cannot reach the MQTT broker at {host}:{port}: "
                           f"{exc.strerror or exc}") from exc
    answer: list = []
    connected = threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties):
        answer.append(reason_code)
        connected.set()

    client.on_connect = on_connect
    client.loop_start()
    if not connected.wait(timeout_s) or answer[0].is_failure:
        client.loop_stop()
        client.disconnect()
        why = f"refused: {answer[0]}" if answer else f"no CONNACK within {timeout_s:g} s"
        raise RuntimeError(f"MQTT broker at {host}:{port} {why}")
    return client


def publish_rows(client: mqtt.Client, topic_template: str, uns: str, tags: list[str],
                 timestamps: np.ndarray, rows: np.ndarray, speed: float = 0.0,
                 qos: int = 1) -> int:
    """Publish every non-NaN value as ``{"v", "ts"}`` on its tag topic, in time order.

    ``speed`` = N× real time (0 = as fast as possible). Returns the messages published.
    """
    topics = [topic_template.format(uns=uns, tag=tag) for tag in tags]
    start_wall, start_ts = time.monotonic(), float(timestamps[0])
    sent = 0
    for ts, row in progress(zip(timestamps, rows, strict=True), "publishing", len(timestamps),
                            unit="row"):
        if speed > 0:
            delay = (ts - start_ts) / speed - (time.monotonic() - start_wall)
            if delay > 0:
                time.sleep(delay)
        stamp = iso_ms(float(ts))
        for topic, value in zip(topics, row, strict=True):
            if np.isfinite(value):
                info = client.publish(topic, json.dumps({"v": round(float(value), 6),
                                                         "ts": stamp}), qos=qos)
                if qos:
                    info.wait_for_publish(timeout=10)
                sent += 1
    return sent
