"""Raw samples: UNS JSON (one sample or a batch) or a bare number on ``<uns>/raw/<tag>``."""

from __future__ import annotations

import time

from edge_runtime.config import MqttConfig
from edge_runtime.inputs import Feed, Inbound, InputSource, subscribe
from edge_runtime.outbox import Message
from edge_runtime.payloads import PayloadError, parse_samples


class RawSource(InputSource):
    def __init__(self, feed: Feed, mqtt: MqttConfig):
        self.feed = feed
        self.qos, self.group = mqtt.qos, mqtt.shared_group

    def subscriptions(self) -> list[tuple[str, int]]:
        return subscribe(self.feed.routes, self.qos, self.group)

    def claims(self, topic: str) -> bool:
        return topic in self.feed.routes

    def handle(self, item: Inbound, out: list[Message], changed: set[str]) -> None:
        feed = self.feed
        targets = feed.routes.get(item.topic)
        if targets is None:  # not routed (any more): as an unclaimed topic
            feed.metrics.rejected.labels(reason="unknown_topic").inc()
            return
        t0 = time.perf_counter()
        try:
            samples = parse_samples(item.payload, item.received_s)
        except PayloadError as exc:
            feed.reject(item.topic, str(exc), item.payload)
            return
        finally:
            feed.parse_s += time.perf_counter() - t0
        feed.feed(targets, samples, item.received_s, item.topic, item.payload)

    def handle_many(self, items: list[Inbound], out: list[Message], changed: set[str]) -> None:
        """A run of raw messages: each parsed (a bad one rejected alone, as in
        :meth:`handle`), then all their samples fed at once (:meth:`Feed.feed_many`)."""
        feed = self.feed
        routes, reject = feed.routes, feed.reject
        parsed = []
        t0 = time.perf_counter()
        for item in items:
            if item.topic not in routes:  # not routed (any more): as an unclaimed topic
                feed.metrics.rejected.labels(reason="unknown_topic").inc()
                continue
            try:
                parsed.append((item, parse_samples(item.payload, item.received_s)))
            except PayloadError as exc:
                reject(item.topic, str(exc), item.payload)
        feed.parse_s += time.perf_counter() - t0
        feed.feed_many(parsed)
