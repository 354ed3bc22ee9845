"""Fault injection against real Mosquitto: broker restarts, daemon SIGKILL — nothing lost.

The expected events come from the same daemon code fed the same samples without MQTT
(:func:`reference_events`); the live runs must publish exactly that set of event ids
(duplicates allowed, as QoS 1 allows, recognisable by id).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

from edge_runtime.bundle import Bundle
from edge_runtime.config import EdgeConfig
from edge_runtime.daemon import EdgeDaemon, Inbound
from edge_runtime.payloads import iso_ms, parse_timestamp
from tests.daemon_support import (
    ROOT,
    UNS,
    Collector,
    RestartableBroker,
    alarm_events,
    check_same_events,
    edge_config,
    labelled_run,
    process_alarm_events,
    reference_events,
    samples,
    start_daemon_process,
    wait_for,
    write_config,
)

RAW = UNS + "/raw/{tag}"


def result_keys(results: list[dict]) -> set[tuple[str, str]]:
    """(model, window time) of each inference result: what identifies one window's output."""
    return {(m["model"], m["ts"]) for m in results}


def feed_client(port: int) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="feed",
                         clean_session=False)
    client.acked = set()
    client.on_publish = lambda c, u, mid, *rest: c.acked.add(mid)
    client.reconnect_delay_set(0.1, 0.5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def publish(client: mqtt.Client, items: list[tuple[str, bytes]]) -> None:
    """QoS 1, checking every rc; waits for the PUBACKs (is_published() raises offline)."""
    infos = [client.publish(RAW.format(tag=t), p, qos=1) for t, p in items]
    assert all(i.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN) for i in infos)
    wait_for(lambda: all(i.mid in client.acked for i in infos), 60)


# a drift alarm's score (CUSUM, PSI) integrates every row since the start: in the runs that
# reorder inputs, a sample refused as late moves it slightly while the event stays the same
LATE_DRIFT_REL = 1e-3


def test_broker_restarts_lose_nothing(tmp_path: Path, bundles):
    broker = RestartableBroker(tmp_path)
    broker.start()
    config = edge_config(tmp_path, broker.port, bundles)
    run = labelled_run(400)
    items = samples(run)
    expected, expected_inf = reference_events(config, tmp_path, items)
    assert len(expected) >= 4  # the labelled run raises and clears
    collector = Collector(broker.port, [f"{UNS}/alarm/#", f"{UNS}/inference/#"])
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    daemon.start()
    feed = feed_client(broker.port)
    try:
        assert daemon.subscribed.wait(10)  # not just connected: inputs flow
        chunk = len(items) // 8
        for i in range(8):
            part = items[i * chunk:(i + 1) * chunk if i < 7 else None]
            done = min(len(items), (i + 1) * chunk) if i < 7 else len(items)
            if i % 2 == 0:  # broker up: the samples come over MQTT
                publish(feed, part)
                assert wait_for(lambda d=done: daemon.metrics.value(
                    "procedge_messages_total") >= d, 120)
                if i == 4:  # once: SIGKILL, after the broker saved what it acknowledged
                    # (acknowledged in memory only would be the broker's loss, not the
                    # daemon's; `autosave_on_changes` counts stored messages, not PUBACKs, and
                    # failed in CI once: one event's score differed from the reference)
                    assert wait_for(lambda: daemon.outbox.depth == 0, 30)
                    broker.wait_saved()
                    broker.stop(signal.SIGKILL)
                else:  # else: SIGTERM at once, publishes in flight
                    broker.stop(signal.SIGTERM)
            else:  # broker down: a local input keeps the models busy, results wait on disk
                for tag, payload in part:
                    daemon.inbox.put(Inbound(RAW.format(tag=tag), payload, time.time()))
                assert wait_for(lambda d=done: daemon.metrics.value(
                    "procedge_messages_total") >= d, 120)
                assert wait_for(lambda: daemon.inbox.empty(), 10)
                time.sleep(1.2)  # longer than late_after_s: these go out as historical
                assert daemon.outbox.depth > 0
                broker.start()
        want_ids = {e["event_id"] for e in expected}
        if not wait_for(lambda: want_ids <= {e["event_id"] for e in alarm_events(collector)},
                        60):
            print("missing:", want_ids - {e["event_id"] for e in alarm_events(collector)})
        wait_for(lambda: daemon.outbox.depth == 0, 30)
        received = alarm_events(collector)
        check_same_events(received, expected, drift_rel=LATE_DRIFT_REL)
        inference = collector.json("/inference/")
        got = result_keys(inference)
        assert got == result_keys(expected_inf)
        assert any(m.get("historical") for m in inference)
        assert daemon.outbox.depth == 0
        assert daemon.metrics.value("procedge_mqtt_connects_total") >= 5
        dups = len(received) - len({e["event_id"] for e in received})
        print(f"\nbroker restarts: {broker.starts - 1}; alarm events {len(expected)} expected, "
              f"{len({e['event_id'] for e in received})} distinct received, {dups} duplicate(s);"
              f" inference {len(got)}/{len(expected_inf)}; "
              f"historical {sum(bool(m.get('historical')) for m in inference)}")
    finally:
        feed.loop_stop()
        daemon.stop(drain_timeout_s=2)
        collector.close()
        broker.cleanup()


