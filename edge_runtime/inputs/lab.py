"""Lab and analyzer values for soft sensors on ``<uns>/lab/<tag>`` (``topics.lab``), one
sample ``{"v": 51.2, "ts": "…"}`` per message, stamped when the result became known.

The whole lab branch is subscribed (``+`` for the tag), so a value for a tag no soft sensor
estimates is seen, counted (``lab_unknown_tag``) and skipped rather than silently unheard.
A value stamped ahead of the receive clock by more than ``event_time.max_skew_s`` is
``lab_future``; one not newer than the last used ``lab_stale``; one whose window was not
estimated ``lab_unmatched`` (each counted in ``procedge_messages_rejected_total`` and logged
once a minute per topic). A used one is published as a residual (``topics.residual``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from edge_runtime.config import EdgeConfig
from edge_runtime.inputs import Feed, Inbound, InputSource, subscribe
from edge_runtime.outbox import Message
from edge_runtime.payloads import PayloadError, parse_sample
from edge_runtime.pipelines import ModelPipeline
from edge_runtime.routing import Router
from edge_runtime.tasks.soft_sensor import on_lab, snapshot

TAG = "\0"  # stands for {tag} while the template is split
STATE_PREFIX = "soft_sensor:"  # outbox state key of each model's bias


class LabSource(InputSource):
    def __init__(self, config: EdgeConfig, pipelines: dict[str, ModelPipeline], feed: Feed,
                 router: Router, flush: Callable[[list[Message], set[str]], None]):
        """``pipelines``: the running ones (the daemon's dict: a reload shows here);
        ``flush``: run the windows waiting in every pipeline (a lab value must find the
        estimates of the samples that came before it in the same batch)."""
        t = config.topics
        self.prefix, self.suffix = t.lab.format(uns=t.uns, tag=TAG).split(TAG)
        self.pipelines = pipelines
        self.feed = feed
        self.router = router
        self.flush = flush
        self.qos, self.group = config.mqtt.qos, config.mqtt.shared_group
        skew = config.event_time.max_skew_s
        self.max_skew_s = float("inf") if skew is None else skew
        self.dirty: set[str] = set()  # models whose bias moved since the last commit

    def take_state(self) -> dict[str, str]:
        """The outbox state entries of the models whose bias moved (committed with the batch
        that moved it, so a restart resumes with it)."""
        state = {f"{STATE_PREFIX}{name}": json.dumps(snapshot(self.pipelines[name]))
                 for name in self.dirty if name in self.pipelines}
        self.dirty.clear()
        return state

    def _soft_sensors(self) -> list[ModelPipeline]:
        return [p for p in self.pipelines.values() if p.bundle.manifest.soft_sensor]

    def subscriptions(self) -> list[tuple[str, int]]:
        if not self._soft_sensors():
            return []
        return subscribe([f"{self.prefix}+{self.suffix}"], self.qos, self.group)

    def claims(self, topic: str) -> bool:
        return self.tag_of(topic) is not None

    def tag_of(self, topic: str) -> str | None:
        """The tag level of a lab topic; None for any other topic."""
        if not (topic.startswith(self.prefix) and topic.endswith(self.suffix)):
            return None
        tag = topic[len(self.prefix):len(topic) - len(self.suffix)]
        return tag if tag and "/" not in tag else None

    def handle(self, item: Inbound, out: list[Message], changed: set[str]) -> None:
        feed = self.feed
        tag = self.tag_of(item.topic)
        targets = [p for p in self._soft_sensors() if p.bundle.manifest.soft_sensor.target == tag]
        t0 = time.perf_counter()
        try:
            if not targets:
                raise PayloadError("lab_unknown_tag")
            stamp, value = parse_sample(item.payload, item.received_s)
            if stamp > item.received_s + self.max_skew_s:
                raise PayloadError("lab_future")
        except PayloadError as exc:
            feed.reject(item.topic, str(exc), item.payload)
            return
        finally:
            feed.parse_s += time.perf_counter() - t0
        self.flush(out, changed)  # the estimates of every sample received before this value
        for pipeline in targets:
            try:
                output = on_lab(pipeline, stamp, value)
            except PayloadError as exc:
                feed.reject(item.topic, str(exc), item.payload)
                continue
            feed.metrics.lab_values.labels(model=pipeline.name).inc()
            self.dirty.add(pipeline.name)
            self.router.route_output(pipeline, output, out, changed)
