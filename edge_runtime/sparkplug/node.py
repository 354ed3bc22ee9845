"""Sparkplug B out: the gateway as an edge node, on its own MQTT connection.

Why its own connection: Sparkplug wants a clean session whose Last Will is the NDEATH with the
session's ``bdSeq``, and an NBIRTH before any NDATA of that session; the daemon's main
connection keeps a persistent session (inputs are redelivered after a crash). One thread owns
this connection (``client.loop()`` is called here, so paho's callbacks run here too) and, per
session:

1. takes the next ``bdSeq`` (+1 per CONNECT sent, persisted, so a restart after SIGKILL uses
   a new one) and connects with the NDEATH carrying it as the will — a fresh paho client each
   session, so no message of an older session is replayed with a stale ``seq``;
2. subscribes to its NCMD topic (and, with ``primary_host``, to ``spBv1.0/STATE/<host>``,
   then waits for ``online: true`` there) and publishes NBIRTH (``seq`` 0, every metric with
   datatype, last known value stamped with the time it was captured, ``bdSeq``; aliases for
   all but ``Node Control/Rebirth``);
3. drains its outbox in order, stamping ``seq`` (1, 2 … 255, 0, …) and ``is_historical``
   (rows older than ``outbox.late_after_s``) *at send time*. At QoS 1 a row is deleted on its
   PUBACK. At QoS 0 (Sparkplug's own QoS, the default) there is no PUBACK: after each burst
   of NDATA the node sends an UNSUBSCRIBE of a topic it never subscribed (a *fence*); the
   broker handles a connection's packets in order, so its UNSUBACK proves every NDATA before
   it arrived, and only then are those rows deleted. Rows not confirmed when the session ends
   are sent again after the next NBIRTH (``is_historical`` when late);
4. on NCMD ``Node Control/Rebirth`` = true publishes NBIRTH again (``seq`` restarts at 0);
5. with ``primary_host``: a valid ``online: false`` STATE ends the session (NDEATH,
   disconnect); the next session waits for ``online: true`` before its NBIRTH.

In an active/standby pair (:mod:`edge_runtime.sparkplug.pair`) the two peers are one edge
node: only the lease holder holds a session (a peer that loses the lease ends its own with the
NDEATH), and the pair chooses each session's ``bdSeq``.

On a graceful stop it drains (bounded) and ends with the NDEATH: MQTT 3.1.1 publishes it then
disconnects; MQTT 5 disconnects with reason code 0x04 so the broker publishes the will.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edge_runtime.config import MqttConfig, OutboxConfig, SparkplugOutputConfig
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.outbox import Outbox
from edge_runtime.sparkplug import codec
from edge_runtime.sparkplug.catalogue import Catalogue

log = logging.getLogger("procedge.edge")
BDSEQ_KEY = "sparkplug:bdseq"
IDLE_S = 0.05  # how often a pair's standby looks whether it holds the lease now


def keep_newest(last: dict[str, tuple[object, int]], name: str, value: object,
                ts: int) -> None:
    """Hold ``value`` as the metric's current one unless the held one is newer: rows go out
    in the order they were written, which is not always that of their time stamps (one
    model's result may be written after another's newer one)."""
    if ts >= last.get(name, (None, -1))[1]:
        last[name] = (value, ts)


class Sequencer:
    """Sparkplug ``seq``: 0 on each NBIRTH, then +1 per message, wrapping after 255."""

    def __init__(self) -> None:
        self.value = 0

    def birth(self) -> int:
        self.value = 0
        return 0

    def next(self) -> int:
        self.value = (self.value + 1) % 256
        return self.value


def now_ms() -> int:
    return round(time.time() * 1000)


class SparkplugNode:
    def __init__(self, config: SparkplugOutputConfig, gateway: str, mqtt_config: MqttConfig,
                 outbox_config: OutboxConfig, catalogue: Catalogue, metrics: DaemonMetrics):
        self.config, self.mqtt, self.metrics = config, mqtt_config, metrics
        self.node = config.node or gateway
        self.client_id = config.client_id or f"{mqtt_config.client_id or 'procedge-' + gateway}-spb"
        self.late_after_s = outbox_config.late_after_s
        self.max_inflight = min(outbox_config.max_inflight, 1000)
        path = config.outbox_path or outbox_config.path.with_name(
            f"{outbox_config.path.stem}-sparkplug{outbox_config.path.suffix}")
        self.outbox = Outbox(path, outbox_config.max_rows, outbox_config.synchronous)
        self.catalogue = catalogue
        self.last: dict[str, tuple[object, int]] = {}  # metric → (last value sent, its ms)
        self.seq = Sequencer()
        self.bd_seq = 0
        self.rebirth = threading.Event()
        self.done = threading.Event()
        self.connected = False
        self._deadline = 0.0
        self._acked: list[int] = []
        self._inflight: dict[int, int] = {}  # mid → outbox row (QoS 1)
        self._unfenced: list[int] = []  # rows published at QoS 0, no fence sent after them yet
        self._fences: dict[int, list[int]] = {}  # UNSUBSCRIBE mid → the rows it confirms
        self._fenced: list[int] = []  # UNSUBACKed fence mids
        self.state_topic = (f"{codec.NAMESPACE}/STATE/{config.primary_host}"
                            if config.primary_host else "")
        self.host_online = not config.primary_host  # no primary host: never wait
        self._state_ts: int | None = None  # newest valid STATE timestamp seen
        self._host_offline = threading.Event()  # a valid online=false STATE while born
        # a pair's peers are one edge node (sparkplug/pair.py): only the lease holder holds a
        # session, and the pair chooses the bdSeq (None: not yet, retry)
        self.holds_session: Callable[[], bool] = lambda: True
        self.choose_bd_seq: Callable[[int], int | None] = lambda own_next: own_next
        self._thread = threading.Thread(target=self._run, name="procedge-sparkplug", daemon=True)

    def topic(self, kind: str) -> str:
        return codec.topic(self.config.group, kind, self.node)

    # -- the daemon's side ---------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, drain_timeout_s: float = 10.0) -> None:
        self._deadline = time.monotonic() + drain_timeout_s
        self.done.set()
        self._thread.join(timeout=drain_timeout_s + 5)
        self.outbox.close()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def set_catalogue(self, catalogue: Catalogue) -> None:
        """A hot reload changed the metrics: publish a new NBIRTH before more NDATA."""
        self.catalogue = catalogue
        self.rebirth.set()

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        delay = self.mqtt.reconnect_min_s
        while not self.done.is_set():
            if not self.holds_session():  # a pair's standby: no session, no will
                self.done.wait(IDLE_S)
                continue
            try:
                ok = self._session()
            except Exception:
                log.exception("sparkplug session error")
                ok = False
            if self.done.is_set():
                break
            delay = self.mqtt.reconnect_min_s if ok else min(delay * 2, self.mqtt.reconnect_max_s)
            self.done.wait(delay)

    def _session(self) -> bool:
        """One MQTT session; True when it was established (so reconnect quickly)."""
        bd_seq = self.choose_bd_seq(int(self.outbox.state().get(BDSEQ_KEY, "0")) % 256)
        if bd_seq is None:
            log.warning("sparkplug: the pair's next bdSeq is not acknowledged by the broker; "
                        "not connecting yet")
            return False
        self.bd_seq = bd_seq
        client = self._client()
        self.connected = False
        try:
            client.connect(self.mqtt.host, self.mqtt.port, keepalive=self.mqtt.keepalive_s)
        except (OSError, ssl.SSLError) as exc:
            log.warning("sparkplug: cannot connect to %s:%d: %s", self.mqtt.host,
                        self.mqtt.port, exc)
            return False
        # a CONNECT went out with this bdSeq in its will: the next CONNECT takes the next one
        self.outbox.put([], {BDSEQ_KEY: str((self.bd_seq + 1) % 256)})
        deadline = time.monotonic() + 10
        while not self.connected and time.monotonic() < deadline and not self.done.is_set():
            if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                return False
        if not self.connected:
            client.disconnect()
            return False
        client.subscribe(self.topic("NCMD"), qos=1)
        if self.state_topic:
            client.subscribe(self.state_topic, qos=1)
            self.host_online = False  # until this session sees online=true
        self._host_offline.clear()
        for pending in (self._inflight, self._unfenced, self._fences, self._fenced, self._acked):
            pending.clear()
        last_row, born = 0, False
        while client.is_connected():
            if self.done.is_set() and (not born or not self.outbox.depth
                                       or time.monotonic() > self._deadline):
                self._goodbye(client)
                return True
            if not self.holds_session():
                log.warning("sparkplug: this peer no longer holds the pair's lease: ending "
                            "the session")
                self._goodbye(client)
                return True
            if born and self._host_offline.is_set():  # before the birth: only wait
                log.warning("sparkplug: primary host %s went offline: ending the session",
                            self.config.primary_host)
                self._goodbye(client)
                return True
            waiting = self._inflight or self._fences
            if client.loop(timeout=0.02 if waiting else 0.05) != mqtt.MQTT_ERR_SUCCESS:
                break
            self._settle()
            if (not born and self.host_online) or (born and self.rebirth.is_set()):
                self._publish_birth(client)
                born = True
            if born:
                last_row = self._fill(client, last_row)
        log.warning("sparkplug: connection lost; %d row(s) wait for the next session",
                    self.outbox.depth)
        return True

    def _client(self) -> mqtt.Client:
        c = self.mqtt
        v5 = c.protocol == "5"
        kwargs = {"protocol": mqtt.MQTTv5} if v5 else {"protocol": mqtt.MQTTv311,
                                                       "clean_session": True}
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             **kwargs)
        c.configure(client)
        client.will_set(self.topic("NDEATH"), self._death_payload(), qos=1, retain=False)
        client.max_inflight_messages_set(self.max_inflight)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_publish = lambda _c, _u, mid, *_: self._acked.append(mid)
        client.on_unsubscribe = lambda _c, _u, mid, *_: self._fenced.append(mid)
        client.on_message = self._on_message
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        if reason_code.is_failure:
            log.error("sparkplug: broker refused the connection: %s", reason_code)
            return
        self.connected = True

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None) -> None:
        """NCMD refused (an ACL): no host can ask for a rebirth; an error to see, not a silence."""
        if any(rc.is_failure for rc in reason_codes):
            self.metrics.subscriptions_refused.inc()
            log.error("sparkplug: broker refused the subscription to %s", self.topic("NCMD"))

    def _on_message(self, client, userdata, message) -> None:
        if self.state_topic and message.topic == self.state_topic:
            self._on_state(message.payload)
            return
        try:
            payload = codec.decode(message.payload)
        except codec.SparkplugError as exc:
            self.metrics.rejected.labels(reason=str(exc)).inc()
            return
        for m in payload.metrics:  # the rebirth metric has no alias (Sparkplug 3.0)
            if m.name == codec.REBIRTH and m.WhichOneof("value") == "boolean_value" \
                    and m.boolean_value:
                log.info("sparkplug: rebirth requested")
                self.rebirth.set()

    def _on_state(self, data: bytes) -> None:
        """The primary host's STATE (JSON ``{"online": bool, "timestamp": ms}``): one older
        than the newest seen is ignored (``tck-id-message-flow-edge-node-birth-publish-phid-wait-
        timestamp``, ``…-termination-host-offline-timestamp``)."""
        try:
            body = json.loads(data)
            online, ts = body["online"], body["timestamp"]
            if not isinstance(online, bool) or not isinstance(ts, int):
                raise ValueError("bad types")
        except (ValueError, KeyError, TypeError):
            self.metrics.rejected.labels(reason="sparkplug_bad_state").inc()
            return
        if self._state_ts is not None and ts < self._state_ts:
            log.info("sparkplug: STATE of %s older than the last one: ignored",
                     self.config.primary_host)
            return
        self._state_ts = ts
        log.info("sparkplug: primary host %s is %s", self.config.primary_host,
                 "online" if online else "offline")
        if online:
            self.host_online = True
            self._host_offline.clear()
        else:
            self.host_online = False
            self._host_offline.set()

    # -- payloads --------------------------------------------------------------------------
    def _death_payload(self) -> bytes:
        payload = codec.Payload(timestamp=now_ms())
        metric = payload.metrics.add(name=codec.BDSEQ, datatype=codec.INT64)
        codec.set_value(metric, codec.INT64, self.bd_seq)
        return payload.SerializeToString()

    def _publish_birth(self, client: mqtt.Client) -> None:
        self.rebirth.clear()
        cat, ts = self.catalogue, now_ms()
        payload = codec.Payload(timestamp=ts, seq=self.seq.birth())
        own = {codec.BDSEQ: (self.bd_seq, ts), codec.REBIRTH: (False, ts)}
        current = {name: own.get(name) or self.last.get(name) or (None, ts)
                   for name in cat.types}
        # each last value keeps the time it was captured, in chronological order
        # (tck-id-operational-behavior-data-publish-nbirth-order)
        for name in sorted(cat.types, key=lambda n: (current[n][1], n)):
            value, captured = current[name]
            metric = payload.metrics.add(name=name, timestamp=captured, datatype=cat.types[name])
            if name in cat.aliases:  # not Node Control/Rebirth
                metric.alias = cat.aliases[name]
            codec.set_value(metric, cat.types[name], value)
        client.publish(self.topic("NBIRTH"), payload.SerializeToString(), qos=self.config.qos)
        log.info("sparkplug: NBIRTH %s bdSeq=%d, %d metrics", self.topic("NBIRTH"),
                 self.bd_seq, len(cat.types))

    def _data_payload(self, body: dict, historical: bool) -> bytes:
        cat = self.catalogue
        payload = codec.Payload(timestamp=now_ms(), seq=self.seq.next())
        for name, value in body["metrics"]:
            if name not in cat.types:
                log.warning("sparkplug: metric %r is not in the current NBIRTH; dropped", name)
                continue
            # no datatype after the birth (tck-id-payloads-metric-datatype-not-req)
            metric = payload.metrics.add(alias=cat.aliases[name], timestamp=body["ts"])
            if historical:
                metric.is_historical = True
            codec.set_value(metric, cat.types[name], value)
            if not historical:
                keep_newest(self.last, name, value, body["ts"])
        return payload.SerializeToString()

    # -- outbox ----------------------------------------------------------------------------
    def _settle(self) -> None:
        rows = [self._inflight.pop(mid) for mid in self._acked if mid in self._inflight]
        self._acked.clear()
        for mid in self._fenced:
            rows += self._fences.pop(mid, [])
        self._fenced.clear()
        if rows:
            self.outbox.remove(rows)
            self.metrics.acked.inc(len(rows))

    def _pending(self) -> int:
        return (len(self._inflight) + len(self._unfenced)
                + sum(len(rows) for rows in self._fences.values()))

    def _fill(self, client: mqtt.Client, last_row: int) -> int:
        pending = self._pending()
        room = self.max_inflight - pending
        if room <= 0 or self.rebirth.is_set() or self.outbox.depth <= pending:
            return last_row  # (nothing new: no query on every loop turn)
        now = time.time()
        try:
            for msg in self.outbox.peek(last_row, room):
                historical = now - msg.created_s > self.late_after_s
                data = self._data_payload(json.loads(msg.payload), historical)
                info = client.publish(self.topic("NDATA"), data, qos=self.config.qos)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    log.warning("sparkplug: publish not queued (%s)",
                                mqtt.error_string(info.rc))
                    self.rebirth.set()  # the seq just taken was not sent: restart the sequence
                    return last_row
                if self.config.qos:
                    self._inflight[info.mid] = msg.row
                else:
                    self._unfenced.append(msg.row)
                last_row = msg.row
        finally:
            self._fence(client)
        return last_row

    def _fence(self, client: mqtt.Client) -> None:
        """QoS 0: an UNSUBSCRIBE after the rows just published; its UNSUBACK confirms them."""
        if not self._unfenced:
            return
        rc, mid = client.unsubscribe(self.topic("NCMD") + "/procedge-fence")
        if rc == mqtt.MQTT_ERR_SUCCESS:
            self._fences[mid] = self._unfenced
            self._unfenced = []

    def _goodbye(self, client: mqtt.Client) -> None:
        """Intentional end of the session, always with an NDEATH. MQTT 5: DISCONNECT with
        reason code 0x04 ("Disconnect with Will Message"), so the broker publishes the will
        (tck-id-payloads-ndeath-will-message-publisher-disconnect-mqtt50); MQTT 3.1.1: a clean
        DISCONNECT suppresses the will, so publish the NDEATH first (…-mqtt311)."""
        if self.mqtt.protocol == "5":
            client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=4))
            client.loop(timeout=0.05)
            return
        info = client.publish(self.topic("NDEATH"), self._death_payload(), qos=1)
        deadline = time.monotonic() + 2
        while info.mid not in self._acked and time.monotonic() < deadline:
            client.loop(timeout=0.05)
        client.disconnect()
        client.loop(timeout=0.05)
