"""Input sources: what the daemon subscribes to and how each inbound message becomes samples
(or frames) for the pipelines. One file per source; adding one is adding a file and a line in
the daemon's start-up.

The worker hands each message to the first source that claims its topic (:class:`Dispatch`,
in the daemon's order: commands → camera → Sparkplug → mapped (``tag_map``) → OPC UA (its
own ``$opcua/`` items, put in the inbox by its client thread) → lab (soft sensors) → raw).
Sources run in the worker thread, so they need no locks; what they produce goes into the
batch's ``out`` list and is committed with it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from edge_runtime.metrics import DaemonMetrics
from edge_runtime.outbox import Message
from edge_runtime.pipelines import ModelPipeline
from edge_runtime.routing import Routes

log = logging.getLogger("procedge.edge")
MALFORMED_LOG_INTERVAL_S = 60.0
MAX_CACHED_TOPICS = 10_000  # topics whose source is remembered (bounded under a topic flood)


@dataclass(slots=True)  # one per message: no per-instance __dict__
class Inbound:
    topic: str
    payload: bytes
    received_s: float
    mid: int = 0
    qos: int = 0
    generation: int = 0
    by: str = ""  # MQTT 5 user property "by" (commands)


class InputSource:
    """One kind of input. The defaults suit a source that only feeds the inbox (a folder)."""

    def subscriptions(self) -> list[tuple[str, int]]:
        """Topic filters (and QoS) to subscribe to on every connect."""
        return []

    def claims(self, topic: str) -> bool:
        """Whether this source handles messages on ``topic`` (asked once per topic)."""
        return False

    def handle(self, item: Inbound, out: list[Message], changed: set[str]) -> None:
        """Turn one message into samples / outputs; messages to publish go into ``out``,
        the ids of alarms whose state changed into ``changed``."""
        raise NotImplementedError

    def handle_many(self, items: list[Inbound], out: list[Message], changed: set[str]) -> None:
        """A run of consecutive messages this source claimed, as :meth:`handle` one by one;
        a source that can do a run at once (raw samples) overrides it."""
        for item in items:
            self.handle(item, out, changed)

    def start(self) -> None:
        """Start what runs beside the worker (threads), if anything."""


def subscribe(topics, qos: int, group: str | None) -> list[tuple[str, int]]:
    """Topic filters at ``qos``, each under ``$share/<group>/`` when the daemons of a group
    split the inputs between them."""
    return [(f"$share/{group}/{t}" if group else t, qos) for t in topics]


class Dispatch:
    """Topic → the first source that claims it, remembered per topic: one dict lookup per
    message instead of asking each source again."""

    def __init__(self, sources: list[InputSource]):
        self.sources = sources
        self._known: dict[str, InputSource | None] = {}

    def source_of(self, topic: str) -> InputSource | None:
        try:
            return self._known[topic]
        except KeyError:
            source = next((s for s in self.sources if s.claims(topic)), None)
            if len(self._known) < MAX_CACHED_TOPICS:
                self._known[topic] = source
            return source

    def forget(self) -> None:
        """After a reload: the routes, hence the claims, may have changed."""
        self._known.clear()


class LogThrottle:
    """Whether to log now about a topic: at most once per ``interval_s`` per topic, so a
    flood of bad messages costs a counter increment each, not a log line (or a traceback)."""

    def __init__(self, interval_s: float = MALFORMED_LOG_INTERVAL_S):
        self.interval_s = interval_s
        self._last: dict[str, float] = {}

    def due(self, topic: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(topic, -1e9) < self.interval_s:
            return False
        if len(self._last) > MAX_CACHED_TOPICS:  # bounded under a flood of topics
            self._last.clear()
        self._last[topic] = now
        return True


class Feed:
    """Samples into the pipelines that read their tag, and rejected inputs counted and logged
    (at most once a minute per topic): what every sample source shares."""

    def __init__(self, routes: Routes, metrics: DaemonMetrics):
        self.routes = routes
        self.metrics = metrics
        self.parse_s = 0.0  # parse time of the batch being processed
        self._log_throttle = LogThrottle()

    def feed(self, targets: list[tuple[ModelPipeline, str]],
             samples: list[tuple[float, float]], received_s: float | None = None,
             topic: str = "", payload: bytes = b"") -> None:
        """Samples of one tag (received at ``received_s``, from ``topic``) into its pipelines;
        their windows run when the batch ends. Samples too late for a model's grid are
        counted ``late`` per model; ones too far ahead of the receive clock ``future`` once
        (every model refuses them alike); both logged once a minute per topic."""
        future = 0
        for pipeline, tag in targets:
            late, ahead = pipeline.push_many([(0, tag, samples, received_s)]).get(0, (0, 0))
            if late:  # behind the model's last final grid step
                self.reject(topic, "late", payload, late)
            future = max(future, ahead)
        if future:
            self.reject(topic, "future", payload, future)

    def feed_many(self, parsed: list[tuple[Inbound, list[tuple[float, float]]]]) -> None:
        """The samples of a run of messages (each with its parsed samples) into their
        pipelines: grouped by pipeline, in arrival order within each, so a pipeline's window
        work is one call per run and not one per sample and model. Pipelines never see each
        other's samples, so the order across them is free; the daemon merges their results
        by window time. Late and future samples are counted as :meth:`feed` counts them."""
        routes = self.routes
        jobs: dict[ModelPipeline, list[tuple[int, str, list, float]]] = {}
        for k, (item, samples) in enumerate(parsed):
            for pipeline, tag in routes.get(item.topic, ()):
                job = jobs.get(pipeline)
                if job is None:
                    job = jobs[pipeline] = []
                job.append((k, tag, samples, item.received_s))
        late: dict[int, int] = {}
        future: dict[int, int] = {}
        for pipeline, job in jobs.items():
            for k, (n_late, n_future) in pipeline.push_many(job).items():
                if n_late:
                    late[k] = late.get(k, 0) + n_late
                if n_future:  # every model refuses a future sample alike: counted once
                    future[k] = max(future.get(k, 0), n_future)
        for counts, reason in ((late, "late"), (future, "future")):
            for k, n in counts.items():
                item = parsed[k][0]
                self.reject(item.topic, reason, item.payload, n)

    def reject(self, topic: str, reason: str, payload: bytes, n: int = 1) -> None:
        self.metrics.rejected.labels(reason=reason).inc(n)
        if self._log_throttle.due(topic):
            log.warning("rejected payload on %s (%s): %r (further ones logged once a minute)",
                        topic[:200], reason, payload[:80])
