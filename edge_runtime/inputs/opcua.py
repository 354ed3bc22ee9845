"""OPC UA input: an OPC UA server's variables (the config's ``opcua.nodes``, NodeId → tag),
fed to the models as samples of their tags, with no MQTT bridge in between.

asyncua is asyncio: its client runs in a thread of its own with its own event loop, one
subscription with a monitored item per node. Each data change goes into the worker's inbox as
an :class:`OpcUaChange` on the internal topic ``$opcua/<NodeId>`` (the daemon never subscribes
to a ``$`` topic, so no MQTT message can take that path), and the worker checks and feeds it
here like any other sample: status, number, event time (the value's SourceTimestamp), range.

The session is this module's own, not asyncua's auto-reconnect: every loss is counted
(``procedge_opcua_disconnects_total``) and followed by a new session after a backoff, with
the nodes monitored again; a node the server refuses (unknown NodeId) is named in the log and
counted, the others still run. OPC UA has no acknowledgement: a change in the inbox when the
daemon is killed is lost (MQTT inputs are redelivered; see docs/edge_daemon.md).
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from edge_runtime.config import OpcUaConfig
from edge_runtime.inputs import Feed, Inbound, InputSource, LogThrottle
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.outbox import Message
from edge_runtime.payloads import MAX_FUTURE_S, MIN_EPOCH_S
from edge_runtime.routing import Topics

log = logging.getLogger("procedge.edge")
PREFIX = "$opcua/"
GOOD, UNCERTAIN, BAD = 0, 1, 2  # OPC UA severity: the top two bits of a StatusCode


@dataclass
class OpcUaChange(Inbound):
    """One data change, as the asyncio thread saw it; judged in the worker."""

    tag: str = ""
    value: object = None
    status: int = 0  # the StatusCode's value (0 = Good)
    source_s: float | None = None  # SourceTimestamp, epoch seconds
    server_s: float | None = None  # ServerTimestamp


def severity(status: int) -> int:
    """GOOD, UNCERTAIN or BAD from a StatusCode value (Part 4, 7.39: bits 30-31)."""
    return min(status >> 30 & 0b11, BAD)


def epoch_s(moment: datetime | None) -> float | None:
    """A UA DateTime as epoch seconds; asyncua gives naive datetimes in UTC, or aware ones;
    None (or the null DateTime, year 1601) when the server sent none."""
    if moment is None or moment.year <= 1601:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def judge(change: OpcUaChange, config: OpcUaConfig) -> tuple[float, float] | str:
    """``(timestamp_s, value)`` to feed, or the reason it is refused (counted as a reject)."""
    level = severity(change.status)
    if level == BAD or (level == UNCERTAIN and not config.accept_uncertain):
        return "opcua_bad_status" if level == BAD else "opcua_uncertain_status"
    value = change.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "not_a_number"
    try:
        value = float(value)
    except OverflowError:
        return "not_finite"
    if not math.isfinite(value):
        return "not_finite"
    stamps = ((change.source_s, change.server_s) if config.time == "source"
              else (change.server_s,))
    ts = next((s for s in stamps if s is not None), change.received_s)
    if not MIN_EPOCH_S <= ts <= change.received_s + MAX_FUTURE_S:
        return "timestamp_out_of_range"
    return ts, value


def certificate_uri(certificate) -> str | None:
    """The application URI in a certificate's subjectAltName (OPC UA Part 6, 6.2.2)."""
    from cryptography import x509

    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


class OpcUaSource(InputSource):
    def __init__(self, config: OpcUaConfig, feed: Feed, topics: Topics, inbox: queue.Queue,
                 stop: threading.Event):
        self.config = config
        self.feed = feed
        self.topics = topics
        self.client = OpcUaClient(config, inbox, feed.metrics, stop)

    def claims(self, topic: str) -> bool:
        return topic.startswith(PREFIX)

    def handle(self, item: Inbound, out: list[Message], changed: set[str]) -> None:
        if not isinstance(item, OpcUaChange):  # only this module puts $opcua/ items
            self.feed.reject(item.topic, "unknown_topic", item.payload)
            return
        sample = judge(item, self.config)
        if isinstance(sample, str):
            self.feed.reject(item.topic, sample,
                             f"{item.value!r} status 0x{item.status:08X}".encode())
            return
        targets = self.feed.routes.get(self.topics.get("raw", tag=item.tag), [])
        self.feed.feed(targets, [sample], item.received_s, item.topic)

    def start(self) -> None:
        self.client.start()


