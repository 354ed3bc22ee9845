"""The gateway daemon: MQTT in, LiteRT pipelines, forecasts and alarms out — nothing lost.

Start-up reads as a sequence: config → outbox (alarm states restored) → bundles (verified) →
metrics → MQTT → threads. Three threads do the work, none of them inside paho's callbacks:

- the network thread (paho) only enqueues received messages and PUBACK ids;
- the worker parses, windows, infers, runs the ISA-18.2 alarms and commits everything it
  produced to the SQLite outbox in one transaction per batch; only then does it acknowledge
  the input messages (manual QoS 1 acks), so a SIGKILL never loses an input it consumed;
- the sender (:mod:`edge_runtime.sender`) publishes outbox rows in order (a bounded number
  in flight, 16-bit packet ids) and deletes a row only when its PUBACK arrives.

A bundle watcher (optional) verifies, loads and warms up new bundles and hands them to the
worker, which swaps them in between two messages.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from edge_runtime.acker import InputAcker
from edge_runtime.alarms import COMMANDS, Alarm, AlarmPolicy
from edge_runtime.bundle import Bundle, BundleError
from edge_runtime.config import EdgeConfig, ModelConfig, load_edge_config
from edge_runtime.imaging import FolderWatcher, ImagePipeline, camera_pipeline
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.mqtt_client import BufferedClient
from edge_runtime.outbox import PRIO_ALARM, PRIO_FORECAST, PRIO_STATUS, Message, Outbox
from edge_runtime.payloads import PayloadError, iso_ms, parse_samples, parse_timestamp
from edge_runtime.pipelines import ModelPipeline, Output
from edge_runtime.sender import OutboxSender

log = logging.getLogger("procedge.edge")
MALFORMED_LOG_INTERVAL_S = 60.0
BATCH = 256  # inbound messages committed (and acknowledged) together
MAX_COMMAND_BYTES = 4096
KNOWN_COMMANDS = frozenset({"model/load", *(f"alarm/{verb}" for verb in COMMANDS)})


@dataclass
class Inbound:
    topic: str
    payload: bytes
    received_s: float
    mid: int = 0
    qos: int = 0
    generation: int = 0
    by: str = ""  # MQTT 5 user property "by" (commands)


@dataclass
class Swap:
    """A verified, warmed-up pipeline ready to replace the running one of the same name."""

    pipeline: ModelPipeline
    source: str


class EdgeDaemon:
    def __init__(self, config: EdgeConfig):
        self.config = config
        self._topics: dict[tuple, str] = {}  # formatted topic names (a bounded set)
        self.metrics = DaemonMetrics()
        self.outbox = Outbox(config.outbox.path, config.outbox.max_rows, config.outbox.synchronous)
        self.policy = AlarmPolicy(config.alarms.max_shelve_s, config.alarms.chatter_count,
                                  config.alarms.chatter_window_s)
        self.pipelines = {m.name: self._load_pipeline(m, Bundle.load(m.bundle, m.public_key))
                          for m in config.models}
        self.cameras: dict[str, ImagePipeline] = {
            self._camera_topic(c.topic, c.name): camera_pipeline(c) for c in config.cameras}
        self.alarms = self._restore_alarms()
        self.routes = self._route_topics()
        self.sparkplug = self._sparkplug_bridge()
        main, *sparkplug = self._outboxes()
        self.metrics.watch(lambda: main.depth, lambda: list(self.alarms.values()),
                           lambda: sum(o.depth for o in sparkplug))
        # (outbox, its eviction counter, evictions counted so far by priority)
        self._evictions = [(main, self.metrics.outbox_evicted, {})] + [
            (o, self.metrics.sparkplug_outbox_evicted, {}) for o in sparkplug]
        self.acker = InputAcker([main, *sparkplug], self._ack_inputs)
        self.inbox: queue.Queue[Inbound | Swap | None] = queue.Queue(config.queue_size)
        self.client = self._make_client()
        self._generation = 0  # bumped on every connect: acks of older messages are void
        # set once the broker has granted every subscription of the current connection: until
        # then "connected" does not mean that inputs arrive (the SUBSCRIBE may still be unsent)
        self.subscribed = threading.Event()
        self._subscribe: tuple[int, list[str]] = (-1, [])  # (packet id, topic filters)
        self._subscribe_lock = threading.Lock()  # the SUBACK may come before subscribe() returns
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="procedge-worker", daemon=True)
        self.sender = OutboxSender(self.client, self.outbox, config.outbox, self.metrics)
        self.client.on_publish = self.sender.on_publish
        self._watcher = threading.Thread(target=self._watch, name="procedge-reload", daemon=True)
        self._seen_bundles: dict[str, float] = {}
        self._last_malformed_log: dict[str, float] = {}
        self._cmd_prefix = self._topic("cmd") + "/"
        self._parse_s = 0.0  # parse time of the batch being processed
        self._http = None

    # -- start-up -------------------------------------------------------------------------
    def _load_pipeline(self, model: ModelConfig, bundle: Bundle) -> ModelPipeline:
        pipeline = ModelPipeline(model.name, bundle, model.threads)
        shape = (1, *pipeline.model.input_shape)
        pipeline.model.predict(np.zeros(shape, dtype=np.float32))  # warm up before use
        return pipeline

    def _restore_alarms(self) -> dict[str, Alarm]:
        saved = {k[6:]: json.loads(v) for k, v in self.outbox.state().items()
                 if k.startswith("alarm:")}
        alarms = {}
        sources = [p for p in self.pipelines.values() if p.alarm is not None]
        for source in [*sources, *self.cameras.values()]:  # cameras: the NOK-rate alarm
            aid = source.alarm_id
            alarms[aid] = (Alarm.restore(saved[aid], self.policy) if aid in saved
                           else Alarm(aid, source.name, self.policy))
            source.alarm.active = alarms[aid].condition_active
        return alarms

    def _sparkplug_bridge(self):
        """Sparkplug B in/out when configured (imported only then: it loads protobuf)."""
        sp = self.config.sparkplug
        if sp.input is None and sp.output is None:
            return None
        from edge_runtime.sparkplug.bridge import SparkplugBridge

        return SparkplugBridge(self.config, self.metrics, self.pipelines, self._topic)

    def _route_topics(self) -> dict[str, list[tuple[ModelPipeline, str]]]:
        routes: dict[str, list[tuple[ModelPipeline, str]]] = {}
        for pipeline in self.pipelines.values():
            for tag in pipeline.tags:
                routes.setdefault(self._topic("raw", tag=tag), []).append((pipeline, tag))
        return routes

    def _camera_topic(self, topic: str, name: str) -> str:
        return (topic or "{uns}/camera/{camera}").format(uns=self.config.topics.uns, camera=name)

    def _topic(self, kind: str, **fields: str) -> str:
        key = (kind, *fields.items())
        topic = self._topics.get(key)
        if topic is None:
            t = self.config.topics
            topic = getattr(t, kind).format(uns=t.uns, gateway=self.config.gateway, **fields)
            if len(self._topics) < 10_000:  # models, alarms and cameras: a bounded set
                self._topics[key] = topic
        return topic

    def _make_client(self) -> mqtt.Client:
        c = self.config.mqtt
        v5 = c.protocol == "5"
        kwargs: dict[str, Any] = {"protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                                  "manual_ack": True}
        if not v5:
            kwargs["clean_session"] = not c.persistent_session
        client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2,
                                client_id=c.client_id or f"procedge-{self.config.gateway}",
                                **kwargs)
        c.configure(client)
        client.will_set(self._topic("status"), "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=c.reconnect_min_s, max_delay=c.reconnect_max_s)
        # Unlimited in paho: the sender's window (outbox.max_inflight) bounds what is in flight,
        # and paho's own bound rescans every in-flight message on each PUBACK.
        client.max_inflight_messages_set(0)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        return client

    def start(self) -> None:
        """Connect and start the network, worker and sender threads; returns at once."""
        if self.config.metrics_port:
            self._http = self.metrics.serve(self.config.metrics_port, self.health)
        c = self.config.mqtt
        if c.protocol == "5":
            props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0xFFFFFFFF if c.persistent_session else 0
            self.client.connect_async(c.host, c.port, keepalive=c.keepalive_s,
                                      clean_start=not c.persistent_session, properties=props)
        else:
            self.client.connect_async(c.host, c.port, keepalive=c.keepalive_s)
        self.client.loop_start()
        self.acker.start()
        self._worker.start()
        self.sender.start()
        if self.sparkplug is not None:
            self.sparkplug.start()
        if self.config.reload.models_dir is not None:
            self._seen_bundles = self._scan_bundles()  # what is there at start is not "new"
            self._watcher.start()
        for camera in self.config.cameras:
            if camera.watch_dir is not None:
                threading.Thread(target=self._watch_camera, args=(camera,), daemon=True,
                                 name=f"procedge-watch-{camera.name}").start()
        log.info("started: %d model(s), %d topic(s), broker %s:%d%s, outbox %d pending",
                 len(self.pipelines), len(self.routes), c.host, c.port,
                 " (TLS)" if c.tls else "", self.outbox.depth)

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then drain and stop cleanly."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        self.start()
        self._stop.wait()
        self.stop()

    def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Finish queued inputs, wait (bounded) for the outbox to drain, then say offline."""
        self._stop.set()
        self.inbox.put(None)
        self._worker.join(timeout=30)
        self.acker.stop()
        deadline = time.monotonic() + drain_timeout_s
        while self.outbox.depth and self.client.is_connected() and time.monotonic() < deadline:
            self.sender.wake.set()
            time.sleep(0.05)
        self.sender.stop()
        if self.sparkplug is not None:
            self.sparkplug.stop(drain_timeout_s)
        if self.client.is_connected():
            info = self.client.publish(self._topic("status"), "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        left = self.outbox.depth
        self.outbox.close()
        log.info("stopped; %d message(s) left in the outbox for the next start", left)

    def health(self) -> tuple[bool, dict]:
        ok = (self.client.is_connected() and self.subscribed.is_set()
              and self._worker.is_alive()
              and self.acker.is_alive() and self.sender.is_alive()
              and (self.sparkplug is None or self.sparkplug.is_alive()))
        return ok, {"connected": self.client.is_connected(),
                    "subscribed": self.subscribed.is_set(), "outbox": self.outbox.depth,
                    "models": {n: p.bundle.manifest.version for n, p in self.pipelines.items()}}

    # -- MQTT callbacks: tiny and guarded ---------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        try:
            if reason_code.is_failure:
                self.metrics.connect_failures.inc()
                log.error("broker refused the connection: %s", reason_code)
                return
            self._generation += 1
            count = self._subscribe_all(client)  # again on every reconnect
            client.publish(self._topic("status"), "online", qos=1, retain=True)
            client.publish(self._topic("models"), self._models_status(), qos=1, retain=True)
            self.metrics.connects.inc()
            self.metrics.connected.set(1)
            self.sender.wake.set()
            log.info("connected; subscribing to %d topic filter(s)", count)
        except Exception:
            log.exception("on_connect failed")

    def _subscriptions(self) -> list[tuple[str, int]]:
        qos, group = self.config.mqtt.qos, self.config.mqtt.shared_group
        data = [(f"$share/{group}/{t}" if group else t, qos)
                for t in [*self.routes, *self.cameras]]
        # Sparkplug: not shared, a node's BIRTH and DATA must reach the same daemon
        data += [(t, qos) for t in (self.sparkplug.subscriptions() if self.sparkplug else [])]
        return data + [(self._topic("cmd") + "/#", 1)]

    def _models_status(self) -> str:
        return json.dumps({n: p.bundle.manifest.version for n, p in self.pipelines.items()})

    def _subscribe_all(self, client: mqtt.Client) -> int:
        """Subscribe to every input topic (on connect, and after a reload that may add some);
        :attr:`subscribed` is set again by the SUBACK of this very request."""
        subscriptions = self._subscriptions()
        with self._subscribe_lock:
            self.subscribed.clear()
            _, mid = client.subscribe(subscriptions)
            self._subscribe = (mid, [topic for topic, _ in subscriptions])
        return len(subscriptions)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None) -> None:
        """SUBACK: inputs flow once every filter is granted; a refused one is an error to see
        (on /healthz, in the log and in the metrics), not a silence."""
        try:
            with self._subscribe_lock:  # held to the set: a newer request clears it after
                expected, topics = self._subscribe
                if mid != expected:
                    return
                refused = [t for t, rc in zip(topics, reason_codes, strict=False)
                           if rc.is_failure]
                if not refused:
                    self.subscribed.set()
            if refused:
                self.metrics.subscriptions_refused.inc(len(refused))
                log.error("broker refused %d subscription(s): %s", len(refused),
                          ", ".join(refused))
            else:
                log.info("subscribed: the broker granted %d topic filter(s)", len(topics))
        except Exception:
            log.exception("on_subscribe failed")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        self.subscribed.clear()
        self.metrics.connected.set(0)
        if not self._stop.is_set():
            self.metrics.disconnects.inc()
            log.warning("disconnected from broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, message) -> None:
        try:
            by = ""
            props = getattr(message, "properties", None)
            for key, value in getattr(props, "UserProperty", None) or []:
                if key == "by":
                    by = value
            self.inbox.put_nowait(Inbound(message.topic, message.payload, time.time(),
                                          message.mid, message.qos, self._generation, by))
        except Exception as exc:  # a raising callback would kill paho's network thread
            full = isinstance(exc, queue.Full)
            self.metrics.rejected.labels(reason="queue_full" if full else "bad_message").inc()
            if not full:
                log.exception("could not enqueue a message")
            with contextlib.suppress(Exception):  # ack anyway, or the broker's window stays blocked
                client.ack(message.mid, message.qos) if message.qos else None

    # -- worker: inputs → outbox ------------------------------------------------------------
    def _work(self) -> None:
        while True:
            try:
                first = self.inbox.get(timeout=0.5)
            except queue.Empty:
                first = ...
            batch = [] if first is ... else [first]
            while len(batch) < BATCH:
                try:
                    batch.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            try:
                self._process(batch)
            except Exception:  # never let one bad batch end the worker
                log.exception("unexpected error in a batch of %d", len(batch))
                self.metrics.rejected.labels(reason="internal_error").inc()
            if None in batch:
                break

    def _process(self, batch: list[Inbound | Swap | None]) -> None:
        out: list[Message] = []
        changed: set[str] = set()
        self._parse_s = 0.0
        start = time.perf_counter()
        for item in batch:
            if isinstance(item, Swap):
                self._flush_pipelines(out, changed)  # the old model finishes its windows
                self._swap(item, out)
            elif isinstance(item, Inbound):
                try:
                    self._handle(item, out, changed)
                except Exception:
                    log.exception("unexpected error handling %s", item.topic)
                    self.metrics.rejected.labels(reason="internal_error").inc()
        self._flush_pipelines(out, changed)
        self.metrics.stage_parse.observe(self._parse_s)
        self.metrics.stage_models.observe(time.perf_counter() - start - self._parse_s)
        now = time.time()
        for alarm in self.alarms.values():
            events = alarm.tick(now)
            if events:
                changed.add(alarm.alarm_id)
                out.extend(self._alarm_messages(alarm, events))
        start = time.perf_counter()
        state = {f"alarm:{a}": json.dumps(self.alarms[a].snapshot()) for a in changed}
        for aid in changed:
            alarm = self.alarms[aid]
            out.append(self._json(self._topic("alarm_state", model=alarm.model, alarm_id=aid),
                                  alarm.snapshot(), PRIO_ALARM, retain=True))
        if self.sparkplug is not None:
            self.sparkplug.enqueue(out)  # its own outbox, also before the inputs are acked
        self.outbox.put(out, state, sync=False)  # durable before the inputs are acked: ...
        if out:
            self.sender.publish_now()  # (the results' latency runs from here)
        inputs = [item for item in batch if isinstance(item, Inbound)]
        self.acker.submit(inputs)  # ... there
        self.metrics.messages.inc(len(inputs))  # "messages_total": committed, done with
        self.metrics.stage_commit.observe(time.perf_counter() - start)
        if out:  # rows are evicted only when rows are added
            self._report_evictions()

    def _outboxes(self) -> list[Outbox]:
        node = self.sparkplug.node if self.sparkplug is not None else None
        return [self.outbox] + ([node.outbox] if node is not None else [])

    def _ack_inputs(self, inputs: list[Inbound]) -> None:
        """(acker thread, once the batch's results are durable) acknowledge the inputs."""
        current = [item for item in inputs if item.qos and item.generation == self._generation]
        self.client.ack_many(item.mid for item in current if item.qos == 1)
        for item in current:  # older generations: void, the broker redelivers them
            if item.qos == 2:
                self.client.ack(item.mid, item.qos)

    def _handle(self, item: Inbound, out: list[Message], changed: set[str]) -> None:
        cmd = self._cmd_prefix
        if item.topic.startswith(cmd):
            self._flush_pipelines(out, changed)  # a command sees the alarms as of its arrival
            self._command(item.topic[len(cmd):], item, out, changed)
            return
        if item.topic in self.cameras:
            self._handle_image(self.cameras[item.topic], item, out, changed)
            return
        if self.sparkplug is not None and self.sparkplug.handles(item.topic):
            self._handle_sparkplug(item, out)
            return
        targets = self.routes.get(item.topic)
        if targets is None:
            self.metrics.rejected.labels(reason="unknown_topic").inc()
            return
        t0 = time.perf_counter()
        try:
            samples = parse_samples(item.payload, item.received_s)
        except PayloadError as exc:
            self._reject(item.topic, str(exc), item.payload)
            return
        finally:
            self._parse_s += time.perf_counter() - t0
        self._feed(targets, samples)

    def _handle_sparkplug(self, item: Inbound, out: list[Message]) -> None:
        """Sparkplug B metrics feed the tags they are mapped to, as if on the raw topics."""
        decoded, requests = self.sparkplug.handle(item.topic, item.payload, item.received_s)
        out.extend(requests)
        for reason, n in decoded.rejects.items():
            self._reject(item.topic, reason, item.payload, n)
        for tag, samples in decoded.samples.items():
            self._feed(self.routes.get(self._topic("raw", tag=tag), []), samples)

    def _feed(self, targets: list[tuple[ModelPipeline, str]],
              samples: list[tuple[float, float]]) -> None:
        """Samples of one tag into its pipelines; their windows run in _flush_pipelines."""
        for pipeline, tag in targets:
            late_before = pipeline.buffer.late_samples
            for ts, value in samples:
                pipeline.push(tag, ts, value)
            if pipeline.buffer.late_samples > late_before:  # too late for the window grid
                self.metrics.rejected.labels(reason="late").inc(
                    pipeline.buffer.late_samples - late_before)

    def _flush_pipelines(self, out: list[Message], changed: set[str]) -> None:
        """Run the windows the batch completed, model by model, and route the results in
        window-time order across models (as if each window had run on its own message)."""
        results = []
        for pipeline in self.pipelines.values():
            results.extend((output.grid_t, pipeline, output) for output in pipeline.flush())
            self.metrics.observe_pipeline(pipeline)
        results.sort(key=lambda r: r[0])  # stable: each model's own order is kept
        for _, pipeline, output in results:
            self._route_output(pipeline, output, out, changed)

    def _route_output(self, pipeline: ModelPipeline, output: Output, out: list[Message],
                      changed: set[str]) -> None:
        """Forecasts/scores go out as they are; detection transitions go through the alarm."""
        payload = output.payload
        alarm = self.alarms.get(pipeline.alarm_id)
        if output.kind == "inference":
            out.append(self._json(self._topic("inference", model=pipeline.name), payload,
                                  PRIO_FORECAST))
            self.metrics.published_inference.inc()
            if alarm is not None and alarm.condition_active and "score" in payload:
                priority = pipeline.alarm.priority(payload["score"])
                events = alarm.on_score(payload, priority, parse_timestamp(payload["ts"]),
                                        time.time())
                out.extend(self._alarm_messages(alarm, events))
                changed.update([alarm.alarm_id] if events else [])
            return
        if alarm is None:
            return
        events = alarm.on_condition(payload["event"], payload, parse_timestamp(payload["ts"]),
                                    time.time())
        changed.add(alarm.alarm_id)
        out.extend(self._alarm_messages(alarm, events))

    def _alarm_messages(self, alarm: Alarm, events: list[dict]) -> list[Message]:
        msgs = []
        for event in events:
            self.metrics.alarm_events.labels(event=event["event"]).inc()
            self.metrics.published_alarm.inc()
            msgs.append(self._json(self._topic("alarm", model=alarm.model,
                                               alarm_id=alarm.alarm_id), event, PRIO_ALARM))
            log.warning("alarm %s %s -> %s priority=%s score=%s", alarm.alarm_id,
                        event["event"], event["state"], event["priority"], event.get("score"))
        return msgs

    @staticmethod
    def _json(topic: str, body: dict, priority: int, retain: bool = False) -> Message:
        return Message(topic, json.dumps(body).encode(), priority, retain)

    def _watch_camera(self, camera) -> None:
        """Frames dropped in a folder go through the same inbox as MQTT frames."""
        watcher = FolderWatcher(camera.watch_dir, camera.max_bytes)
        topic = self._camera_topic(camera.topic, camera.name)
        while not self._stop.wait(camera.watch_interval_s):
            try:
                for _, data in watcher.poll():
                    self.inbox.put(Inbound(topic, data, time.time()))
            except Exception:  # a folder problem must not end the thread
                log.exception("watching %s", camera.watch_dir)

    def _handle_image(self, camera: ImagePipeline, item: Inbound, out: list[Message],
                      changed: set[str]) -> None:
        """A camera frame → verdict (or rejection report), NOK-rate alarm (through its ISA-18.2
        :class:`Alarm`, as anomaly alarms), optional mask PNG, all through the outbox."""
        for output in camera.process(item.payload, item.received_s):
            if output.kind == "alarm":
                alarm = self.alarms[output.alarm_id]
                changed.add(alarm.alarm_id)
                out.extend(self._alarm_messages(alarm, alarm.on_condition(
                    output.payload["event"], output.payload, item.received_s, time.time())))
                continue
            if output.payload.get("status") == "rejected":
                self.metrics.rejected.labels(reason=output.payload["reason"]).inc()
            if output.kind == "debug":
                topic = f"{self.config.topics.uns}/debug/{camera.name}/mask"
                out.append(Message(topic, output.payload["png"], PRIO_FORECAST, is_json=False))
                continue
            topic = self._topic(output.kind, model=camera.name)
            out.append(self._json(topic, output.payload, PRIO_FORECAST))
            self.metrics.published.labels(kind=output.kind).inc()
        for seconds in camera.inference_s:
            self.metrics.inference.labels(model=camera.name).observe(seconds)
        camera.inference_s.clear()

    def _reject(self, topic: str, reason: str, payload: bytes, n: int = 1) -> None:
        self.metrics.rejected.labels(reason=reason).inc(n)
        now = time.monotonic()
        if now - self._last_malformed_log.get(topic, -1e9) >= MALFORMED_LOG_INTERVAL_S:
            if len(self._last_malformed_log) > 10_000:  # bounded under a flood of topics
                self._last_malformed_log.clear()
            self._last_malformed_log[topic] = now
            log.warning("rejected payload on %s (%s): %r (further ones logged once a minute)",
                        topic[:200], reason, payload[:80])

    def _report_evictions(self) -> None:
        """Count the rows each outbox evicted since the last report (the Sparkplug one too)."""
        for outbox, counter, reported in self._evictions:
            for priority, n in outbox.evicted.items():
                if n > reported.get(priority, 0):
                    counter.labels(priority=str(priority)).inc(n - reported.get(priority, 0))
                    reported[priority] = n

    # -- operator commands ------------------------------------------------------------------
    def _command(self, verb_path: str, item: Inbound, out: list[Message],
                 changed: set[str]) -> None:
        """``cmd/alarm/<verb>`` or ``cmd/model/load``; every command gets a reply."""
        try:
            body = json.loads(item.payload) if len(item.payload) <= MAX_COMMAND_BYTES else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        if not isinstance(body, dict):
            body = {}
        by = item.by or str(body.get("by", ""))
        accepted, reason = self._apply_command(verb_path, body, by, out, changed)
        known = verb_path in KNOWN_COMMANDS  # a label per unknown topic would grow forever
        self.metrics.commands.labels(command=verb_path if known else "unknown",
                                     result="accepted" if accepted else "refused").inc()
        reply = {"request_id": str(body.get("request_id", ""))[:100], "command": verb_path[:100],
                 "accepted": accepted, "reason": reason, "by": by[:100]}
        out.append(self._json(self._topic("reply"), reply, PRIO_STATUS))
        log.info("command %s by %r: %s (%s)", verb_path[:100], by[:100],
                 "accepted" if accepted else "refused", reason)

    def _apply_command(self, verb_path: str, body: dict, by: str, out: list[Message],
                       changed: set[str]) -> tuple[bool, str]:
        if by not in self.config.commands.allowed:
            return False, "identity not allowed to command this gateway"
        kind, _, verb = verb_path.partition("/")
        if kind == "model" and verb == "load":
            path = body.get("path")
            if not isinstance(path, str):
                return False, "model/load needs a 'path'"
            threading.Thread(target=self._try_bundle, args=(Path(path), f"command by {by}"),
                             daemon=True).start()
            return True, "loading; the result follows on the reply topic"
        if kind != "alarm" or verb not in COMMANDS:
            return False, f"unknown command {verb_path!r}"
        alarm = self.alarms.get(str(body.get("alarm_id", "")))
        if alarm is None:
            return False, "unknown alarm_id"
        duration = body.get("duration_s")
        if duration is not None and (isinstance(duration, bool)
                                     or not isinstance(duration, int | float)):
            return False, "duration_s must be a number"
        accepted, reason, events = alarm.command(verb, by, time.time(), duration)
        if accepted:
            changed.add(alarm.alarm_id)
            out.extend(self._alarm_messages(alarm, events))
        return accepted, reason

    # -- hot reload -------------------------------------------------------------------------
    def _scan_bundles(self) -> dict[str, float]:
        found = {}
        root = self.config.reload.models_dir
        for entry in sorted(root.iterdir()) if root and root.is_dir() else []:
            marker = entry / "manifest.json" if entry.is_dir() else entry
            if marker.exists() and (entry.is_dir() or entry.suffix == ".zip"):
                found[str(entry)] = marker.stat().st_mtime
        return found

    def _watch(self) -> None:
        while not self._stop.wait(self.config.reload.poll_s):
            try:
                for path, mtime in self._scan_bundles().items():
                    if self._seen_bundles.get(path) != mtime:
                        self._seen_bundles[path] = mtime
                        self._try_bundle(Path(path), "models_dir")
            except Exception:
                log.exception("bundle watcher error")

    def _try_bundle(self, path: Path, source: str) -> None:
        """Verify, load and warm up a bundle; hand it to the worker, or refuse it (old kept)."""
        try:
            bundle = Bundle.load(path)
            current = next((p for p in self.pipelines.values()
                            if p.bundle.manifest.name == bundle.manifest.name), None)
            if current is None:
                raise BundleError(f"{path}: no running model uses bundle "
                                  f"{bundle.manifest.name!r}")
            if current.bundle.manifest.task != bundle.manifest.task:
                raise BundleError(f"{path}: task {bundle.manifest.task} differs from the "
                                  f"running {current.bundle.manifest.task}")
            model = next(m for m in self.config.models if m.name == current.name)
            if model.public_key is not None:  # a signed deployment stays signed
                bundle = Bundle.load(path, model.public_key)
            pipeline = self._load_pipeline(model, bundle)
        except Exception as exc:  # any failure: refuse and keep the running version
            self.metrics.reloads.labels(result="refused").inc()
            log.error("bundle %s refused (%s): %s", path, source, exc)
            self._reply_now({"event": "reload", "accepted": False, "path": str(path),
                             "reason": str(exc)[:500]})
            return
        self.inbox.put(Swap(pipeline, f"{source}: {path}"))

    def _swap(self, swap: Swap, out: list[Message]) -> None:
        new, old = swap.pipeline, self.pipelines[swap.pipeline.name]
        same_input = new.bundle.manifest.input == old.bundle.manifest.input
        if same_input:  # keep the window being filled: no gap in the outputs
            new.buffer = old.buffer
        if new.alarm is not None and old.alarm is not None:
            new.alarm.active = old.alarm.active
        self.pipelines[new.name] = new
        self.routes = self._route_topics()
        if self.sparkplug is not None:
            self.sparkplug.reload(self.pipelines)
        if self.client.is_connected():
            self._subscribe_all(self.client)
            self.client.publish(self._topic("models"), self._models_status(), qos=1,
                                retain=True)
        self.metrics.reloads.labels(result="swapped").inc()
        log.info("model %s: version %s -> %s (%s)%s", new.name, old.bundle.manifest.version,
                 new.bundle.manifest.version, swap.source,
                 "" if same_input else "; input changed, window restarts")
        out.append(self._json(self._topic("reply"), {
            "event": "reload", "accepted": True, "model": new.name,
            "version": new.bundle.manifest.version, "previous": old.bundle.manifest.version},
            PRIO_STATUS))

    def _reply_now(self, body: dict) -> None:
        self.outbox.put([self._json(self._topic("reply"), body, PRIO_STATUS)])
        self.sender.notify_rows()


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line (``log_format: json``) for journald / log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        body = {"ts": iso_ms(record.created), "level": record.levelname,
                "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body)


def run(config_path: str | Path) -> None:
    config = load_edge_config(config_path)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter() if config.log_format == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=config.log_level, handlers=[handler])
    EdgeDaemon(config).run_forever()