OFFLINE_PRODUCER = """
import os, signal, sys, time, yaml
from edge_runtime.bundle import Bundle
from edge_runtime.config import EdgeConfig
from edge_runtime.daemon import EdgeDaemon, Inbound
from edge_runtime.payloads import iso_ms, parse_timestamp
config = EdgeConfig.model_validate(yaml.safe_load(open(sys.argv[1])))
items = [(t, bytes.fromhex(p)) for t, p in (l.split() for l in open(sys.argv[2]))]
d = EdgeDaemon(config)
d.start()  # the broker is down: everything stays in the outbox
for t, p in items:
    d.inbox.put(Inbound(d._topic("raw", tag=t), p, time.time()))
while not d.inbox.empty() or d.metrics.value("procedge_messages_total") < len(items):
    time.sleep(0.05)
time.sleep(0.5)
print("depth", d.outbox.depth, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_outbox_of_a_killed_daemon_drains_in_order(tmp_path: Path, bundles):
    """A daemon SIGKILLed while the broker was down: the next start sends it all, in order."""
    broker = RestartableBroker(tmp_path)
    config = edge_config(tmp_path, broker.port, bundles)
    conf = write_config(tmp_path / "edge.yaml", config)
    items = samples(labelled_run(400))[:1000]  # 200 steps: includes the first raise
    expected, expected_inf = reference_events(config, tmp_path, items)
    feed = tmp_path / "items.txt"
    feed.write_text("".join(f"{t} {p.hex()}\n" for t, p in items))
    proc = subprocess.run([sys.executable, "-c", OFFLINE_PRODUCER, str(conf), str(feed)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    depth = int(proc.stdout.split()[-1])
    assert depth >= len(expected_inf) + len(expected)
    broker.start()
    collector = Collector(broker.port, [f"{UNS}/alarm/#", f"{UNS}/inference/#"])
    daemon = start_daemon_process(conf, tmp_path / "daemon.log")
    try:
        wait_for(lambda: len(collector.json("/inference/")) >= len(expected_inf), 60)
        inference = collector.json("/inference/")
        stamps = [m["ts"] for m in inference if m["model"] == "tank_forecast"]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        assert result_keys(inference) == result_keys(expected_inf)
        assert all(m.get("historical") for m in inference)
        wait_for(lambda: len(alarm_events(collector)) >= len(expected), 10)
        check_same_events(alarm_events(collector), expected)
        print(f"\nSIGKILLed daemon left {depth} rows; {len(inference)} forecasts/scores and "
              f"{len(alarm_events(collector))} alarm events delivered after restart, in order")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0  # graceful SIGTERM: drain, exit 0
        collector.close()
        broker.cleanup()


def test_daemon_sigkill_mid_run(tmp_path: Path, bundles):
    """SIGKILL while samples flow; unacknowledged inputs are redelivered to the new process."""
    broker = RestartableBroker(tmp_path)
    broker.start()
    # the feed runs far faster than real time, so redelivered and live samples interleave
    # over minutes of event time: a replay's lateness (docs/edge_daemon.md, "Event time")
    config = edge_config(tmp_path, broker.port, bundles,
                         event_time={"allowed_lateness_s": 4000.0, "reconnect_hold_s": 20.0})
    conf = write_config(tmp_path / "edge.yaml", config)
    items = samples(labelled_run(400))
    expected, expected_inf = reference_events(config, tmp_path, items)
    expected = process_alarm_events(expected)
    collector = Collector(broker.port, [f"{UNS}/alarm/#", f"{UNS}/inference/#",
                                        "edge/gwtest/status"])
    feed = feed_client(broker.port)
    daemon = start_daemon_process(conf, tmp_path / "daemon.log")
    try:
        online = lambda: any(p == b"online" for t, p in list(collector.messages)  # noqa: E731
                             if t.endswith("/status"))
        assert wait_for(online, 120)
        kill_at = 5 * 60  # row 60 of 400: far from the first fault segment (row 140)
        publish(feed, items[:kill_at])
        # the daemon may lag the feed (a loaded machine): what it had published bounds where
        # it was; every result after its last committed one may straddle the restart
        published = [parse_timestamp(m["ts"]) for m in collector.json("/inference/")]
        daemon.send_signal(signal.SIGKILL)  # whatever was in flight stays unacknowledged
        daemon.wait()
        publish(feed, items[kill_at:kill_at + 100])  # the broker queues for the session
        daemon = start_daemon_process(conf, tmp_path / "daemon.log")
        publish(feed, items[kill_at + 100:])
        want = {e["event_id"] for e in expected}
        assert wait_for(lambda: want <= {e["event_id"] for e in alarm_events(collector)}, 180)
        check_same_events(process_alarm_events(alarm_events(collector)), expected)
        want_inf = result_keys(expected_inf)
        # only results right after the restart may miss (the window buffer is memory): up
        # to window per model (docs/edge_daemon.md: the window refills, and its newest step
        # is final only once a sample past it arrives), all after the last result published
        # before the kill and within one window of the last sample fed before it. The last
        # alarm event comes before the run's last results: on a loaded machine those may
        # still be on their way (CI saw 45 missing where the restart accounts for 34)
        straddle = sum(Bundle.load(p).manifest.input.window for p in bundles.values())
        kill_ts = parse_timestamp(json.loads(items[kill_at][1])["ts"])
        floor = max(published, default=-1.0)

        def near_kill(keys: set[tuple[str, str]]) -> bool:
            return all(floor < parse_timestamp(ts) <= kill_ts + 24 * 5 for _, ts in keys)

        def settled() -> bool:
            keys = want_inf - result_keys(collector.json("/inference/"))
            return len(keys) <= straddle and near_kill(keys)

        wait_for(settled, 60)
        missing = want_inf - result_keys(collector.json("/inference/"))
        assert len(missing) <= straddle, sorted(missing)[:5]
        assert near_kill(missing), (sorted(missing)[:5], floor, kill_ts)
        print(f"\ndaemon SIGKILL: {len(want)} alarm events all received; "
              f"{len(want_inf) - len(missing)}/{len(want_inf)} inference outputs "
              f"({len(missing)} windows straddled the restart)")
    finally:
        feed.loop_stop()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        collector.close()
        broker.cleanup()


def test_a_future_timestamp_does_not_stop_inference(tmp_path: Path, bundles, broker):
    """Issue 17, defect 1: one sample 23 h ahead used to make every grid point up to it final,
    so every real sample after it was late: no forecast, no alarm for up to a day."""
    config = edge_config(tmp_path, broker.port, bundles)
    items = samples(labelled_run(400))
    expected, expected_inf = reference_events(config, tmp_path, items)
    collector = Collector(broker.port, [f"{UNS}/alarm/#", f"{UNS}/inference/#"])
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    daemon.start()
    feed = feed_client(broker.port)
    try:
        assert daemon.subscribed.wait(10)
        wild = json.dumps({"v": 60.0, "ts": iso_ms(time.time() + 23 * 3600)}).encode()
        publish(feed, [("temperature", wild), *items])
        assert wait_for(lambda: daemon.metrics.value("procedge_messages_total")
                        >= len(items) + 1, 60)
        want = {e["event_id"] for e in expected}
        wait_for(lambda: want <= {e["event_id"] for e in alarm_events(collector)}, 30)
        check_same_events(alarm_events(collector), expected)
        want_inf = result_keys(expected_inf)
        got = lambda: result_keys(collector.json("/inference/"))  # noqa: E731
        wait_for(lambda: got() >= want_inf, 30)  # the run's last results follow its last alarm
        assert got() == want_inf
        assert daemon.metrics.value("procedge_messages_rejected_total", reason="future") == 1
        assert daemon.metrics.value("procedge_messages_rejected_total", reason="late") == 0
    finally:
        feed.loop_stop()
        daemon.stop(drain_timeout_s=2)
        collector.close()


class ArrivalLog:
    """What reached the window grid of one model, in arrival order: (tag, event time)."""

    def __init__(self, pipeline):
        self.arrivals: list[tuple[str, float]] = []
        push = pipeline.push

        def logged(tag, ts, value, now=None):
            self.arrivals.append((tag, ts))
            return push(tag, ts, value) if now is None else push(tag, ts, value, now)

        pipeline.push = logged
        push_many = pipeline.push_many

        def logged_many(job):  # raw samples: a run of messages at once
            self.arrivals.extend((tag, ts) for _, tag, samples, _ in job for ts, _ in samples)
            return push_many(job)

        pipeline.push_many = logged_many

    def reordered(self) -> tuple[int, float]:
        """Samples first seen after a newer one of the same tag, and the most event time
        any first-seen sample was behind the newest (duplicates don't count: already used)."""
        newest: dict[str, float] = {}
        seen: set[tuple[str, float]] = set()
        count, behind, top = 0, 0.0, -float("inf")
        for tag, ts in self.arrivals:
            if (tag, ts) not in seen:
                count += ts < newest.get(tag, -float("inf"))
                behind = max(behind, top - ts)
                seen.add((tag, ts))
            newest[tag] = max(newest.get(tag, ts), ts)
            top = max(top, ts)
        return count, behind


KILLS = 8  # the broker does not reorder after every restart: several make it likely


def test_broker_kills_during_a_fast_feed_lose_no_alarm_event(tmp_path: Path, bundles):
    """Issue 17, defect 2: Mosquitto (persistence on) SIGKILLed and restarted 8 times while a
    publisher feeds a labelled fault run at 200 msg/s, i.e. a replay at 200x real time (5
    tags every 5 s). After each restart the inputs reach the daemon out of order, within a
    topic too (redelivered and queued messages interleave): measured, up to ~650 s of data
    time behind the newest. With the lateness such a replay needs (docs/edge_daemon.md,
    "Event time": 200x the reorder of seconds at real time) every alarm event of the
    in-order reference run is delivered, duplicates only by id, and every forecast/score.
    The broker does not reorder after every restart (in about half of the runs here), so it
    is restarted 8 times; on the code before issue 17 a reordering run lost 9 of 15 alarm
    events and 492 of 766 results (2 058 samples late)."""
    rate = 200.0
    # saved on every change: a SIGKILL loses no input the broker acknowledged (that loss
    # would be the broker's, docs/edge_daemon.md "Limits", and change the expected events)
    broker = RestartableBroker(tmp_path, extra="autosave_on_changes true")
    broker.start()
    config = edge_config(tmp_path, broker.port, bundles,
                         # margins for a loaded 2-core machine: one run there saw 785 s of
                         # data time of reorder and 12 samples past a 1 500 s lateness
                         event_time={"allowed_lateness_s": 4000.0, "reconnect_hold_s": 20.0})
    items = samples(labelled_run(400))
    expected, expected_inf = reference_events(config, tmp_path, items)
    assert len(expected) >= 4  # the labelled run raises and clears
    collector = Collector(broker.port, [f"{UNS}/alarm/#", f"{UNS}/inference/#"])
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    log = ArrivalLog(daemon.pipelines["tank_anomaly"])
    daemon.start()
    feed = feed_client(broker.port)
    try:
        assert daemon.subscribed.wait(10)

        def produce():  # paho queues what is published while the broker is down
            t0 = time.monotonic()
            for k, (tag, payload) in enumerate(items):
                time.sleep(max(0.0, t0 + k / rate - time.monotonic()))
                feed.publish(RAW.format(tag=tag), payload, qos=1)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        for _ in range(KILLS):
            time.sleep(len(items) / rate / (KILLS + 2))
            broker.stop(signal.SIGKILL)
            time.sleep(1.5)
            broker.start()
        producer.join()
        want = {e["event_id"] for e in expected}
        got = lambda: {e["event_id"] for e in alarm_events(collector)}  # noqa: E731
        if not wait_for(lambda: want <= got(), 60):
            print("missing:", sorted(want - got()))
        wait_for(lambda: daemon.outbox.depth == 0, 30)
        reordered, behind = log.reordered()
        late = daemon.metrics.value("procedge_messages_rejected_total", reason="late")
        received = alarm_events(collector)
        dups = len(received) - len({e["event_id"] for e in received})
        inference = result_keys(collector.json("/inference/"))
        print(f"\nbroker SIGKILLs: {broker.starts - 1}; inputs {len(log.arrivals)} arrived for "
              f"{len(items)} sent, {reordered} behind a newer one of their tag, up to "
              f"{behind:.0f} s of data time behind the newest; late {late:.0f}; alarm events "
              f"{len(want & got())}/{len(want)} ({dups} duplicate(s)); inference "
              f"{len(inference)}/{len(expected_inf)}")
        check_same_events(received, expected, drift_rel=LATE_DRIFT_REL)
        assert inference == result_keys(expected_inf)  # every window too
        assert daemon.metrics.value("procedge_mqtt_connects_total") >= KILLS + 1
    finally:
        feed.loop_stop()
        daemon.stop(drain_timeout_s=2)
        collector.close()
        broker.cleanup()
