"""The gateway daemon: MQTT in, LiteRT pipelines, forecasts and alarms out — nothing lost.

:class:`EdgeDaemon` is a start-up sequence of small parts: config → outbox (alarm states
restored) → pipelines (bundles verified, warmed up) → input sources → MQTT session → threads.
Three threads do the work, none of them inside paho's callbacks:

- the network thread (paho, :mod:`edge_runtime.session`) only enqueues received messages and
  PUBACK ids;
- the worker hands each message to its input source (:mod:`edge_runtime.inputs`), runs the
  windows, the models and the ISA-18.2 alarms, and commits everything the batch produced to
  the SQLite outbox in one transaction; only then are the inputs acknowledged (manual QoS 1
  acks, :mod:`edge_runtime.acker`), so a SIGKILL never loses an input it consumed;
- the sender (:mod:`edge_runtime.sender`) publishes outbox rows in order (a bounded number
  in flight, 16-bit packet ids) and deletes a row only when its PUBACK arrives.

Operator commands (:mod:`edge_runtime.commands`) are handled in the worker too; new bundles
are verified and warmed up off it (:mod:`edge_runtime.reload`) and swapped in between two
messages.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from edge_runtime import fastjson
from edge_runtime.acker import InputAcker
from edge_runtime.alarms import Alarm, AlarmPolicy
from edge_runtime.allocator import Trimmer, freeze_startup
from edge_runtime.bundle import Bundle
from edge_runtime.commands import Commands
from edge_runtime.commissioner import BaselineStore, Commissioning
from edge_runtime.config import EdgeConfig, check_files, load_edge_config
from edge_runtime.failover import Failover
from edge_runtime.imaging import ImagePipeline, camera_pipeline
from edge_runtime.inputs import Dispatch, Feed, Inbound, InputSource, LogThrottle
from edge_runtime.inputs.camera import CameraSource
from edge_runtime.inputs.folder import FolderSource
from edge_runtime.inputs.lab import STATE_PREFIX as LAB_STATE_PREFIX
from edge_runtime.inputs.lab import LabSource
from edge_runtime.inputs.mapped import MappedSource
from edge_runtime.inputs.raw import RawSource
from edge_runtime.logs import JsonLogFormatter, audit, setup_logging
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.outbox import PRIO_STATUS, Message, Outbox
from edge_runtime.partition import worker_names
from edge_runtime.payloads import iso_ms
from edge_runtime.pipelines import ModelPipeline
from edge_runtime.reload import Reloader, Swap, hand_over, load_pipeline
from edge_runtime.routing import Router, Routes, Topics, json_message
from edge_runtime.sender import OutboxSender
from edge_runtime.session import MqttSession
from edge_runtime.supervisor import Supervisor
from edge_runtime.systemd import Notifier
from edge_runtime.tasks import control as control_task
from edge_runtime.tasks.soft_sensor import restore as restore_soft_sensor

if TYPE_CHECKING:
    from edge_runtime.sparkplug.bridge import SparkplugBridge

__all__ = ["EdgeDaemon", "Inbound", "JsonLogFormatter", "Swap", "run"]

log = logging.getLogger("procedge.edge")
CONTROL_STATE_PREFIX = "control:"  # outbox state key of each control model's set-point
BATCH = 256  # inbound messages committed (and acknowledged) together
_UNCLAIMABLE = object()  # a message whose topic's claim raised: counted, not handled


class EdgeDaemon:
    def __init__(self, config: EdgeConfig):
        self.config = config
        self.metrics = DaemonMetrics()
        self.topics = Topics(config)
        self._topic = self.topics.get
        a = config.alarms
        self.policy = AlarmPolicy(max_shelve_s=a.max_shelve_s,
                                  max_out_of_service_s=a.max_out_of_service_s,
                                  chatter_count=a.chatter_count,
                                  chatter_window_s=a.chatter_window_s)
        # pipelines: every bundle verified and warmed up before anything connects
        self.pipelines = {m.name: load_pipeline(m, Bundle.load(m.bundle, m.public_key),
                                                config.event_time, config.drift)
                          for m in config.models}
        self.cameras: dict[str, ImagePipeline] = {
            self.topics.camera(c.topic, c.name): camera_pipeline(c) for c in config.cameras}
        # outputs are durable first: the outbox also holds the alarms' states (created once
        # every bundle has loaded, so a refused bundle leaves nothing behind)
        self.outbox = Outbox(config.outbox.path, config.outbox.max_rows, config.outbox.synchronous)
        self.alarms = self._restore_alarms()
        self._restore_soft_sensors()
        self._restore_control()
        self.router = Router(self.topics, self.metrics, self.alarms)
        self.failover = Failover.create(config, self.topics, self.metrics,  # ha: a pair
                                        lambda: self.router.alarm_states(set(self.alarms)))
        # commissioning calibrations: stored baselines reloaded, statuses retained
        self.baselines = BaselineStore(config.state_dir)
        self.outbox.put([self.router.commissioning_status(p.name, c.status())
                         for p in self.pipelines.values()
                         if (c := self._commission(p, "start")) is not None])
        self.feed = Feed(self.topics.raw_routes(self.pipelines), self.metrics)
        self.sparkplug = self._sparkplug_bridge()
        # inputs: the worker's inbox, the reload and command paths, then the sources
        self._stop = threading.Event()
        self.inbox: queue.Queue[Inbound | Swap | None] = queue.Queue(config.queue_size)
        self.reloader = Reloader(config, self.pipelines, self.metrics, self.inbox.put,
                                 self._reply_now, self._stop)
        self.commands = Commands(config.commands, self.router, self._flush_pipelines,
                                 self.reloader.request, self._rebaseline)
        self.inputs: list[InputSource] = [  # in dispatch order, after the commands
            CameraSource(self.cameras, self.router, config.topics.uns, config.mqtt),
            *self._sparkplug_inputs(),
            *([MappedSource(config.tag_map, self.feed, self.topics, config.mqtt)]
              if config.tag_map else []),
            *self._opcua_inputs(),
            *self._lab_inputs(),
            RawSource(self.feed, config.mqtt),
            FolderSource(config.cameras, self.topics, self.inbox, self._stop),
        ]
        self.dispatch = Dispatch([self.commands, *self.inputs])
        self._error_log = LogThrottle()  # unexpected errors: one traceback per topic a minute
        # the MQTT session, the sender and the acker
        self.session = MqttSession(config, self.metrics, self.topics, self.inbox,
                                   self._subscriptions, self._models_status, self._stop)
        self.client, self.subscribed = self.session.client, self.session.subscribed
        self._generation = 0  # the session's connection whose inputs the worker last saw
        self._hold_until = 0.0  # monotonic time when the grids' reconnect hold ends (0: none)
        self.sender = OutboxSender(self.client, self.outbox, config.outbox, self.metrics)
        self.client.on_publish = self.sender.on_publish
        self.session.on_connected = self.sender.wake.set
        main, *sparkplug = self._outboxes()
        self.metrics.watch(lambda: main.depth, lambda: list(self.alarms.values()),
                           lambda: sum(o.depth for o in sparkplug))
        # (outbox, its eviction counter, evictions counted so far by priority)
        self._evictions = [(main, self.metrics.outbox_evicted, {})] + [
            (o, self.metrics.sparkplug_outbox_evicted, {}) for o in sparkplug]
        self.acker = InputAcker([main, *sparkplug], self.session.ack_inputs)
        self._worker = threading.Thread(target=self._work, name="procedge-worker", daemon=True)
        self._tick_s = self._tick_interval()
        self._trimmer = Trimmer()  # free heap memory back to the OS after bursts
        self._http = None

    # -- start-up -------------------------------------------------------------------------
    def _tick_interval(self) -> float:
        """How long the worker waits for input before it runs the clock's work anyway: 0.5 s,
        or a quarter of the shortest control period in wall time (a watchdog's timer must
        see a missed period within it; a simulated plant may run many times real time)."""
        periods = [p.task_state.wall_period_s for p in self.pipelines.values()
                   if isinstance(p.task_state, control_task.ControlState)]
        return max(0.01, min([0.5] + [w / 4 for w in periods]))

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
        for pipeline in self.pipelines.values():
            self._drift_alarms(pipeline, alarms, saved)
            self._control_alarms(pipeline, alarms, saved)
        return alarms

    def _control_alarms(self, pipeline, alarms: dict[str, Alarm], saved: dict) -> None:
        """The ISA-18.2 alarms of a control model (watchdog, guard, write), restored if
        saved; the shield's conditions start from them, so a restart does not raise again."""
        if pipeline.bundle.manifest.task != "control":
            return
        for aid in control_task.alarm_ids(pipeline):
            if aid not in alarms:
                alarms[aid] = (Alarm.restore(saved[aid], self.policy) if aid in saved
                               else Alarm(aid, pipeline.name, self.policy))
            kind = aid.rsplit(".", 1)[1]
            pipeline.task_state.conditions[kind] = alarms[aid].condition_active

    def _commission(self, pipeline: ModelPipeline, by: str) -> Commissioning | None:
        """Attach a commissioning to a pipeline whose bundle declares one (its stored baseline
        reloaded when it is for this bundle version)."""
        cal = pipeline.bundle.manifest.calibration
        if cal is None or not cal.commissioning:
            return None
        pipeline.commissioning = Commissioning(pipeline, self.baselines, by)
        return pipeline.commissioning

    def _drift_alarms(self, pipeline, alarms: dict[str, Alarm], saved: dict) -> None:
        """An ISA-18.2 alarm per drift alarm id of ``pipeline`` (restored if saved, kept if
        it exists: a reloaded bundle), its detection logic set to the alarm's condition."""
        if pipeline.drift is None:
            return
        for aid in pipeline.drift.alarm_ids:
            if aid not in alarms:
                alarms[aid] = (Alarm.restore(saved[aid], self.policy) if aid in saved
                               else Alarm(aid, pipeline.name, self.policy))
            pipeline.drift.logic(aid).active = alarms[aid].condition_active

    def _sparkplug_bridge(self) -> SparkplugBridge | None:
        """Sparkplug B in/out when configured (imported only then: it loads protobuf)."""
        sp = self.config.sparkplug
        if sp.input is None and sp.output is None:
            return None
        from edge_runtime.sparkplug.bridge import SparkplugBridge

        return SparkplugBridge(self.config, self.metrics, self.pipelines, self._topic,
                               self.failover)

    def _sparkplug_inputs(self) -> list[InputSource]:
        if self.sparkplug is None or self.sparkplug.input is None:
            return []
        from edge_runtime.inputs.sparkplug import SparkplugSource

        return [SparkplugSource(self.sparkplug, self.feed, self.topics, self.config.mqtt.qos)]

    def _opcua_inputs(self) -> list[InputSource]:
        """The OPC UA client when configured (imported only then: asyncua is an extra)."""
        if self.config.opcua is None:
            return []
        from edge_runtime.inputs.opcua import OpcUaSource  # asyncua itself: in its thread

        return [OpcUaSource(self.config.opcua, self.feed, self.topics, self.inbox, self._stop)]

    def _lab_inputs(self) -> list[InputSource]:
        """Lab values when a soft sensor runs (a reload never changes a model's task)."""
        self.lab: LabSource | None = None
        if any(p.bundle.manifest.soft_sensor for p in self.pipelines.values()):
            self.lab = LabSource(self.config, self.pipelines, self.feed, self.router,
                                 self._flush_pipelines)
        return [self.lab] if self.lab else []

    def _restore_soft_sensors(self) -> None:
        """Each soft sensor's bias as the last run committed it (same bundle version only)."""
        saved = self.outbox.state()
        for name, pipeline in self.pipelines.items():
            entry = saved.get(f"{LAB_STATE_PREFIX}{name}")
            if entry and pipeline.bundle.manifest.soft_sensor and restore_soft_sensor(
                    pipeline, json.loads(entry)):
                log.info("model %s: bias %.6g restored", name, pipeline.task_state.bias.bias)

    def _restore_control(self) -> None:
        """Each control model's set-point as the last run committed it: the first rate limit
        after a restart starts from what the plant has."""
        saved = self.outbox.state()
        for name, pipeline in self.pipelines.items():
            entry = saved.get(f"{CONTROL_STATE_PREFIX}{name}")
            if (entry and pipeline.bundle.manifest.task == "control"
                    and control_task.restore(pipeline, json.loads(entry))):
                log.info("model %s: continues from set-point %.6g", name,
                         pipeline.task_state.shield.last)

    def _control_state(self) -> dict[str, str]:
        """The outbox state entries of the control models that decided or wrote since the last
        commit (committed with that batch, so a restart resumes from them)."""
        state = {}
        for name, pipeline in self.pipelines.items():
            if getattr(pipeline.task_state, "dirty", False):
                pipeline.task_state.dirty = False
                state[f"{CONTROL_STATE_PREFIX}{name}"] = json.dumps(
                    control_task.snapshot(pipeline))
        return state

    def _outboxes(self) -> list[Outbox]:
        node = self.sparkplug.node if self.sparkplug is not None else None
        return [self.outbox] + ([node.outbox] if node is not None else [])

    @property
    def routes(self) -> Routes:
        """Raw topic → the pipelines (and tag) it feeds."""
        return self.feed.routes

    def _subscriptions(self) -> list[tuple[str, int]]:
        return [s for source in self.inputs for s in source.subscriptions()] + \
            self.commands.subscriptions()

    def _models_status(self) -> str:
        return json.dumps({n: p.bundle.manifest.version for n, p in self.pipelines.items()})

    def start(self) -> None:
        """Connect and start the network, worker and sender threads; returns at once."""
        if self.config.metrics_port:
            self._http = self.metrics.serve(self.config.metrics_port, self.health,
                                            self.config.metrics_host)
        self.session.connect()
        if self.failover is not None:
            self.failover.start()
        self.acker.start()
        self._worker.start()
        self.sender.start()
        if self.sparkplug is not None:
            self.sparkplug.start()
        self.reloader.start()
        for source in self.inputs:
            source.start()
        c = self.config.mqtt
        log.info("started: %d model(s), %d topic(s), broker %s:%d%s, outbox %d pending",
                 len(self.pipelines), len(self.routes), c.host, c.port,
                 " (TLS)" if c.tls else "", self.outbox.depth)

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then drain and stop cleanly."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        self.start()
        # systemd Type=notify: ready once subscribed; the watchdog fed while the threads live
        notifier = Notifier.from_env()
        notifier.start(lambda: self.health()[0], self._threads_alive, self._stop)
        self._stop.wait()
        notifier.send("STOPPING=1")
        self.stop()

    def _threads_alive(self) -> bool:
        return (self._worker.is_alive() and self.acker.is_alive() and self.sender.is_alive()
                and (self.sparkplug is None or self.sparkplug.is_alive()))

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
        if self.sparkplug is not None:  # a pair's node ends its session while it holds the lease
            self.sparkplug.stop(drain_timeout_s)
        if self.failover is not None:  # after the drain: a standby then takes over at once
            self.failover.stop()
        self.session.close()
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
        detail = {"connected": self.client.is_connected(),
                  "subscribed": self.subscribed.is_set(), "outbox": self.outbox.depth,
                  "models": {n: p.bundle.manifest.version for n, p in self.pipelines.items()}}
        if self.config.opcua is not None:  # reported, not required: a server outage must not
            # get the gateway restarted (systemd's readiness and watchdog read `ok`)
            detail["opcua"] = self.metrics.value("procedge_opcua_connected") == 1
        if self.failover is not None:
            detail["ha"] = {"peer": self.config.ha.peer_id, "role": self.failover.lease.role}
        return ok, detail

    # -- worker: inputs → outbox ------------------------------------------------------------
    def _work(self) -> None:
        while True:
            try:
                first = self.inbox.get(timeout=self._tick_s)
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
                self.metrics.rejected.labels(reason="internal_error").inc()
                if self._error_log.due(""):  # "": the batch, not a topic
                    log.exception("unexpected error in a batch of %d (further ones logged "
                                  "once a minute)", len(batch))
            self._trimmer.after_batch(idle=first is ...)
            if None in batch:
                break

    def _process(self, batch: list[Inbound | Swap | None]) -> None:
        out: list[Message] = []
        changed: set[str] = set()
        self.feed.parse_s = 0.0
        start = time.perf_counter()
        self._hold_on_reconnect()
        for source, items in runs(batch, self._source_of):
            if isinstance(source, Swap):
                self._flush_pipelines(out, changed)  # the old model finishes its windows
                self._swap(source, out, changed)
            elif source is None:
                self.metrics.rejected.labels(reason="unknown_topic").inc(len(items))
            elif source is not _UNCLAIMABLE:  # (those are counted already)
                self._handle(source, items, out, changed)
        self._flush_pipelines(out, changed)
        self.metrics.stage_parse.observe(self.feed.parse_s)
        self.metrics.stage_models.observe(time.perf_counter() - start - self.feed.parse_s)
        now = time.time()
        for alarm in self.alarms.values():
            events = alarm.tick(now)
            if events:
                changed.add(alarm.alarm_id)
                out.extend(self.router.alarm_messages(alarm, events))
        start = time.perf_counter()
        state = {f"alarm:{a}": fastjson.dumps(self.alarms[a].snapshot()).decode()
                 for a in changed}
        if self.lab is not None:
            state |= self.lab.take_state()  # the soft sensors' biases
        state |= self._control_state()  # the set-points the plants have
        out.extend(self.router.alarm_states(changed))
        if self.sparkplug is not None:  # its own outbox, also before the inputs are acked
            self.sparkplug.enqueue(out)  # (in a pair it holds its own rows: sparkplug/pair.py)
        if self.failover is not None:  # a standby holds its results back
            out = self.failover.route(out)
        self.outbox.put(out, state, sync=False)  # durable before the inputs are acked: ...
        if out:
            self.sender.publish_now()  # (the results' latency runs from here)
        inputs = [item for item in batch if isinstance(item, Inbound)]
        self.acker.submit(inputs)  # ... there
        self.metrics.messages.inc(len(inputs))  # "messages_total": committed, done with
        self.metrics.stage_commit.observe(time.perf_counter() - start)
        if out:  # rows are evicted only when rows are added
            self._report_evictions()

    def _source_of(self, topic: str) -> InputSource | object | None:
        """The source claiming ``topic``; a claim that raises (a bug) counts the message as
        an internal error, as an exception while handling it does."""
        try:
            return self.dispatch.source_of(topic)
        except Exception:
            self.metrics.rejected.labels(reason="internal_error").inc()
            if self._error_log.due(topic):
                log.exception("unexpected error handling %s (further ones on this topic "
                              "logged once a minute)", topic[:200])
            return _UNCLAIMABLE

    def _handle(self, source: InputSource, items: list[Inbound], out: list[Message],
                changed: set[str]) -> None:
        """A run of messages one source claimed, handled at once (:meth:`handle_many`)."""
        try:
            source.handle_many(items, out, changed)
        except Exception:  # a bug, not a bad input: counted per message, its traceback
            # logged once a minute per topic of the run
            self.metrics.rejected.labels(reason="internal_error").inc(len(items))
            for topic in {item.topic: None for item in items}:
                if self._error_log.due(topic):
                    log.exception("unexpected error handling %s (further ones on this topic "
                                  "logged once a minute)", topic[:200])

    def _hold_on_reconnect(self) -> None:
        """(worker, once per batch) After a reconnect the broker redelivers unacknowledged
        inputs and sends what it queued while publishers send anew: for a while they come
        out of order, within a topic too. For ``event_time.reconnect_hold_s`` the window
        grids then finalise only what the watermark passed (docs/edge_daemon.md, "Event
        time"). The worker runs a batch at least every 0.5 s, so a hold also ends when no
        input follows it."""
        generation = self.session.generation
        if generation != self._generation:
            hold_s = self.config.event_time.reconnect_hold_s
            if self._generation and hold_s > 0:  # a reconnect, not this process's first connect
                for pipeline in self.pipelines.values():
                    pipeline.buffer.hold_eager()
                self._hold_until = time.monotonic() + hold_s
                log.info("reconnected: window grids wait for the watermark for %.0f s", hold_s)
            self._generation = generation
        elif self._hold_until and time.monotonic() >= self._hold_until:
            self._hold_until = 0.0
            for pipeline in self.pipelines.values():
                pipeline.release_eager()

    def _flush_pipelines(self, out: list[Message], changed: set[str]) -> None:
        """Run the windows the batch completed, model by model, and route the results in
        window-time order across models (as if each window had run on its own message)."""
        results = []
        for pipeline in self.pipelines.values():
            results.extend((output.grid_t, pipeline, output)
                           for output in pipeline.flush() + pipeline.tick())
            self.metrics.observe_pipeline(pipeline)
        results.sort(key=lambda r: r[0])  # stable: each model's own order is kept
        for _, pipeline, output in results:
            if output.kind == "write":  # closed loop: now, never replayed from the outbox
                for result in self._write(pipeline, output):
                    self.router.route_output(pipeline, result, out, changed)
                self.metrics.observe_pipeline(pipeline)  # a failed write's count
            else:
                self.router.route_output(pipeline, output, out, changed)

    def _write(self, pipeline: ModelPipeline, output) -> list:
        """Write a closed-loop model's shielded set-point to its write topic. Not through the
        outbox: a set-point must reach the plant in its period or not at all (a replay after
        a reconnect would apply a stale one). Not connected, or refused by the client: the
        write failed — counted, the write alarm raised, the shield told."""
        if self.failover is not None and not self.failover.active:  # the active writes it
            return control_task.write_result(pipeline, output.grid_t, output.payload["v"], True)
        topic = pipeline.task_state.options.write_topic
        ok = False
        if self.client.is_connected():
            try:
                info = self.client.publish(topic, json.dumps(output.payload),
                                           qos=self.config.mqtt.qos)
                ok = info.rc == 0  # MQTT_ERR_SUCCESS
            except (ValueError, OSError):
                ok = False
        self.metrics.control_writes.labels(model=pipeline.name,
                                           result="ok" if ok else "failed").inc()
        if not ok and self._error_log.due(f"write:{pipeline.name}"):
            log.warning("model %s: set-point write to %s failed (further ones logged once a "
                        "minute)", pipeline.name, topic)
        return control_task.write_result(pipeline, output.grid_t, output.payload["v"], ok)

    def _report_evictions(self) -> None:
        """Count the rows each outbox evicted since the last report (the Sparkplug one too)."""
        for outbox, counter, reported in self._evictions:
            for priority, n in outbox.evicted.items():
                if n > reported.get(priority, 0):
                    counter.labels(priority=str(priority)).inc(n - reported.get(priority, 0))
                    reported[priority] = n

    # -- hot reload (worker side) -------------------------------------------------------------
    def _swap(self, swap: Swap, out: list[Message], changed: set[str]) -> None:
        """Replace the running pipeline of the same name; inputs and subscriptions follow."""
        new, old = swap.pipeline, self.pipelines[swap.pipeline.name]
        same_input = hand_over(old, new)
        self._drift_alarms(new, self.alarms, {})
        self._control_alarms(new, self.alarms, {})
        if self._commission(new, f"bundle {new.bundle.manifest.version}") is not None:
            alarm = self.alarms.get(new.alarm_id)
            if new.commissioning.collecting and alarm is not None and alarm.condition_active:
                self._clear_for_rebaseline(new, alarm, "bundle reload", out, changed)
            out.append(self.router.commissioning_status(new.name, new.commissioning.status()))
        self.pipelines[new.name] = new
        self.feed.routes = self.topics.raw_routes(self.pipelines)
        self.dispatch.forget()  # the raw topics may have changed
        if self.sparkplug is not None:
            self.sparkplug.reload(self.pipelines)
        self.session.refresh()
        self.metrics.reloads.labels(result="swapped").inc()
        audit.info("model %s: version %s -> %s (%s)%s", new.name, old.bundle.manifest.version,
                 new.bundle.manifest.version, swap.source,
                 "" if same_input else "; input changed, window restarts")
        out.append(json_message(self._topic("reply"), {
            "event": "reload", "accepted": True, "model": new.name,
            "version": new.bundle.manifest.version, "previous": old.bundle.manifest.version},
            PRIO_STATUS))

    def _rebaseline(self, body: dict, by: str, out: list[Message],
                    changed: set[str]) -> tuple[bool, str]:
        """``cmd/model/rebaseline`` ``{"model": …, "force": false}``: commission again (after
        maintenance). Refused while the model's alarm is active unless ``force`` is true;
        then the alarm's condition clears (the baseline it was judged by is being replaced)."""
        pipeline = self.pipelines.get(str(body.get("model", "")))
        if pipeline is None:
            return False, "unknown model"
        if pipeline.commissioning is None:
            return False, f"model {pipeline.name!r}: its bundle declares no commissioning"
        force = body.get("force", False)
        if not isinstance(force, bool):
            return False, "force must be true or false"
        alarm = self.alarms.get(pipeline.alarm_id)
        if alarm is not None and alarm.condition_active and not force:
            return False, (f"alarm {alarm.alarm_id} is active: rebaseline refused (send "
                           "force: true to commission anyway)")
        if alarm is not None and alarm.condition_active:
            self._clear_for_rebaseline(pipeline, alarm, by, out, changed)
        pipeline.commissioning.restart(f"{by} (forced)" if force else by)
        out.append(self.router.commissioning_status(pipeline.name,
                                                    pipeline.commissioning.status()))
        return True, (f"commissioning restarted: collecting {pipeline.commissioning.samples} "
                      "samples, no alarms until it is done")

    def _clear_for_rebaseline(self, pipeline: ModelPipeline, alarm: Alarm, by: str,
                              out: list[Message], changed: set[str]) -> None:
        now = time.time()
        pipeline.alarm.active = False
        record = pipeline.base_payload() | {"ts": iso_ms(now)}
        events = alarm.on_condition("clear", record, now, now)
        for event in events:
            event["reason"] = f"forced rebaseline by {by}"
        changed.add(alarm.alarm_id)
        out.extend(self.router.alarm_messages(alarm, events))

    def _reply_now(self, body: dict) -> None:
        """A reply outside any batch (a refused bundle): committed and sent at once."""
        self.outbox.put([json_message(self._topic("reply"), body, PRIO_STATUS)])
        self.sender.notify_rows()


