"""The daemon's paho client: buffered reads lose no byte, batched acks really acknowledge."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest

from edge_runtime.mqtt_client import BufferedClient, BufferedSocket


class ChunkSocket:
    """A non-blocking socket stand-in that returns prepared chunks, then EAGAIN."""

    def __init__(self, chunks: list[bytes]):
        self.chunks = list(chunks)
        self.reads = 0

    def recv(self, bufsize: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError
        self.reads += 1
        return self.chunks.pop(0)[:bufsize]

    def fileno(self) -> int:
        return 42


def test_buffered_socket_serves_paho_sized_reads_from_one_recv():
    # Two PUBACKs and a PUBLISH, as paho reads them: 1 byte, 1 byte, then the body.
    stream = bytes([0x40, 2, 0, 1, 0x40, 2, 0, 2, 0x30, 5, 0, 1, ord("t"), ord("h"), ord("i")])
    inner = ChunkSocket([stream])
    sock = BufferedSocket(inner)
    got = b""
    for size in (1, 1, 2, 1, 1, 2, 1, 1, 5):
        chunk = sock.recv(size)
        assert len(chunk) == size
        got += chunk
        assert sock.pending() == len(stream) - len(got)
    assert got == stream and inner.reads == 1  # one system call for three packets
    with pytest.raises(BlockingIOError):  # empty: paho's "no more data" signal passes through
        sock.recv(1)
    assert sock.fileno() == 42  # select() sees the real socket


def test_buffered_socket_passes_a_short_read_through_unbuffered():
    inner = ChunkSocket([b"\x40", b"\x02\x00\x07"])  # a packet split across two reads
    sock = BufferedSocket(inner)
    assert sock.recv(1) == b"\x40" and sock.pending() == 0
    assert sock.recv(1) == b"\x02" and sock.pending() == 2
    assert sock.recv(2) == b"\x00\x07" and sock.pending() == 0


def _receiver(port: int, acks: str, got: list[int], done: threading.Event,
              expected: int) -> BufferedClient:
    """A persistent-session QoS 1 subscriber with manual acks: ``acks`` is "many" or "none"."""
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="ack-test",
                            clean_session=False, manual_ack=True)
    mids: list[int] = []

    def on_message(c, userdata, message):
        got.append(int(message.payload))
        mids.append(message.mid)
        if acks == "many" and len(mids) % 5 == 0:  # in batches, as the acker does
            c.ack_many(mids[-5:])
        if len(mids) == expected:
            done.set()

    client.on_message = on_message
    client.on_connect = lambda c, *a: c.subscribe("t/ack", qos=1)
    client.connect("127.0.0.1", port)
    return client


def _deliveries(port: int, acks: str, publish: int) -> tuple[list[int], list[int]]:
    """Messages received by a first session (acking as told), then by a second one."""
    first, second = [], []
    done = threading.Event()
    client = _receiver(port, acks, first, done, publish)
    client.loop_start()
    time.sleep(0.5)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ack-test-pub")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    for i in range(publish):
        pub.publish("t/ack", str(i), qos=1)
    assert done.wait(10)
    time.sleep(0.5)  # let the acknowledgements reach the broker
    client.disconnect()
    client.loop_stop()
    again = _receiver(port, "none", second, threading.Event(), publish)
    again.loop_start()
    time.sleep(1.5)
    again.disconnect()
    again.loop_stop()
    pub.loop_stop()
    return first, second


@pytest.mark.parametrize("acks", ["many", "none"])
def test_ack_many_acknowledges_every_message_to_a_real_broker(broker, acks):
    # 15: below Mosquitto's default of 20 unacknowledged messages in flight per client
    first, second = _deliveries(broker.port, acks, publish=15)
    assert first == list(range(15))
    if acks == "many":  # acknowledged: the broker forgot them, the next session gets nothing
        assert second == []
    else:  # the control: unacknowledged messages come back, so the check above can fail
        assert sorted(set(second)) == list(range(15))
