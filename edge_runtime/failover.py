"""The daemon's side of an active/standby pair: what a standby holds back, and what it publishes
when it takes over (docs/edge_daemon.md, "Active/standby pair").

Both peers run the same models on the same inputs (each its own MQTT session, so the broker
queues every input for each), hence decide the same results: alarm events carry ids derived
from the data (``<alarm_id>@<source ms>:<event>``), forecasts and scores their window's
``ts``. The active commits its results to its outbox and publishes them as a lone daemon
does. The standby keeps its windows filled and its alarm states current but publishes no
result and writes no set-point: it *holds* each result (:class:`Shadow`) and, subscribed to
the pair's result topics, drops a held result once it sees the active publish it (the broker
has it then). On takeover it commits what it still holds, the results the active decided but
may not have delivered, and the retained state of every alarm: nothing decided is lost, and
what both published carries the same id (consumers de-duplicate by it).

With Sparkplug output the node's rows are held the same way, until the active's NDATA carry
them (:mod:`edge_runtime.sparkplug.pair`, through :meth:`Failover.tap`).

Not held: operator and timer events (``by``: their ids carry the wall clock of the gateway
that took the command; the active announces them) and payloads without an id or ``ts``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import paho.mqtt.client as mqtt
from prometheus_client import Counter, Gauge

from edge_runtime.config import PAIR_OUTPUTS, EdgeConfig
from edge_runtime.lease import ACTIVE, Lease
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.outbox import Message
from edge_runtime.routing import Topics
from edge_runtime.validation import ConfigError

log = logging.getLogger("procedge.edge")


def output_key(topic: str, payload: bytes) -> str | None:
    """What identifies a result across the pair: an alarm event's id, else topic and ``ts``
    (a forecast, a score, a residual, an advice); None: not identifiable, or an operator's
    or a timer's event (``by``: its id carries the wall clock of one gateway)."""
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(body, dict) or "by" in body:
        return None
    if "event_id" in body:
        return str(body["event_id"])
    return f"{topic}@{body['ts']}" if "ts" in body else None


def output_filter(topics: Topics, kind: str) -> str:
    """The topic filter of every result of ``kind`` (``{model}``, ``{alarm_id}`` → ``+``)."""
    pattern = topics.get(kind, model="+", alarm_id="+")
    if any("+" in level and level != "+" for level in pattern.split("/")):
        raise ConfigError(f"ha: topics.{kind} {getattr(topics._templates, kind)!r}: {{model}} "
                          "and {alarm_id} must be whole topic levels in a pair (the standby "
                          "subscribes to the active's results)")
    return pattern


class Shadow:
    """The standby's results not yet seen from the active, in decision order (bounded), and
    the keys seen from the active before the standby decided them."""

    def __init__(self, max_held: int, dropped_metric: Counter | None = None):
        """``dropped_metric``: counted as each held message is pushed out by the bound."""
        self.max_held = max_held
        self.dropped_metric = dropped_metric
        self._held: OrderedDict[str, Message] = OrderedDict()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self.dropped = 0  # held results pushed out by the bound (would be lost at takeover)

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, key: str, message: Message) -> bool:
        """Hold ``message``; False when the active was seen publishing it already."""
        with self._lock:
            if key in self._seen:
                del self._seen[key]
                return False
            self._held.setdefault(key, message)
            while len(self._held) > self.max_held:
                self._held.popitem(last=False)
                self.dropped += 1
                if self.dropped_metric is not None:
                    self.dropped_metric.inc()
            return True

    def seen(self, key: str) -> Message | None:
        """The active published ``key``: the held message it drops (None: not held yet)."""
        with self._lock:
            message = self._held.pop(key, None)
            if message is not None:
                return message
            self._seen[key] = None
            while len(self._seen) > self.max_held:
                self._seen.popitem(last=False)
            return None

    def take(self) -> list[Message]:
        """Everything held, oldest first; the shadow starts empty again."""
        with self._lock:
            held = list(self._held.values())
            self._held.clear()
            self._seen.clear()
        return held


