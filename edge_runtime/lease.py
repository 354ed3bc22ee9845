"""The lease of an active/standby pair, held through the MQTT broker (docs/edge_daemon.md,
"Active/standby pair").

Each peer keeps a small MQTT connection of its own for the lease (its keepalive short, the data
session's untouched) and publishes a retained status on ``<lease_topic>/<peer_id>``:
``{"peer", "priority", "state": "online", "role", "term", "nonce"}``, with a retained Last
Will ``"state": "offline"``. A crash that closes the socket fires the will at once; a silent
death (power, cable) when the broker's keepalive expires (1.5 x ``keepalive_s``). Every peer
subscribes to ``<lease_topic>/+`` and runs the same rule on what it saw (:func:`decide`):

- a live peer that claims ``active`` holds the lease; if two claim it (a partition healed),
  the higher ``term`` wins, then the lower priority number, then the lower peer id, and the
  other steps down;
- if none claims it, the live peer with the lowest priority number (then peer id) claims it
  with a term one above every term seen.

At a cold start a peer claims a free lease only ``priority x heartbeat_s`` after it first saw
its own status, so when both start together the lower number gets it. It is not pre-emptive:
a peer that comes back with a lower priority number stays standby while another holds the
lease, so a flapping gateway does not move the lease back and forth.

Live means online and heard within 3 heartbeats (each peer re-publishes its status every
``heartbeat_s``): a retained ``online`` left behind by a broker that restarted while its
peer was dead is not a lease. A peer decides only once it has seen its own status come
back on this connection (then the broker has sent every retained status before it); while
disconnected it keeps its role: an active cut off from the broker goes on committing its
results to its outbox, so both peers may publish for a while (duplicates, same ids) but
neither drops a result.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from edge_runtime.config import MqttConfig
from edge_runtime.ha_config import HaConfig

log = logging.getLogger("procedge.edge")

ACTIVE, STANDBY = "active", "standby"
STALE_HEARTBEATS = 3  # a peer not heard for this many heartbeats is dead


@dataclass
class Peer:
    """A peer's status as last received (``heard``: monotonic receive time)."""

    peer: str
    priority: int
    online: bool
    role: str
    term: int
    heard: float


def decide(me: str, role: str, term: int, peers: Mapping[str, Peer],
           live_after: float, may_claim: bool = True) -> tuple[str, int]:
    """(role, term) for peer ``me`` whose own role and term are ``role`` and ``term``, from
    the statuses ``peers`` (``me`` included once its own status came back); peers not heard
    since ``live_after`` are dead. Without its own live status ``me`` keeps its role;
    ``may_claim`` false: it does not claim a free lease (yet)."""
    live = {p.peer: p for p in peers.values() if p.online and p.heard >= live_after}
    if me not in live:
        return role, term
    live[me] = Peer(me, live[me].priority, True, role, term, live[me].heard)
    holders = [p for p in live.values() if p.role == ACTIVE]
    if holders:
        top = min(holders, key=lambda p: (-p.term, p.priority, p.peer))
        return (ACTIVE if top.peer == me else STANDBY), term
    first = min(live.values(), key=lambda p: (p.priority, p.peer))
    if first.peer != me or not may_claim:
        return STANDBY, term
    return ACTIVE, max([term, *(p.term for p in peers.values())]) + 1


