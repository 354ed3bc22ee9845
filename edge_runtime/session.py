"""The daemon's MQTT session: the paho client, connect and reconnect, the subscriptions and
their SUBACK, the online/offline status, and the input acknowledgements.

paho's callbacks run in its network thread: they only enqueue, count and log (a raising
callback would end that thread). Inputs are acknowledged by hand (``manual_ack``), by the
acker, once the results they led to are durable; each connect bumps :attr:`generation`, so
acks of messages received on an older connection are dropped (the broker redelivers those).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from edge_runtime.config import EdgeConfig
from edge_runtime.inputs import Inbound
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.mqtt_client import BufferedClient
from edge_runtime.routing import Topics

log = logging.getLogger("procedge.edge")
LOG_FAILURE_EVERY_S = 60.0  # a failing broker is retried every few seconds: log each reason
                            # at most this often (every failure is counted)


def failure_reason(exc: BaseException | None, in_tls: bool = False) -> tuple[str, str]:
    """(metric label from a small fixed set, human detail) for a failed connection attempt."""
    if exc is None:
        return "network", "connection attempt failed"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = str(exc.verify_message or "")
        if "mismatch" in message.lower() or exc.verify_code in (62, 64):
            return "tls_hostname", f"{text} (the broker's certificate is for another name)"
        return "tls_untrusted", f"{text} (is tls.ca_file the CA that signed the broker's?)"
    if isinstance(exc, ssl.SSLError) or in_tls:
        return "tls_handshake", f"TLS handshake failed: {text} (a plaintext port?)"
    if isinstance(exc, socket.gaierror):
        return "dns", f"host name not resolved: {text}"
    if isinstance(exc, TimeoutError):
        return "timeout", f"timed out: {text}"
    if isinstance(exc, ConnectionRefusedError):
        return "tcp_refused", f"TCP connection refused: {text}"
    if isinstance(exc, ConnectionError):
        return "closed", f"connection closed: {text}"
    return "network", text


class MqttSession:
    def __init__(self, config: EdgeConfig, metrics: DaemonMetrics, topics: Topics,
                 inbox: queue.Queue, subscriptions: Callable[[], list[tuple[str, int]]],
                 models_status: Callable[[], str], stop: threading.Event):
        """``subscriptions()``: every topic filter to subscribe to, asked on each connect;
        ``models_status()``: the retained bundle versions; ``stop``: set when stopping (a
        disconnect then is no news)."""
        self.config = config.mqtt
        self.metrics = metrics
        self.inbox = inbox
        self.subscriptions = subscriptions
        self.models_status = models_status
        self._stop = stop
        self._status_topic = topics.get("status")
        self._models_topic = topics.get("models")
        self.on_connected: Callable[[], None] = lambda: None  # e.g. wake the sender
        self.generation = 0  # bumped on every connect: acks of older messages are void
        # set once the broker has granted every subscription of the current connection: until
        # then "connected" does not mean that inputs arrive (the SUBSCRIBE may still be unsent)
        self.subscribed = threading.Event()
        self._subscribe: tuple[int, list[str]] = (-1, [])  # (packet id, topic filters)
        self._subscribe_lock = threading.Lock()  # the SUBACK may come before subscribe() returns
        self._reported_attempt = 0  # the last connection attempt that connected or was counted
        self._failure_logged: dict[str, tuple[float, int]] = {}  # reason → (when, suppressed)
        self.client = self._make_client(config.gateway)

    def _make_client(self, gateway: str) -> mqtt.Client:
        c = self.config
        v5 = c.protocol == "5"
        kwargs: dict[str, Any] = {"protocol": mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                                  "manual_ack": True}
        if not v5:
            kwargs["clean_session"] = not c.persistent_session
        client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2,
                                client_id=c.client_id or f"procedge-{gateway}", **kwargs)
        c.configure(client)
        client.will_set(self._status_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=c.reconnect_min_s, max_delay=c.reconnect_max_s)
        # Unlimited in paho: the sender's window (outbox.max_inflight) bounds what is in flight,
        # and paho's own bound rescans every in-flight message on each PUBACK.
        client.max_inflight_messages_set(0)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        return client

    def connect(self) -> None:
        """Connect in the background (paho's network thread), and reconnect for ever."""
        c = self.config
        if c.protocol == "5":
            props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0xFFFFFFFF if c.persistent_session else 0
            self.client.connect_async(c.host, c.port, keepalive=c.keepalive_s,
                                      clean_start=not c.persistent_session, properties=props)
        else:
            self.client.connect_async(c.host, c.port, keepalive=c.keepalive_s)
        self.client.loop_start()

    def close(self) -> None:
        """Say offline (retained) while still connected, then disconnect."""
        if self.client.is_connected():
            info = self.client.publish(self._status_topic, "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()

    def refresh(self) -> None:
        """After a reload: the inputs (and the model versions) may have changed."""
        if self.client.is_connected():
            self.subscribe_all(self.client)
            self.client.publish(self._models_topic, self.models_status(), qos=1, retain=True)

    def subscribe_all(self, client: mqtt.Client) -> int:
        """Subscribe to every input topic (on connect, and after a reload that may add some);
        :attr:`subscribed` is set again by the SUBACK of this very request."""
        subscriptions = self.subscriptions()
        with self._subscribe_lock:
            self.subscribed.clear()
            _, mid = client.subscribe(subscriptions)
            self._subscribe = (mid, [topic for topic, _ in subscriptions])
        return len(subscriptions)

    def ack_inputs(self, inputs: list[Inbound]) -> None:
        """(acker thread, once the batch's results are durable) acknowledge the inputs."""
        current = [item for item in inputs if item.qos and item.generation == self.generation]
        self.client.ack_many(item.mid for item in current if item.qos == 1)
        for item in current:  # older generations: void, the broker redelivers them
            if item.qos == 2:
                self.client.ack(item.mid, item.qos)

    # -- paho callbacks: tiny and guarded ---------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        try:
            if reason_code.is_failure:
                self._connect_failed("connack",
                                     f"broker refused the connection: {reason_code}")
                return
            self._reported_attempt = getattr(client, "attempts", 0)
            self.generation += 1
            count = self.subscribe_all(client)  # again on every reconnect
            client.publish(self._status_topic, "online", qos=1, retain=True)
            client.publish(self._models_topic, self.models_status(), qos=1, retain=True)
            self.metrics.connects.inc()
            self.metrics.connected.set(1)
            self.on_connected()
            log.info("connected; subscribing to %d topic filter(s)", count)
        except Exception:
            log.exception("on_connect failed")

    def _on_connect_fail(self, client, userdata) -> None:
        """A connection attempt raised (TCP, DNS, TLS): paho retries; say why, and count."""
        try:
            self._connect_failed(*failure_reason(getattr(client, "connect_error", None),
                                                 getattr(client, "connect_error_in_tls", False)))
        except Exception:
            log.exception("on_connect_fail failed")

    def _connect_failed(self, reason: str, detail: str) -> None:
        """Count every failed attempt (by reason); log it with host:port, at most once per
        :data:`LOG_FAILURE_EVERY_S` per reason, saying how many were not logged."""
        self._reported_attempt = getattr(self.client, "attempts", 0)
        self.metrics.connect_failures.labels(reason=reason).inc()
        now = time.monotonic()
        last, suppressed = self._failure_logged.get(reason, (None, 0))
        if last is not None and now - last < LOG_FAILURE_EVERY_S:
            self._failure_logged[reason] = (last, suppressed + 1)
            return
        self._failure_logged[reason] = (now, 0)
        more = f" ({suppressed} more like it not logged)" if suppressed else ""
        log.warning("MQTT connection to %s:%d failed (%s): %s; retrying%s", self.config.host,
                    self.config.port, reason, detail, more)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None) -> None:
        """SUBACK: inputs flow once every filter is granted; a refused one is an error to see
        (on /healthz, in the log and in the metrics), not a silence."""
        try:
            with self._subscribe_lock:  # held to the set: a newer request clears it after
                expected, topics = self._subscribe
                if mid != expected:
                    return
                refused = [t for t, rc in zip(topics, reason_codes, strict=False)
                           if rc.is_failure]
                if not refused:
                    self.subscribed.set()
            if refused:
                self.metrics.subscriptions_refused.inc(len(refused))
                log.error("broker refused %d subscription(s): %s", len(refused),
                          ", ".join(refused))
            else:
                log.info("subscribed: the broker granted %d topic filter(s)", len(topics))
        except Exception:
            log.exception("on_subscribe failed")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        self.subscribed.clear()
        self.metrics.connected.set(0)
        if self._stop.is_set():
            return
        try:
            if getattr(client, "attempts", 0) != self._reported_attempt:  # never connected
                self._connect_failed("closed", f"connection closed before the broker's CONNACK "
                                               f"({reason_code}; TLS expected?)")
                return
        except Exception:
            log.exception("on_disconnect failed")
        self.metrics.disconnects.inc()
        log.warning("disconnected from broker %s:%d (%s); reconnecting", self.config.host,
                    self.config.port, reason_code)

    def _on_message(self, client, userdata, message) -> None:
        try:
            by = ""
            props = getattr(message, "properties", None)
            for key, value in getattr(props, "UserProperty", None) or []:
                if key == "by":
                    by = value
            self.inbox.put_nowait(Inbound(message.topic, message.payload, time.time(),
                                          message.mid, message.qos, self.generation, by))
        except Exception as exc:  # a raising callback would kill paho's network thread
            full = isinstance(exc, queue.Full)
            self.metrics.rejected.labels(reason="queue_full" if full else "bad_message").inc()
            if not full:
                log.exception("could not enqueue a message")
            with contextlib.suppress(Exception):  # ack anyway, or the broker's window stays blocked
                client.ack(message.mid, message.qos) if message.qos else None
