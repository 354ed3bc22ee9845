"""paho's MQTT client with batched socket I/O: one ``recv`` for many packets, one wake-up and
one ``send`` for many acknowledgements.

paho reads every packet with at least three ``recv`` calls (command byte, each byte of the
remaining length, then the body) and one more that finds the socket empty. At thousands of
small QoS 1 samples a second that ``recv`` was the line most often on the stack of the daemon's
network thread (py-spy, session 6). :class:`BufferedSocket` reads what the kernel has (up to 64
KiB) at once and hands paho the bytes it asks for from memory. It reports the bytes it holds
through ``pending()``, the hook paho already uses for TLS sockets (whose decrypted bytes
select() cannot see either): while anything is buffered, paho's loop does not wait in select()
and reads on. Everything else (send, fileno, close, TLS errors) goes to the real socket.

The daemon acknowledges its inputs (manual QoS 1 acks) a batch at a time, after the batch's
results are on disk. ``Client.ack`` queues one packet per message, and each queued packet
wakes paho's network thread (one byte through its socket pair) and is written with a
``send`` of its own: for a batch of 100 inputs, 100 wake-ups of a thread that then competes
for the GIL with the one still queueing. :meth:`BufferedClient.ack_many` queues the batch's
PUBACKs as one write: the same 4-byte packets (``0x40 0x02 <packet id>``, what
``Client.ack`` sends, also for MQTT 5 where reason code 0 may be omitted) back to back.
Publishes are tracked one by one by paho, so they stay separate packets; inside
:meth:`BufferedClient.one_wakeup` their wake-ups are folded into one, sent at the end.

This leans on paho internals, stable through paho 2.x: ``_create_socket``, ``_sockpairW``,
``_packet_queue``, and for PUBACKs (:meth:`BufferedClient._handle_pubackcomp`) ``_in_packet``,
``_protocol``, ``_out_message_mutex``, ``_out_messages`` and ``_do_on_publish``, and for
messages (:meth:`BufferedClient._handle_on_message`) ``_on_message_filtered._root``,
``_in_callback_mutex`` and ``_easy_log``.
``tests/test_mqtt_client.py`` exercises each against a real Mosquitto, so an upgrade that
moves them fails there, not on a gateway.
"""

from __future__ import annotations

import contextlib
import struct
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

READ_CHUNK = 65536
READ_BURST = 256  # packets read from the buffer per turn of paho's loop, at most
PUBACK = PacketTypes.PUBACK << 4
_PUBACK = struct.Struct("!BBH")  # fixed header, remaining length 2, packet id
_MID = struct.Struct("!H")
# What paho hands on_publish for every MQTT 3.1.1 PUBACK (success, no properties), made once
_PUBACK_OK = ReasonCode(PacketTypes.PUBACK)
_NO_PROPERTIES = Properties(PacketTypes.PUBACK)


class BufferedSocket:
    """A socket (plain or TLS) whose reads are served from a userspace buffer."""

    def __init__(self, sock: Any):
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buf):
            data = self._sock.recv(READ_CHUNK)  # BlockingIOError / SSLWantRead: paho's to catch
            if len(data) <= bufsize:
                self._buf, self._pos = b"", 0
                return data
            self._buf, self._pos = data, 0
        chunk = self._buf[self._pos:self._pos + bufsize]
        self._pos += len(chunk)
        return chunk

    def pending(self) -> int:
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return self.buffered() + inner

    def buffered(self) -> int:
        """Bytes read from the kernel and not yet handed out."""
        return len(self._buf) - self._pos

    def __getattr__(self, name: str) -> Any:  # send, fileno, close, setblocking, ...
        return getattr(self._sock, name)


class WakeGate:
    """paho's socket-pair writer (a byte written wakes its network thread from select()); a
    thread holding the gate has its wake-ups folded into one, written on release."""

    def __init__(self, sock: Any):
        self._sock = sock
        self._state = threading.local()

    def send(self, data: bytes) -> int:
        if getattr(self._state, "held", False):
            self._state.wake = True
            return len(data)
        return self._sock.send(data)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        state = self._state
        if getattr(state, "held", False):  # nested: the outer one wakes
            yield
            return
        state.held, state.wake = True, False
        try:
            yield
        finally:
            state.held = False
            if state.wake:
                with contextlib.suppress(BlockingIOError):  # full: a wake-up is pending
                    self._sock.send(b"0")

    def __getattr__(self, name: str) -> Any:  # recv, close, fileno, ...
        return getattr(self._sock, name)