class Lease:
    def __init__(self, ha: HaConfig, mqtt_config: MqttConfig, client_id: str,
                 on_role: Callable[[str, int], None],
                 on_output: Callable[[str, bytes], None], output_filters: list[str]):
        """``on_role(role, term)``: called (in a network or timer thread) on every change;
        ``on_output(topic, payload)``: a result published by the active, seen while standby
        on ``output_filters``."""
        self.ha, self.mqtt = ha, mqtt_config
        self.role, self.term = STANDBY, 0
        self.on_role, self.on_output = on_role, on_output
        self.output_filters = output_filters
        self._topic = f"{ha.lease_topic}/{ha.peer_id}"
        self._peers: dict[str, Peer] = {}
        self._lock = threading.RLock()
        self._nonce = ""  # of this connection's status: its echo means "synced"
        self._watching = False  # subscribed to the output filters
        self._first_sync = 0.0  # monotonic time this process first saw its own status
        self._followed: dict[str, Callable[[bytes], None]] = {}  # topic → its handler
        self._stop = threading.Event()
        self.client = self._make_client(client_id)
        self._timer = threading.Thread(target=self._beat, name="procedge-lease", daemon=True)

    @property
    def active(self) -> bool:
        return self.role == ACTIVE

    def _make_client(self, client_id: str) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{client_id}-lease",
                             clean_session=True)
        self.mqtt.configure(client)  # TLS, credentials, no Nagle: as the data session
        client.will_set(self._topic, self._status("offline"), qos=1, retain=True)
        client.reconnect_delay_set(min_delay=self.mqtt.reconnect_min_s,
                                   max_delay=self.mqtt.reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        return client

    def start(self) -> None:
        self.client.connect_async(self.mqtt.host, self.mqtt.port, keepalive=self.ha.keepalive_s)
        self.client.loop_start()
        self._timer.start()

    def follow(self, topic: str, on_message: Callable[[bytes], None]) -> None:
        """Subscribe ``topic`` (QoS 1) on every connect, in the same SUBSCRIBE as the
        statuses, so its retained message is known before this peer can claim the lease;
        ``on_message(payload)`` runs in the network thread. Call before :meth:`start`."""
        self._followed[topic] = on_message

    def publish_acked(self, topic: str, payload: str, timeout_s: float) -> bool:
        """Publish retained at QoS 1 on the lease connection; True once the broker has it
        (PUBACK within ``timeout_s``). Called from another thread than paho's."""
        if not self.client.is_connected():
            return False
        info = self.client.publish(topic, payload, qos=1, retain=True)
        with contextlib.suppress(RuntimeError, ValueError):
            info.wait_for_publish(timeout=timeout_s)
        return info.is_published()

    def stop(self) -> None:
        """Say offline (retained) while connected: a stopped active hands over at once."""
        self._stop.set()
        if self.client.is_connected():
            info = self.client.publish(self._topic, self._status("offline"), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()
        self._timer.join(timeout=self.ha.heartbeat_s + 1)

    def _status(self, state: str) -> str:
        body = {"peer": self.ha.peer_id, "priority": self.ha.priority, "state": state}
        if state == "online":
            body |= {"role": self.role, "term": self.term, "nonce": self._nonce}
        return json.dumps(body)

    def _publish(self) -> None:
        if self.client.is_connected():
            self.client.publish(self._topic, self._status("online"), qos=1, retain=True)

    # -- paho callbacks (network thread): small and guarded ---------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None) -> None:
        try:
            if reason_code.is_failure:
                log.warning("lease connection refused: %s", reason_code)
                return
            with self._lock:
                self._nonce = uuid.uuid4().hex  # statuses before this one's echo are history
                self._watching = False
                client.subscribe([(f"{self.ha.lease_topic}/+", 1),
                                  *((topic, 1) for topic in self._followed)])
                self._watch(self.role == STANDBY)
                self._publish()
        except Exception:
            log.exception("lease on_connect failed")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None) -> None:
        with self._lock:
            self._peers.pop(self.ha.peer_id, None)  # not synced until our status comes back
        if not self._stop.is_set():
            log.warning("lease connection lost (%s); keeping role %s until it is back",
                        reason_code, self.role)

    def _on_message(self, client, userdata, message) -> None:
        try:
            if message.topic in self._followed:
                self._followed[message.topic](message.payload)
            elif message.topic.startswith(self.ha.lease_topic + "/"):
                self._on_status(message.topic, message.payload)
            else:
                self.on_output(message.topic, message.payload)
        except Exception:
            log.exception("lease message on %s not understood", message.topic[:200])

    def _on_status(self, topic: str, payload: bytes) -> None:
        body = json.loads(payload)
        peer = str(body.get("peer") or topic.rsplit("/", 1)[1])
        with self._lock:
            if peer == self.ha.peer_id:
                if body.get("nonce") != self._nonce:
                    return  # our own status from before this connection: not us now
                self._first_sync = self._first_sync or time.monotonic()
            old = self._peers.get(peer)
            self._peers[peer] = Peer(
                peer, int(body.get("priority", 0)), body.get("state") == "online",
                str(body.get("role", STANDBY)),
                int(body.get("term", old.term if old else 0)), time.monotonic())
            self._evaluate()

    # -- the rule ---------------------------------------------------------------------------
    def _beat(self) -> None:
        """Re-publish our status every heartbeat; a peer gone quiet is dead."""
        while not self._stop.wait(self.ha.heartbeat_s):
            try:
                with self._lock:
                    self._publish()
                    self._evaluate()
            except Exception:
                log.exception("lease heartbeat failed")

    def _evaluate(self) -> None:
        now = time.monotonic()
        live_after = now - STALE_HEARTBEATS * self.ha.heartbeat_s
        may_claim = bool(self._first_sync) and (
            now - self._first_sync >= self.ha.priority * self.ha.heartbeat_s)
        role, term = decide(self.ha.peer_id, self.role, self.term, self._peers, live_after,
                            may_claim)
        if (role, term) == (self.role, self.term):
            return
        self.role, self.term = role, term
        self._watch(role == STANDBY)
        self._publish()  # a claim (or a step down) is news for the other peer at once
        self.on_role(role, term)

    def _watch(self, on: bool) -> None:
        """While standby, receive what the active publishes (QoS 0: a miss costs a duplicate
        at takeover, never a loss); while active, not (its own results are no news)."""
        if on == self._watching or not self.client.is_connected() or not self.output_filters:
            return
        if on:
            self.client.subscribe([(f, 0) for f in self.output_filters])
        else:
            self.client.unsubscribe(self.output_filters)
        self._watching = on
