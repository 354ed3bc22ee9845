"""The gateway daemon: MQTT in, LiteRT pipelines, forecasts and alarms out.

Start-up reads as a sequence: config → bundles (verified) → metrics → MQTT → work loop.
The MQTT callback only enqueues (a slow model never stalls the network thread); one worker
thread parses, windows, infers and publishes.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from edge_runtime.bundle import Bundle
from edge_runtime.config import EdgeConfig, load_edge_config
from edge_runtime.imaging import FolderWatcher, ImagePipeline, camera_pipeline
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.payloads import PayloadError, parse_sample
from edge_runtime.pipelines import ModelPipeline, Output

log = logging.getLogger("procedge.edge")
MALFORMED_LOG_INTERVAL_S = 60.0


class EdgeDaemon:
    def __init__(self, config: EdgeConfig):
        self.config = config
        self.pipelines = [ModelPipeline(m.name, Bundle.load(m.bundle), m.threads)
                          for m in config.models]
        self.routes = self._route_topics()
        self.cameras = {self._camera_topic(c.topic, c.name): camera_pipeline(c)
                        for c in config.cameras}
        self.metrics = DaemonMetrics()
        self.inbox: queue.Queue[tuple[str, bytes, float] | None] = queue.Queue(config.queue_size)
        self.client = self._make_client()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="procedge-worker", daemon=True)
        self._last_malformed_log: dict[str, float] = {}

    # -- start-up -------------------------------------------------------------------------
    def _route_topics(self) -> dict[str, list[tuple[ModelPipeline, str]]]:
        routes: dict[str, list[tuple[ModelPipeline, str]]] = {}
        for pipeline in self.pipelines:
            for tag in pipeline.tags:
                routes.setdefault(self._topic("raw", tag=tag), []).append((pipeline, tag))
        return routes

    def _camera_topic(self, topic: str, name: str) -> str:
        return (topic or "{uns}/camera/{camera}").format(uns=self.config.topics.uns, camera=name)

    def _topic(self, kind: str, **fields: str) -> str:
        t = self.config.topics
        return getattr(t, kind).format(uns=t.uns, gateway=self.config.gateway, **fields)

    def _make_client(self) -> mqtt.Client:
        c = self.config.mqtt
        protocol = mqtt.MQTTv5 if c.protocol == "5" else mqtt.MQTTv311
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=c.client_id or f"procedge-{self.config.gateway}",
                             protocol=protocol)
        client.will_set(self._topic("status"), "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def start(self) -> None:
        """Connect and start the network and worker threads; returns at once."""
        if self.config.metrics_port:
            self.metrics.serve(self.config.metrics_port)
        c = self.config.mqtt
        self.client.connect_async(c.host, c.port, keepalive=c.keepalive_s)
        self.client.loop_start()
        self._worker.start()
        for camera in self.config.cameras:
            if camera.watch_dir is not None:
                threading.Thread(target=self._watch, args=(camera,), daemon=True,
                                 name=f"procedge-watch-{camera.name}").start()
        log.info("started: %d model(s), %d topic(s), broker %s:%d",
                 len(self.pipelines), len(self.routes), c.host, c.port)

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        self.start()
        self._stop.wait()
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self.inbox.put(None)
        self._worker.join(timeout=10)
        info = self.client.publish(self._topic("status"), "offline", qos=1, retain=True)
        info.wait_for_publish(timeout=2) if self.client.is_connected() else None
        self.client.disconnect()
        self.client.loop_stop()
        log.info("stopped")

    # -- MQTT callbacks: tiny and guarded ---------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        qos = self.config.mqtt.qos
        topics = [*self.routes, *self.cameras]
        client.subscribe([(topic, qos) for topic in topics])  # again on every reconnect
        client.publish(self._topic("status"), "online", qos=1, retain=True)
        self.metrics.connects.inc()
        log.info("connected; subscribed to %d topic(s)", len(self.routes))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if not self._stop.is_set():
            log.warning("disconnected from broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, message) -> None:
        try:
            self.inbox.put_nowait((message.topic, message.payload, time.time()))
        except queue.Full:
            self.metrics.rejected.labels(reason="queue_full").inc()
        except Exception:  # a raising callback would kill paho's network thread
            log.exception("could not enqueue a message")

    # -- worker -----------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            item = self.inbox.get()
            if item is None:
                break
            try:
                self._handle(*item)
            except Exception:  # never let one bad message end the worker
                log.exception("unexpected error handling %s", item[0])
                self.metrics.rejected.labels(reason="internal_error").inc()

    def _handle(self, topic: str, payload: bytes, received_s: float) -> None:
        self.metrics.messages.inc()
        if topic in self.cameras:
            self._handle_image(self.cameras[topic], payload, received_s)
            return
        targets = self.routes.get(topic)
        if targets is None:
            self.metrics.rejected.labels(reason="unknown_topic").inc()
            return
        try:
            ts, value = parse_sample(payload, received_s)
        except PayloadError as exc:
            self._reject(topic, str(exc), payload)
            return
        for pipeline, tag in targets:
            gaps_before = pipeline.windows_dropped_gap
            for output in pipeline.push(tag, ts, value):
                self._publish(pipeline, output)
            self.metrics.observe_pipeline(pipeline, pipeline.windows_dropped_gap - gaps_before)

    def _watch(self, camera) -> None:
        """Frames dropped in a folder go through the same inbox as MQTT frames."""
        watcher = FolderWatcher(camera.watch_dir, camera.max_bytes)
        topic = self._camera_topic(camera.topic, camera.name)
        while not self._stop.wait(camera.watch_interval_s):
            try:
                for _, data in watcher.poll():
                    self.inbox.put((topic, data, time.time()))
            except Exception:  # a folder problem must not end the thread
                log.exception("watching %s", camera.watch_dir)

    def _handle_image(self, camera: ImagePipeline, payload: bytes, received_s: float) -> None:
        """A camera frame → verdict (or rejection report), NOK-rate alarm, optional mask PNG."""
        qos = self.config.mqtt.qos
        for output in camera.process(payload, received_s):
            if output.payload.get("status") == "rejected":
                self.metrics.rejected.labels(reason=output.payload["reason"]).inc()
            if output.kind == "debug":
                topic = f"{self.config.topics.uns}/debug/{camera.name}/mask"
                self.client.publish(topic, output.payload["png"], qos=0)
                continue
            topic = self._topic(output.kind, model=camera.name, alarm_id=output.alarm_id)
            self.client.publish(topic, json.dumps(output.payload), qos=qos)
            self.metrics.published.labels(kind=output.kind).inc()
        for seconds in camera.inference_s:
            self.metrics.inference.labels(model=camera.name).observe(seconds)
        camera.inference_s.clear()

    def _reject(self, topic: str, reason: str, payload: bytes) -> None:
        self.metrics.rejected.labels(reason=reason).inc()
        now = time.monotonic()
        if now - self._last_malformed_log.get(topic, -1e9) >= MALFORMED_LOG_INTERVAL_S:
            self._last_malformed_log[topic] = now
            log.warning("rejected payload on %s (%s): %r (further ones logged once a minute)",
                        topic, reason, payload[:80])

    def _publish(self, pipeline: ModelPipeline, output: Output) -> None:
        topic = self._topic(output.kind, model=pipeline.name, alarm_id=output.alarm_id)
        info = self.client.publish(topic, json.dumps(output.payload), qos=self.config.mqtt.qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            log.error("publish to %s failed: %s", topic, mqtt.error_string(info.rc))
        self.metrics.published.labels(kind=output.kind).inc()
        if output.kind == "alarm":
            log.warning("alarm %s %s score=%.4g top=%s", output.alarm_id,
                        output.payload["event"], output.payload["score"],
                        output.payload["contributions"][0]["tag"])


def run(config_path: str | Path) -> None:
    config = load_edge_config(config_path)
    logging.basicConfig(level=config.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    EdgeDaemon(config).run_forever()
