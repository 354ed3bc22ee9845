"""Sparkplug B out from an active/standby pair: the two peers are one edge node
(docs/edge_daemon.md, "Sparkplug B in a pair").

A SCADA host knows an edge node by its group and node id, and judges it by one session at a
time: NBIRTH opens it, NDEATH (the will, or sent on purpose) ends it, and an NDEATH whose
``bdSeq`` is not the one of the current NBIRTH is ignored. So, with the same
``sparkplug.output`` group and node in both peers' configs:

- only the lease holder holds a Sparkplug session (:meth:`SparkplugPair.holds_session`): the
  standby's node does not connect, so it has no will for the shared node that could fire
  while the active is alive; a peer that loses the lease ends its session with an NDEATH;
- the pair keeps one ``bdSeq`` sequence. Before each CONNECT the node announces the bdSeq it
  will put in its will on ``<lease_topic>/sparkplug/bdseq`` (retained, QoS 1, on the lease
  connection) and connects only once the broker acknowledged it; the next CONNECT, by either
  peer, takes that value + 1. Each peer's own persisted counter would not do: both start at
  0, so a takeover could open a session with the bdSeq of the dead peer's will, which a
  broker fires only when the dead peer's keepalive runs out (up to 1.5 x ``mqtt.keepalive_s``
  after a power cut): the host would then take the dead peer's NDEATH for the new session's;
- the standby holds the Sparkplug rows it decides, as the JSON side holds results
  (:mod:`edge_runtime.failover`), and drops one when it sees the active's NDATA carry it. The
  JSON sighting is not enough: a result's JSON message and its NDATA leave from two outboxes
  over two connections, so an active killed between the two has delivered one and not the
  other. On takeover the held rows go out first (``is_historical`` when late, decided at send
  time), then the batch's. The NBIRTH's values are the last the active was seen to publish.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time

from prometheus_client import Counter, Gauge

from edge_runtime.failover import Failover, Shadow
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.outbox import Message
from edge_runtime.sparkplug import codec
from edge_runtime.sparkplug.node import SparkplugNode, keep_newest

log = logging.getLogger("procedge.edge")
ANNOUNCE_TIMEOUT_S = 2.0  # the broker's PUBACK of a bdSeq announcement; else no CONNECT yet
EVENT_ID = "/alarm/event_id"


def bdseq_topic(lease_topic: str) -> str:
    """Two levels below the lease topic: not matched by the statuses' ``<lease_topic>/+``."""
    return f"{lease_topic}/sparkplug/bdseq"


def row_key(ts_ms: int, names: list[str], event_id: str = "") -> str:
    """What identifies one Sparkplug row (one NDATA) across the pair: its metric time, its
    metric names and, for an alarm event, the event's id (two events may share a time)."""
    return f"{ts_ms}|{','.join(sorted(names))}|{event_id}"


def key_of_row(payload: bytes) -> str:
    """The key of a row as the bridge stores it (``{"ts", "metrics": [[name, value]]}``)."""
    body = json.loads(payload)
    metrics = body["metrics"]
    event = next((str(v) for n, v in metrics if n.endswith(EVENT_ID) and v is not None), "")
    return row_key(body["ts"], [n for n, _ in metrics], event)


def key_of_ndata(data: bytes, names: dict[int, str]) -> str | None:
    """The key of an NDATA as the active sent it (aliases only; ``names``: alias → name of
    the same catalogue). None when it cannot be matched: the held row then stays held and is
    published again on takeover (a duplicate, never a loss)."""
    try:
        payload = codec.decode(data)
    except codec.SparkplugError:
        return None
    if not payload.metrics or any(m.alias not in names for m in payload.metrics):
        return None
    metric_names = [names[m.alias] for m in payload.metrics]
    event = next((m.string_value for m, n in zip(payload.metrics, metric_names, strict=True)
                  if n.endswith(EVENT_ID)), "")
    return row_key(payload.metrics[0].timestamp, metric_names, event)


