"""Where results go: topic names from the config's templates, and the outbox messages built
for inference results, alarm events and replies.

Kept apart from the daemon so that every input source (and the commands) builds its messages
the same way; the daemon only decides when they are committed.
"""

from __future__ import annotations

import logging
import time

from edge_runtime import fastjson
from edge_runtime.alarms import Alarm
from edge_runtime.config import EdgeConfig
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.outbox import PRIO_ALARM, PRIO_FORECAST, PRIO_STATUS, Message
from edge_runtime.payloads import parse_timestamp
from edge_runtime.pipelines import ModelPipeline, Output

log = logging.getLogger("procedge.edge")

Routes = dict[str, list[tuple[ModelPipeline, str]]]  # raw topic → (pipeline, tag) it feeds


class Topics:
    """Topic names, each formatted once: models, alarms and cameras make a bounded set."""

    def __init__(self, config: EdgeConfig):
        self._templates = config.topics
        self._gateway = config.gateway
        self._cache: dict[tuple, str] = {}

    def get(self, kind: str, **fields: str) -> str:
        key = (kind, *fields.items())
        topic = self._cache.get(key)
        if topic is None:
            t = self._templates
            topic = getattr(t, kind).format(uns=t.uns, gateway=self._gateway, **fields)
            if len(self._cache) < 10_000:  # models, alarms and cameras: a bounded set
                self._cache[key] = topic
        return topic

    def camera(self, topic: str, name: str) -> str:
        return (topic or "{uns}/camera/{camera}").format(uns=self._templates.uns, camera=name)

    def raw_routes(self, pipelines: dict[str, ModelPipeline]) -> Routes:
        """Each tag's raw topic → the pipelines (and their tag) that read it."""
        routes: Routes = {}
        for pipeline in pipelines.values():
            for tag in pipeline.tags:
                routes.setdefault(self.get("raw", tag=tag), []).append((pipeline, tag))
        return routes


def json_message(topic: str, body: dict, priority: int, retain: bool = False) -> Message:
    return Message(topic, fastjson.dumps(body), priority, retain)


class Router:
    """Pipeline outputs and alarm events → outbox messages (alarm transitions on the way)."""

    def __init__(self, topics: Topics, metrics: DaemonMetrics, alarms: dict[str, Alarm]):
        self.topics = topics
        self.metrics = metrics
        self.alarms = alarms

    def route_output(self, pipeline: ModelPipeline, output: Output, out: list[Message],
                     changed: set[str]) -> None:
        """Forecasts/scores go out as they are; detection transitions go through the alarm."""
        payload = output.payload
        if output.kind == "commissioning":
            out.append(self.commissioning_status(pipeline.name, payload))
            return
        if output.kind == "residual":  # a soft sensor against a lab value
            out.append(json_message(self.topics.get("residual", model=pipeline.name), payload,
                                    PRIO_FORECAST))
            self.metrics.published_residual.inc()
            return
        if output.kind == "advice":  # a control policy's shielded set-point
            out.append(json_message(self.topics.get("advice", model=pipeline.name), payload,
                                    PRIO_FORECAST))
            self.metrics.published.labels(kind="advice").inc()
            return
        alarm = self.alarms.get(pipeline.alarm_id)
        if output.kind == "inference":
            out.append(json_message(self.topics.get("inference", model=pipeline.name), payload,
                                    PRIO_FORECAST))
            self.metrics.published_inference.inc()
            if alarm is not None and alarm.condition_active and "score" in payload:
                priority = pipeline.alarm.priority(payload["score"])
                events = alarm.on_score(payload, priority, parse_timestamp(payload["ts"]),
                                        time.time())
                out.extend(self.alarm_messages(alarm, events))
                changed.update([alarm.alarm_id] if events else [])
            return
        alarm = self.alarms.get(output.alarm_id) if output.alarm_id else alarm
        if alarm is None:
            return
        events = alarm.on_condition(payload["event"], payload, parse_timestamp(payload["ts"]),
                                    time.time())
        changed.add(alarm.alarm_id)
        out.extend(self.alarm_messages(alarm, events))

    def commissioning_status(self, model: str, status: dict) -> Message:
        """The retained commissioning status of a model (edge_runtime/commissioner.py), and
        its state on /metrics."""
        self.metrics.commissioning_state(model, status.get("state", ""))
        return json_message(self.topics.get("commissioning", model=model), status,
                            PRIO_STATUS, retain=True)

    def alarm_messages(self, alarm: Alarm, events: list[dict]) -> list[Message]:
        msgs = []
        for event in events:
            self.metrics.alarm_events.labels(event=event["event"]).inc()
            self.metrics.published_alarm.inc()
            msgs.append(json_message(self.topics.get("alarm", model=alarm.model,
                                                     alarm_id=alarm.alarm_id), event, PRIO_ALARM))
            log.warning("alarm %s %s -> %s priority=%s score=%s", alarm.alarm_id,
                        event["event"], event["state"], event["priority"], event.get("score"))
        return msgs

    def alarm_states(self, changed: set[str]) -> list[Message]:
        """The retained ISA-18.2 state of each alarm that changed."""
        return [json_message(self.topics.get("alarm_state", model=self.alarms[aid].model,
                                             alarm_id=aid),
                             self.alarms[aid].snapshot(), PRIO_ALARM, retain=True)
                for aid in changed]