def runs(batch: list[Inbound | Swap | None], source_of
         ) -> Iterator[tuple[InputSource | Swap | None, list[Inbound]]]:
    """The batch as runs of consecutive messages claimed by the same source (None: no
    source), a swap on its own (``(swap, [])``) between them: arrival order is kept across
    sources, and a run of raw samples is fed at once."""
    source, items = None, []
    for item in batch:
        if isinstance(item, Inbound):
            claimed = source_of(item.topic)
            if items and claimed is not source:
                yield source, items
                items = []
            source = claimed
            items.append(item)
        elif isinstance(item, Swap):
            if items:
                yield source, items
                items = []
            yield item, []
    if items:
        yield source, items


def run(config_path: str | Path, log_level: str | None = None,
        log_format: str | None = None) -> None:
    """``procedge run``: the config checked (files too) before anything is created, logging
    set up once from the config, the CLI's ``--log-level`` / ``--log-format`` winning."""
    config = load_edge_config(config_path)
    check_files(config, config_path)
    setup_logging(log_level or config.log_level, log_format or config.log_format)
    if len(worker_names(config)) > 1:  # every core: worker processes under a supervisor
        Supervisor(config, log_level or config.log_level,
                   log_format or config.log_format).run_forever()
        return
    daemon = EdgeDaemon(config)
    freeze_startup()
    daemon.run_forever()
