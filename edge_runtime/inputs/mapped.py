"""Mapped samples: tags read from an existing topic tree and payload shape (the config's
``tag_map``), e.g. ``plant/area/PT101/value`` carrying ``{"value": 3.2, "time": "…"}``, with
no bridge republishing them on ``<uns>/raw/<tag>``. Each tag names its topic, a JSON pointer
(RFC 6901) to the number and one to the timestamp; several tags may share one topic (one
payload holding several values). A sample is then fed exactly as a raw one would be."""

from __future__ import annotations

import math
import time

from edge_runtime.config import MappedTag, MqttConfig
from edge_runtime.inputs import Feed, Inbound, InputSource, subscribe
from edge_runtime.outbox import Message
from edge_runtime.payloads import (
    MAX_BATCH_BYTES,
    MAX_FUTURE_S,
    MIN_EPOCH_S,
    PayloadError,
    loads,
    parse_timestamp,
)
from edge_runtime.routing import Topics


def pointer(document: object, path: str) -> object:
    """The value at JSON pointer ``path`` (RFC 6901; '' = the document); PayloadError
    ``missing_field`` where the document has nothing there."""
    if not path:
        return document
    node = document
    for token in path[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise PayloadError("missing_field")
    return node


def extract(document: object, entry: MappedTag, received_s: float) -> tuple[float, float]:
    """One ``(timestamp_s, value)`` from a decoded payload, checked as raw samples are."""
    value = pointer(document, entry.value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError("not_a_number")
    try:
        value = float(value)
    except OverflowError as exc:
        raise PayloadError("not_finite") from exc
    if not math.isfinite(value):
        raise PayloadError("not_finite")
    if not entry.time:
        return received_s, value
    stamp = pointer(document, entry.time)
    if isinstance(stamp, int | float) and not isinstance(stamp, bool) and entry.time_unit == "s":
        stamp = stamp * 1000.0
    ts = parse_timestamp(stamp)
    if not MIN_EPOCH_S <= ts <= received_s + MAX_FUTURE_S:
        raise PayloadError("timestamp_out_of_range")
    return ts, value


class MappedSource(InputSource):
    def __init__(self, tag_map: dict[str, MappedTag], feed: Feed, topics: Topics,
                 mqtt: MqttConfig):
        self.feed = feed
        self.topics = topics
        self.qos, self.group = mqtt.qos, mqtt.shared_group
        self.by_topic: dict[str, list[tuple[str, MappedTag]]] = {}
        for tag, entry in tag_map.items():
            self.by_topic.setdefault(entry.topic, []).append((tag, entry))

    def subscriptions(self) -> list[tuple[str, int]]:
        return subscribe(self.by_topic, self.qos, self.group)

    def claims(self, topic: str) -> bool:
        return topic in self.by_topic

    def handle(self, item: Inbound, out: list[Message], changed: set[str]) -> None:
        feed = self.feed
        t0 = time.perf_counter()
        try:
            if len(item.payload) > MAX_BATCH_BYTES:
                raise PayloadError("too_large")
            document = loads(item.payload)
        except PayloadError as exc:
            feed.parse_s += time.perf_counter() - t0
            feed.reject(item.topic, str(exc), item.payload)
            return
        for tag, entry in self.by_topic[item.topic]:
            try:
                sample = extract(document, entry, item.received_s)
            except PayloadError as exc:  # this tag only: others in the payload still count
                feed.reject(item.topic, str(exc), item.payload)
                continue
            targets = feed.routes.get(self.topics.get("raw", tag=tag), [])
            feed.feed(targets, [sample], item.received_s, item.topic, item.payload)
        feed.parse_s += time.perf_counter() - t0
