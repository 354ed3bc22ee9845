"""Sparkplug B input: NBIRTH/DBIRTH tracked, NDATA/DDATA metrics mapped to model tags and fed
as if they had arrived on the tags' raw topics (the decoding is in
:mod:`edge_runtime.sparkplug.inputs`, reached through the daemon's Sparkplug bridge)."""

from __future__ import annotations

from edge_runtime.inputs import Feed, Inbound, InputSource
from edge_runtime.outbox import Message
from edge_runtime.routing import Topics
from edge_runtime.sparkplug.bridge import SparkplugBridge


class SparkplugSource(InputSource):
    def __init__(self, bridge: SparkplugBridge, feed: Feed, topics: Topics, qos: int):
        self.bridge = bridge
        self.feed = feed
        self.topics = topics
        self.qos = qos

    def subscriptions(self) -> list[tuple[str, int]]:
        # not shared: a node's BIRTH and DATA must reach the same daemon
        return [(t, self.qos) for t in self.bridge.subscriptions()]

    def claims(self, topic: str) -> bool:
        return self.bridge.handles(topic)

    def handle(self, item: Inbound, out: list[Message], changed: set[str]) -> None:
        decoded, requests = self.bridge.handle(item.topic, item.payload, item.received_s)
        out.extend(requests)  # a rebirth request (NCMD), committed with the batch
        feed = self.feed
        if decoded.alias_fallbacks:
            feed.metrics.sparkplug_alias_fallbacks.inc(decoded.alias_fallbacks)
        for reason, n in decoded.rejects.items():
            feed.reject(item.topic, reason, item.payload, n)
        for tag, samples in decoded.samples.items():
            feed.feed(feed.routes.get(self.topics.get("raw", tag=tag), []), samples,
                      item.received_s, item.topic, item.payload)
