"""The daemon's paho client: buffered reads lose no byte, batched acks really acknowledge."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest

from edge_runtime.mqtt_client import BufferedClient, BufferedSocket, WakeGate
from tests.daemon_support import wait_for


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


class CountingSocket:
    def __init__(self):
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)


def test_wake_gate_folds_a_threads_wakeups_into_one_and_leaves_others_alone():
    sock = CountingSocket()
    gate = WakeGate(sock)
    with gate.held():
        for _ in range(5):
            gate.send(b"0")
        with gate.held():  # nested: still one
            gate.send(b"0")
        other = threading.Thread(target=gate.send, args=(b"0",))  # another thread: at once
        other.start()
        other.join()
        assert len(sock.sent) == 1
    assert len(sock.sent) == 2  # the holder's one wake-up, on release
    with gate.held():
        pass
    assert len(sock.sent) == 2  # nothing queued: no wake-up
    gate.send(b"0")
    assert len(sock.sent) == 3


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
    client.subscribed = threading.Event()
    client.on_subscribe = lambda *a: client.subscribed.set()
    client.connect("127.0.0.1", port)
    return client


def _deliveries(port: int, acks: str, publish: int) -> tuple[list[int], list[int]]:
    """Messages received by a first session (acking as told), then by a second one."""
    first, second = [], []
    done = threading.Event()
    client = _receiver(port, acks, first, done, publish)
    client.loop_start()
    assert client.subscribed.wait(10)
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
    assert again.subscribed.wait(10)
    time.sleep(1.5)  # the session's unacknowledged messages, if any, come back meanwhile
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


def test_publishes_inside_one_wakeup_leave_promptly(broker):
    """Without the release's wake-up, paho's thread sends them only at its next select()
    timeout (up to 1 s later): with that wake-up removed, this test failed."""
    got: list[float] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wake-sub")
    sub.on_message = lambda *a: got.append(time.monotonic())
    sub.on_connect = lambda c, *a: c.subscribe("t/wake", qos=1)
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    assert subscribed.wait(10)
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="wake-pub")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    assert isinstance(client._sockpairW, WakeGate)
    assert wait_for(client.is_connected, 10)
    try:
        for round_ in range(5):
            time.sleep(0.3)  # paho's thread asleep in select()
            with client.one_wakeup():
                for _ in range(3):
                    client.publish("t/wake", b"x", qos=1)
            released = time.monotonic()
            deadline = released + 2
            while len(got) < 3 * (round_ + 1) and time.monotonic() < deadline:
                time.sleep(0.005)
            assert len(got) == 3 * (round_ + 1)
            assert got[-1] - released < 0.5
    finally:
        client.disconnect()
        client.loop_stop()
        sub.disconnect()
        sub.loop_stop()


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_pubacks_reach_on_publish_once_each(broker, monkeypatch, protocol):
    """MQTT 3.1.1 PUBACKs skip paho's decoder (its per-packet ReasonCode and Properties),
    MQTT 5 ones go through it; either way on_publish gets every packet id once, as success,
    and paho forgets the message."""
    import paho.mqtt.client as paho_client

    decoded: list[int] = []
    decode = paho_client._packet.decode_puback
    monkeypatch.setattr(paho_client._packet, "decode_puback",
                        lambda *a: decoded.append(1) or decode(*a))
    acked: list[tuple[int, bool]] = []
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="puback-test",
                            protocol=protocol)
    client.on_publish = lambda c, u, mid, reason, props: acked.append(
        (mid, reason.is_failure))
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert wait_for(client.is_connected, 10)
        infos = [client.publish("t/puback", b"x", qos=1) for _ in range(30)]
        assert wait_for(lambda: len(acked) == 30, 10)
        time.sleep(0.2)  # a second call for any of them would come now
    finally:
        client.disconnect()
        client.loop_stop()
    assert sorted(acked) == sorted((i.mid, False) for i in infos)
    assert all(i.is_published() for i in infos) and not client._out_messages
    assert (len(decoded) == 0) == (protocol == mqtt.MQTTv311)


def test_messages_reach_on_message_and_per_topic_callbacks_still_win(broker):
    """Without per-topic callbacks paho's filter tree is skipped; with one registered, its
    messages go to it (not to on_message), as paho does, and the others to on_message."""
    plain: list[str] = []
    filtered: list[str] = []
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="on-message-test")
    client.on_message = lambda c, u, m: plain.append(m.topic)
    matched: list[str] = []
    match = client._on_message_filtered.iter_match
    client._on_message_filtered.iter_match = lambda topic: matched.append(topic) or match(topic)
    subscribed = threading.Event()
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_connect = lambda c, *a: c.subscribe("t/om/#", qos=1)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="on-message-pub")
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        assert subscribed.wait(10)
        pub.publish("t/om/a", b"1", qos=1)
        assert wait_for(lambda: plain == ["t/om/a"], 10)
        assert matched == []  # the empty filter tree was not walked
        client.message_callback_add("t/om/b", lambda c, u, m: filtered.append(m.topic))
        pub.publish("t/om/b", b"2", qos=1)
        pub.publish("t/om/a", b"3", qos=1)
        assert wait_for(lambda: filtered == ["t/om/b"] and plain == ["t/om/a"] * 2, 10)
    finally:
        for c in (client, pub):
            c.disconnect()
            c.loop_stop()


def test_packets_already_buffered_are_read_in_one_turn_of_the_loop(broker):
    """paho's ``loop_read`` reads about one packet per call (one per turn of its loop, each
    with a select()); the buffered client reads on while whole packets wait in its buffer.
    Driven by hand (no network thread): 200 small messages in the kernel, a call or two."""
    from edge_runtime.mqtt_client import READ_BURST

    got: list[bytes] = []
    client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="burst-read")
    client.on_message = lambda c, u, m: got.append(m.payload)
    subscribed = threading.Event()
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_connect = lambda c, *a: c.subscribe("t/burst", qos=0)
    client.connect("127.0.0.1", broker.port)
    deadline = time.monotonic() + 10
    while not subscribed.is_set() and time.monotonic() < deadline:
        client.loop(0.05)
    assert subscribed.is_set()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="burst-pub")
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        n = 200
        assert n <= READ_BURST
        for i in range(n):
            pub.publish("t/burst", str(i).encode(), qos=0)
        time.sleep(1.0)  # delivered into the subscriber's socket meanwhile
        calls = 0
        while len(got) < n and calls < n:
            client.loop_read()
            calls += 1
            time.sleep(0.01)
        assert got == [str(i).encode() for i in range(n)]  # every packet, in order
        assert calls <= 5, calls  # (about) one call for all: paho alone needs one per packet
    finally:
        pub.disconnect()
        pub.loop_stop()
        client.disconnect()