class OpcUaClient:
    """The asyncio side: sessions with backoff, one subscription, changes into the inbox."""

    def __init__(self, config: OpcUaConfig, inbox: queue.Queue, metrics: DaemonMetrics,
                 stop: threading.Event):
        self.config = config
        self.inbox = inbox
        self.metrics = metrics
        self.stop = stop
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True,
                                       name="procedge-opcua")
        self._nodes: dict[object, tuple[str, str]] = {}  # asyncua NodeId → (config id, tag)
        self._failure_log = LogThrottle()  # a server down for hours: one line a minute
        if not log.isEnabledFor(logging.DEBUG):
            # asyncua logs each lost connection with tracebacks from several tasks; the lines
            # below report it once (DEBUG logging keeps asyncua's own)
            logging.getLogger("asyncua").setLevel(logging.CRITICAL)

    def start(self) -> None:
        self.thread.start()

    # -- called by asyncua in its loop: tiny, never raises ------------------------------------
    def datachange_notification(self, node, val, data) -> None:
        try:
            dv = data.monitored_item.Value
            status = dv.StatusCode.value if dv.StatusCode is not None else 0
            node_id, tag = self._nodes[node.nodeid]
            self.inbox.put_nowait(OpcUaChange(
                PREFIX + node_id, b"", time.time(), tag=tag,
                value=val, status=status, source_s=epoch_s(dv.SourceTimestamp),
                server_s=epoch_s(dv.ServerTimestamp)))
        except queue.Full:
            self.metrics.rejected.labels(reason="queue_full").inc()
        except Exception:
            self.metrics.rejected.labels(reason="bad_message").inc()
            log.exception("OPC UA: could not take a data change")

    def status_change_notification(self, status) -> None:
        log.warning("OPC UA subscription status change: %s", status)

    # -- sessions -------------------------------------------------------------------------------
    async def _run(self) -> None:
        c = self.config
        delay = c.reconnect_min_s
        while not self.stop.is_set():
            try:
                connected = await self._session()
            except Exception as exc:  # refused, unreachable, security, timeout
                connected = False
                self.metrics.opcua_connect_failures.inc()
                if self._failure_log.due(type(exc).__name__):
                    log.warning("OPC UA connection to %s failed (%s: %s); retrying with backoff "
                                "(%.1f-%.0f s; logged once a minute)", c.endpoint,
                                type(exc).__name__, exc, delay, c.reconnect_max_s)
            if connected:
                delay = c.reconnect_min_s
            if self.stop.is_set():
                break
            await self._sleep(delay)
            if not connected:
                delay = min(delay * 2, c.reconnect_max_s)

    async def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(min(0.1, deadline - time.monotonic()))

    async def _session(self) -> bool:
        """One session: connect, subscribe, run until lost or stopped. True if it got as far
        as subscribing (the next attempt then starts at the shortest delay)."""
        from asyncua import Client

        c = self.config
        client = Client(c.endpoint, timeout=c.timeout_s)
        await self._secure(client)
        lost = asyncio.Event()

        async def on_lost(exc: Exception) -> None:
            lost.set()

        client.connection_lost_callback = on_lost
        await client.connect(auto_reconnect=False)
        subscribed = False
        try:
            await self._subscribe(client)
            subscribed = True
            self.metrics.opcua_connects.inc()
            self.metrics.opcua_connected.set(1)
            log.info("OPC UA: connected to %s, %d node(s) monitored", c.endpoint, len(c.nodes))
            while not lost.is_set() and not self.stop.is_set():
                await asyncio.sleep(0.1)
            if lost.is_set():
                self.metrics.opcua_disconnects.inc()
                log.warning("OPC UA: lost the session with %s; reconnecting", c.endpoint)
        finally:
            self.metrics.opcua_connected.set(0)
            try:
                await asyncio.wait_for(client.disconnect(), c.timeout_s)
            except Exception:  # the server is gone already: nothing to close politely
                log.debug("OPC UA: disconnect", exc_info=True)
        return subscribed

    async def _secure(self, client) -> None:
        c, sec = self.config, self.config.security
        if c.username:
            client.set_user(c.username)
            password = c.password()
            if password is not None:
                client.set_password(password)
        if sec.policy != "None":
            from asyncua import ua
            from asyncua.crypto import security_policies, uacrypto

            # servers check that the ApplicationUri a client announces is its certificate's
            uri = certificate_uri(await uacrypto.load_certificate(str(sec.certificate)))
            if uri:
                client.application_uri = uri
            await client.set_security(
                getattr(security_policies, f"SecurityPolicy{sec.policy}"),
                str(sec.certificate), str(sec.private_key),
                server_certificate=(str(sec.server_certificate) if sec.server_certificate
                                    else None),
                mode=getattr(ua.MessageSecurityMode, sec.mode))

    async def _subscribe(self, client) -> None:
        """Monitor every configured node; the ones the server refuses are named, counted
        and left out (the rest still run)."""
        from asyncua import ua

        c = self.config
        node_ids = list(c.nodes)
        nodes = [client.get_node(n) for n in node_ids]
        self._nodes = {node.nodeid: (n, c.nodes[n]) for n, node in zip(node_ids, nodes,
                                                                       strict=True)}
        subscription = await client.create_subscription(c.publishing_interval_ms, self)
        trigger = (ua.DataChangeTrigger.StatusValueTimestamp if c.trigger == "timestamp"
                   else ua.DataChangeTrigger.StatusValue)
        requests = [ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=node.nodeid, AttributeId=ua.AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=ua.MonitoringParameters(
                ClientHandle=handle, SamplingInterval=c.sampling_interval_ms,
                QueueSize=c.queue_size, DiscardOldest=True,
                Filter=ua.DataChangeFilter(Trigger=trigger)))
            for handle, node in enumerate(nodes, 1)]
        results = await subscription.create_monitored_items(requests)
        for node_id, result in zip(node_ids, results, strict=True):
            if isinstance(result, ua.StatusCode):
                self.metrics.opcua_nodes_refused.inc()
                log.error("OPC UA: %s refused node %s (tag %s): %s", c.endpoint, node_id,
                          c.nodes[node_id], result.name)
