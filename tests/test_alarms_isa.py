"""ISA-18.2 alarm states (pure logic) and the unchanged detection replay."""

from __future__ import annotations

import numpy as np

from edge_runtime.alarms import (
    ACKED,
    NORMAL,
    RTN_UNACK,
    UNACK,
    Alarm,
    AlarmLogic,
    AlarmPolicy,
    replay,
)
from edge_runtime.bundle import ThresholdSpec

SPEC = ThresholdSpec(raise_at=1.0, clear_at=0.8, on_delay=2, off_delay=2)
REC = {"model": "m", "version": "1", "score": 2.0, "threshold": 1.0,
       "contributions": [{"tag": "a", "share": 1.0}]}


def make(**policy) -> Alarm:
    return Alarm("m.anomaly", "m", AlarmPolicy(**policy))


def test_replay_keeps_on_off_delay_and_deadband():
    scores = np.array([2, 0.5, 2, 2, 0.9, 0.9, 0.7, 0.7, 2])
    active = replay(SPEC, scores)
    # raise needs 2 in a row; 0.9 is inside the deadband (no clear); 2 below 0.8 clear it
    assert active.tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 0]
    assert AlarmLogic(SPEC).priority(4.5) == "urgent"


def test_full_cycle_raise_ack_clear():
    a = make()
    [ev] = a.on_condition("raise", REC | {"priority": "high"}, 100.0, 101.0)
    assert (a.state, ev["event"], ev["priority"], ev["score"]) == (UNACK, "raise", "high", 2.0)
    assert ev["event_id"] == "m.anomaly@100000:raise"
    assert ev["source_ts"] == "1970-01-01T00:01:40.000Z"
    assert ev["contributions"][0]["tag"] == "a"
    ok, _, [ack] = a.command("ack", "op1", 102.0)
    assert ok and a.state == ACKED and ack["by"] == "op1"
    [clear] = a.on_condition("clear", REC, 110.0, 111.0)
    assert a.state == NORMAL and clear["event"] == "clear"


def test_return_unacknowledged_then_ack():
    a = make()
    a.on_condition("raise", REC, 1.0, 1.0)
    a.on_condition("clear", REC, 2.0, 2.0)
    assert a.state == RTN_UNACK
    assert a.command("ack", "op", 3.0)[0] and a.state == NORMAL
    ok, reason, events = a.command("ack", "op", 4.0)
    assert not ok and "nothing to acknowledge" in reason and events == []


def test_shelve_hides_events_and_expires():
    a = make(max_shelve_s=60)
    assert not a.command("shelve", "op", 0.0, duration_s=61)[0]  # beyond the maximum
    ok, _, [ev] = a.command("shelve", "op", 0.0, duration_s=30)
    assert ok and ev["state"] == "shelved"
    assert a.on_condition("raise", REC, 5.0, 5.0) == []  # not annunciated
    assert a.suppressed == 1 and a.condition_active
    assert a.tick(10.0) == []
    [ev] = a.tick(31.0)  # the shelve ran out: the active condition needs an ack again
    assert ev["event"] == "unshelve" and ev["by"] == "shelve-timer" and a.state == UNACK


def test_out_of_service_and_return():
    a = make()
    assert a.command("out_of_service", "op", 0.0)[0]
    assert a.effective_state == "out_of_service"
    assert not a.command("shelve", "op", 1.0)[0]
    assert a.on_condition("raise", REC, 2.0, 2.0) == []
    assert a.command("return_to_service", "op", 3.0)[0] and a.state == UNACK
    assert not a.command("return_to_service", "op", 4.0)[0]
    assert not a.command("explode", "op", 4.0)[0]


def test_chatter_is_announced_once_then_suppressed():
    a = make(chatter_count=3, chatter_window_s=100)
    published = []
    for k in range(6):
        published += a.on_condition("raise", REC, 10.0 * k, 10.0 * k)
        published += a.on_condition("clear", REC, 10.0 * k + 5, 10.0 * k + 5)
    raises = [e for e in published if e["event"] == "raise"]
    assert len(raises) == 3 and raises[-1]["chattering"] is True
    assert a.suppressed > 0
    # quiet for longer than the window: the next raise is a normal one again
    [ev] = a.on_condition("raise", REC, 1000.0, 1000.0)
    assert ev["chattering"] is False


def test_state_survives_snapshot_restore():
    a = make()
    a.on_condition("raise", REC | {"priority": "medium"}, 1.0, 1.0)
    b = Alarm.restore(a.snapshot(), AlarmPolicy())
    assert (b.state, b.condition_active, b.priority) == (UNACK, True, "medium")


def test_out_of_service_is_bounded_and_returns_by_itself():
    """Issue 17 (6): out_of_service had no time limit; now capped at max_out_of_service_s."""
    a = make(max_out_of_service_s=60)
    a.on_condition("raise", REC, 0.0, 0.0)
    ok, reason, [ev] = a.command("out_of_service", "op", 10.0)  # no duration: the maximum
    assert ok and "60" in reason and ev["state"] == "out_of_service"
    assert a.snapshot()["out_of_service_until"] == 70.0
    assert a.tick(69.0) == []
    [back] = a.tick(70.0)  # the time ran out: back in service, the active condition re-alarms
    assert back["event"] == "return_to_service" and back["by"] == "out-of-service-timer"
    assert a.effective_state == UNACK and not a.out_of_service
    ok, reason, _ = a.command("out_of_service", "op", 100.0, duration_s=3600)  # too long
    assert ok and "capped" in reason and a.out_of_service_until == 160.0
    assert not a.command("out_of_service", "op", 100.0, duration_s=0)[0]
    assert not a.command("out_of_service", "op", 100.0, duration_s=-5)[0]


def test_out_of_service_from_an_older_snapshot_gets_a_limit():
    a = make(max_out_of_service_s=60)
    a.command("out_of_service", "op", 0.0)
    saved = a.snapshot()
    del saved["out_of_service_until"]  # persisted by a daemon without the limit
    b = Alarm.restore(saved, AlarmPolicy(max_out_of_service_s=60))
    assert b.tick(1000.0) == [] and b.out_of_service  # the limit starts now ...
    [ev] = b.tick(1060.0)  # ... and ends it
    assert ev["event"] == "return_to_service" and not b.out_of_service