class Failover:
    def __init__(self, config: EdgeConfig, topics: Topics, metrics: DaemonMetrics,
                 alarm_states: Callable[[], list[Message]]):
        """``alarm_states()``: the retained state message of every alarm (on takeover)."""
        ha = config.ha
        self.ha = ha
        self.alarm_states = alarm_states
        self.filters = {kind: output_filter(topics, kind) for kind in PAIR_OUTPUTS}
        self._kinds: dict[str, str] = {}  # topic → result kind ("" for the gateway's own)
        self._was_active = False
        self._taps: list[tuple[str, Callable[[bytes], None]]] = []  # (filter, handler)
        r = metrics.registry
        self.m_active = Gauge("procedge_ha_active", "1 while this peer holds the lease.",
                              registry=r)
        self.m_takeovers = Counter("procedge_ha_takeovers_total", "Times this peer took "
                                   "the lease.", registry=r)
        self.m_republished = Counter("procedge_ha_republished_total", "Results held as "
                                     "standby and published on takeover.", registry=r)
        self.m_held = Gauge("procedge_ha_held", "Results held (standby).", registry=r)
        self.shadow = Shadow(ha.max_held, Counter(
            "procedge_ha_held_dropped_total", "Held results dropped beyond ha.max_held "
            "(oldest first).", registry=r))
        client_id = config.mqtt.client_id or f"procedge-{config.gateway}"
        held = [f for kind, f in self.filters.items() if kind != "alarm_state"]
        self.lease = Lease(ha, config.mqtt, client_id, self._on_role, self._on_output, held)

    @classmethod
    def create(cls, config: EdgeConfig, topics: Topics, metrics: DaemonMetrics,
               alarm_states: Callable[[], list[Message]]) -> Failover | None:
        """A failover for a config with an ``ha:`` section, else None (a lone daemon)."""
        return None if config.ha is None else cls(config, topics, metrics, alarm_states)

    @property
    def active(self) -> bool:
        return self.lease.active

    def start(self) -> None:
        self.lease.start()

    def stop(self) -> None:
        self.lease.stop()

    def tap(self, topic_filter: str, on_message: Callable[[bytes], None]) -> None:
        """While standby, hand what the active publishes on ``topic_filter`` to
        ``on_message`` (network thread) instead of the JSON shadow: the Sparkplug side of
        the pair (edge_runtime/sparkplug/pair.py). Call before :meth:`start`."""
        self._taps.append((topic_filter, on_message))
        self.lease.output_filters.append(topic_filter)

    def _on_role(self, role: str, term: int) -> None:
        self.m_active.set(role == ACTIVE)
        log.warning("lease: peer %s is now %s (term %d)", self.ha.peer_id, role, term)

    def _on_output(self, topic: str, payload: bytes) -> None:
        for topic_filter, on_message in self._taps:
            if mqtt.topic_matches_sub(topic_filter, topic):
                on_message(payload)
                return
        key = output_key(topic, payload)
        if key is not None:
            self.shadow.seen(key)

    # -- worker: once per batch, before the commit -------------------------------------------
    def route(self, out: list[Message]) -> list[Message]:
        """What this peer commits of a batch's messages: all of them while active (and, at
        the first batch after a takeover, everything held first and every alarm's state
        last); as standby only its own (status, replies), the results held."""
        if self.lease.active:
            if self._was_active:
                return out
            self._was_active = True
            held = self.shadow.take()
            self.m_takeovers.inc()
            self.m_republished.inc(len(held))
            self.m_held.set(0)
            log.warning("lease: taking over; publishing %d result(s) the active may not have "
                        "delivered", len(held))
            return held + out + self.alarm_states()
        self._was_active = False
        mine = [m for m in out if self._standby_keeps(m)]
        self.m_held.set(len(self.shadow))
        return mine

    def _standby_keeps(self, message: Message) -> bool:
        """True for the gateway's own messages; a result is held (or dropped) instead."""
        kind = self._kinds.get(message.topic)
        if kind is None:
            kind = next((k for k, f in self.filters.items()
                         if mqtt.topic_matches_sub(f, message.topic)), "")
            if len(self._kinds) < 10_000:
                self._kinds[message.topic] = kind
        if not kind:
            return True
        key = None if kind == "alarm_state" else output_key(message.topic, message.payload)
        if key is not None:
            self.shadow.hold(key, dataclasses.replace(message, created_s=time.time()))
        return False