class BufferedClient(mqtt.Client):
    """``paho.mqtt.client.Client`` reading through a :class:`BufferedSocket`, with wake-ups
    folded per thread (:meth:`one_wakeup`) and acknowledgements in one write (:meth:`ack_many`).

    It also keeps why the last connection attempt failed: paho's ``on_connect_fail`` is called
    without the exception (a TLS certificate error, a refused TCP connect, ...)."""

    attempts = 0  # connection attempts so far (each reconnect() is one)
    connect_error: OSError | None = None  # what the last attempt raised, if it raised
    connect_error_in_tls = False  # ... and whether it was raised during the TLS handshake

    def reconnect(self) -> mqtt.MQTTErrorCode:
        self.attempts += 1
        self.connect_error, self.connect_error_in_tls = None, False
        try:
            return super().reconnect()
        except OSError as exc:
            self.connect_error = exc
            raise

    def _ssl_wrap_socket(self, tcp_sock: Any) -> Any:
        """(paho internal, 2.x) a reset during the handshake is a TLS failure: a plain port."""
        try:
            return super()._ssl_wrap_socket(tcp_sock)
        except OSError:
            self.connect_error_in_tls = True
            raise

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """paho reads about one packet per turn of its loop, and each turn costs a select()
        and the loop's bookkeeping; packets already in the buffer need neither. Read on while
        whole bytes wait in it, up to :data:`READ_BURST` packets, so writes (acks, results)
        and keepalive still get their turn."""
        rc = super().loop_read(max_packets)
        sock = self._sock
        if not isinstance(sock, BufferedSocket):
            return rc
        for _ in range(READ_BURST):
            # stop on an error, a socket replaced meanwhile (reconnect), or an empty buffer
            if rc != mqtt.MQTT_ERR_SUCCESS or self._sock is not sock or not sock.buffered():
                break
            rc = super().loop_read(1)
        return rc

    def loop_start(self) -> mqtt.MQTTErrorCode:
        rc = super().loop_start()
        if self._sockpairW is not None and not isinstance(self._sockpairW, WakeGate):
            self._sockpairW = WakeGate(self._sockpairW)
        return rc

    @contextlib.contextmanager
    def one_wakeup(self) -> Iterator[None]:
        """Packets queued by this thread inside wake the network thread once, at the end (it
        then writes them all), instead of once each while this thread still queues."""
        gate = self._sockpairW
        if not isinstance(gate, WakeGate):  # no network thread (yet): nothing to fold
            yield
            return
        with gate.held():
            yield

    def _handle_pubackcomp(self, cmd: str) -> mqtt.MQTTErrorCode:
        """(paho internal, 2.x) An MQTT 3.1.1 PUBACK (a packet id, nothing else) handled
        without the ReasonCode and Properties objects paho builds for each one: the daemon
        gets a PUBACK per result it publishes, and building them was most of the network
        thread's time for it. on_publish gets shared success / no-properties objects, what
        paho would have built; MQTT 5 (reason codes, properties) and PUBCOMP go to paho."""
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or self._protocol == mqtt.MQTTv5 or len(packet) != 2:
            return super()._handle_pubackcomp(cmd)
        mid, = _MID.unpack(packet)
        with self._out_message_mutex:
            if mid in self._out_messages:  # paho: the client is told once per message
                return self._do_on_publish(mid, _PUBACK_OK, _NO_PROPERTIES)
        return mqtt.MQTT_ERR_SUCCESS

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        """(paho internal, 2.x) Straight to ``on_message`` while no per-topic callback is
        registered (``message_callback_add``; the daemon registers none): paho splits every
        message's topic and walks its filter tree first, an empty one too (py-spy: ~7 % of the
        daemon's busy samples in a burst)."""
        root = self._on_message_filtered._root
        if root._children or root._content is not None:
            return super()._handle_on_message(message)
        on_message = self.on_message
        if on_message:
            with self._in_callback_mutex:
                try:
                    on_message(self, self._userdata, message)
                except Exception as err:  # as paho: logged, raised unless suppressed
                    self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise
        return None

    def ack_many(self, mids: Iterable[int]) -> None:
        """PUBACK these QoS 1 messages (``manual_ack=True``): one queued write for all."""
        blob = b"".join(_PUBACK.pack(PUBACK, 2, mid) for mid in mids)
        if blob:
            self._packet_queue(PUBACK, blob, 0, 1)
