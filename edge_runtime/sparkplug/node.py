"""Sparkplug B out: the gateway as an edge node, on its own MQTT connection.

Why its own connection: Sparkplug wants a clean session whose Last Will is the NDEATH with the
session's ``bdSeq``, and an NBIRTH before any NDATA of that session; the daemon's main
connection keeps a persistent session (inputs are redelivered after a crash). One thread owns
this connection (``client.loop()`` is called here, so paho's callbacks run here too) and, per
session:

1. takes the next ``bdSeq`` (+1 per CONNECT sent, persisted, so a restart after SIGKILL uses
   a new one) and connects with the NDEATH carrying it as the will — a fresh paho client each
   session, so no message of an older session is replayed with a stale ``seq``;
2. subscribes to its NCMD topic and publishes NBIRTH (``seq`` 0, every metric with alias,
   datatype and last known value, ``bdSeq``, ``Node Control/Rebirth``);
3. drains its outbox in order, stamping ``seq`` (1, 2 … 255, 0, …) and ``is_historical``
   (rows older than ``outbox.late_after_s``) *at send time*, and deletes a row on its PUBACK.
   Rows not acknowledged when the session ends are sent again after the next NBIRTH;
4. on NCMD ``Node Control/Rebirth`` = true publishes NBIRTH again (``seq`` restarts at 0).

On a graceful stop it drains (bounded), publishes NDEATH itself and disconnects.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time

import paho.mqtt.client as mqtt

from edge_runtime.config import MqttConfig, OutboxConfig, SparkplugOutputConfig
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.outbox import Outbox
from edge_runtime.sparkplug import codec
from edge_runtime.sparkplug.catalogue import Catalogue

log = logging.getLogger("procedge.edge")
BDSEQ_KEY = "sparkplug:bdseq"


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
        self.last: dict[str, object] = {}  # last value sent per metric (for the NBIRTH)
        self.seq = Sequencer()
        self.bd_seq = 0
        self.rebirth = threading.Event()
        self.done = threading.Event()
        self.connected = False
        self._deadline = 0.0
        self._acked: list[int] = []
        self._inflight: dict[int, int] = {}  # mid → outbox row
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
        self.bd_seq = int(self.outbox.state().get(BDSEQ_KEY, "0")) % 256
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
        self._inflight.clear()
        self._acked.clear()
        last_row = 0
        self._publish_birth(client)
        while client.is_connected():
            if self.done.is_set() and (not self.outbox.depth or time.monotonic() > self._deadline):
                self._goodbye(client)
                return True
            if client.loop(timeout=0.02 if self._inflight else 0.05) != mqtt.MQTT_ERR_SUCCESS:
                break
            self._settle()
            if self.rebirth.is_set():
                self._publish_birth(client)
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
        try:
            payload = codec.decode(message.payload)
        except codec.SparkplugError as exc:
            self.metrics.rejected.labels(reason=str(exc)).inc()
            return
        rebirth_alias = self.catalogue.aliases.get(codec.REBIRTH)
        for m in payload.metrics:
            named = m.name == codec.REBIRTH or (not m.name and m.alias == rebirth_alias)
            if named and m.WhichOneof("value") == "boolean_value" and m.boolean_value:
                log.info("sparkplug: rebirth requested")
                self.rebirth.set()

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
        for name in sorted(cat.types):
            metric = payload.metrics.add(name=name, alias=cat.aliases[name], timestamp=ts,
                                         datatype=cat.types[name])
            value = {codec.BDSEQ: self.bd_seq, codec.REBIRTH: False}.get(name, self.last.get(name))
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
            metric = payload.metrics.add(alias=cat.aliases[name], timestamp=body["ts"],
                                         datatype=cat.types[name])
            if historical:
                metric.is_historical = True
            codec.set_value(metric, cat.types[name], value)
            if not historical:
                self.last[name] = value
        return payload.SerializeToString()

    # -- outbox ----------------------------------------------------------------------------
    def _settle(self) -> None:
        rows = [self._inflight.pop(mid) for mid in self._acked if mid in self._inflight]
        self._acked.clear()
        if rows:
            self.outbox.remove(rows)
            self.metrics.acked.inc(len(rows))

    def _fill(self, client: mqtt.Client, last_row: int) -> int:
        room = self.max_inflight - len(self._inflight)
        if room <= 0 or self.rebirth.is_set() or self.outbox.depth <= len(self._inflight):
            return last_row  # (nothing new: no query on every loop turn)
        now = time.time()
        for msg in self.outbox.peek(last_row, room):
            historical = now - msg.created_s > self.late_after_s
            data = self._data_payload(json.loads(msg.payload), historical)
            info = client.publish(self.topic("NDATA"), data, qos=self.config.qos)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                log.warning("sparkplug: publish not queued (%s)", mqtt.error_string(info.rc))
                self.rebirth.set()  # the seq just taken was not sent: restart the sequence
                return last_row
            self._inflight[info.mid] = msg.row
            last_row = msg.row
        return last_row

    def _goodbye(self, client: mqtt.Client) -> None:
        """Graceful stop: a clean DISCONNECT suppresses the will, so say NDEATH ourselves."""
        info = client.publish(self.topic("NDEATH"), self._death_payload(), qos=1)
        deadline = time.monotonic() + 2
        while info.mid not in self._acked and time.monotonic() < deadline:
            client.loop(timeout=0.05)
        client.disconnect()
        client.loop(timeout=0.05)