class SparkplugPair:
    """Binds one peer's edge node to the pair's lease: when it may hold a session, which
    bdSeq it connects with, and which rows it publishes (see the module's docstring)."""

    def __init__(self, node: SparkplugNode, failover: Failover, metrics: DaemonMetrics):
        self.node, self.failover = node, failover
        self.peer = failover.ha.peer_id
        self.topic = bdseq_topic(failover.ha.lease_topic)
        self._announced: int | None = None  # the pair's last announced bdSeq
        self._lock = threading.Lock()
        self._names: tuple[object, dict[int, str]] = (None, {})  # (catalogue, alias → name)
        self._was_active = False
        r = metrics.registry
        self.m_held = Gauge("procedge_ha_sparkplug_held", "Sparkplug rows held (standby).",
                            registry=r)
        self.m_republished = Counter("procedge_ha_sparkplug_republished_total", "Sparkplug "
                                     "rows held as standby and published on takeover.",
                                     registry=r)
        self.shadow = Shadow(failover.ha.max_held, Counter(
            "procedge_ha_sparkplug_held_dropped_total", "Sparkplug rows held beyond "
            "ha.max_held and dropped (oldest first).", registry=r))
        failover.lease.follow(self.topic, self._on_announced)
        failover.tap(node.topic("NDATA"), self._on_ndata)
        node.holds_session = self.holds_session
        node.choose_bd_seq = self.bd_seq

    # -- the node's thread -----------------------------------------------------------------
    def holds_session(self) -> bool:
        return self.failover.active

    def bd_seq(self, own_next: int) -> int | None:
        """The bdSeq of the node's next CONNECT: one above the pair's last announced one
        (this peer's counter when none is known, e.g. a broker that lost its retained
        messages), announced and acknowledged first; None: not acknowledged (retry)."""
        with self._lock:
            last = self._announced
        value = own_next if last is None else (last + 1) % 256
        body = json.dumps({"peer": self.peer, "term": self.failover.lease.term,
                           "bdseq": value})
        if not self.failover.lease.publish_acked(self.topic, body, ANNOUNCE_TIMEOUT_S):
            return None
        with self._lock:
            self._announced = value
        return value

    # -- the lease's network thread -------------------------------------------------------
    def _on_announced(self, data: bytes) -> None:
        try:
            value = json.loads(data)["bdseq"]
        except (ValueError, KeyError, TypeError):
            log.warning("sparkplug: %s is not a bdSeq announcement; ignored", self.topic)
            return
        if isinstance(value, int) and 0 <= value < 256:
            with self._lock:
                self._announced = value

    def _on_ndata(self, data: bytes) -> None:
        """(standby) An NDATA of the active: the row it carries is delivered."""
        catalogue = self.node.catalogue
        if self._names[0] is not catalogue:
            self._names = (catalogue, {a: n for n, a in catalogue.aliases.items()})
        key = key_of_ndata(data, self._names[1])
        if key is not None:
            row = self.shadow.seen(key)
            if row is not None:
                self._remember(row)

    # -- the worker, once per batch -------------------------------------------------------
    def route(self, rows: list[Message]) -> list[Message]:
        """What this peer puts in its Sparkplug outbox of a batch's rows: all of them while
        active (at the first batch after a takeover, everything held first); none while
        standby, each held until the active's NDATA carries it."""
        if self.failover.active:
            if self._was_active:
                return rows
            self._was_active = True
            held = self.shadow.take()
            self.m_republished.inc(len(held))
            self.m_held.set(0)
            if held:
                log.warning("sparkplug: taking over the edge node; %d row(s) the active may "
                            "not have published", len(held))
            return held + rows
        self._was_active = False
        now = time.time()
        for row in rows:
            if not self.shadow.hold(key_of_row(row.payload),
                                    dataclasses.replace(row, created_s=now)):
                self._remember(row)  # the active's NDATA came first
        self.m_held.set(len(self.shadow))
        return []

    def _remember(self, row: Message) -> None:
        """A row the active published: its values are the node's current ones (for the
        NBIRTH this peer publishes if it takes over)."""
        body = json.loads(row.payload)
        for name, value in body["metrics"]:
            keep_newest(self.node.last, name, value, body["ts"])
