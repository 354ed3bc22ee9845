"""The safety shield's pure logic (edge_runtime/shield.py) with a fake PID: clamp, rate limit,
the temperature guard's hysteresis and bumpless hand-over, the watchdog, the counts."""

from __future__ import annotations

import math

import pytest

from edge_runtime.shield import Shield, ShieldSettings


class FakePID:
    """Records resets; its output moves 1 unit per update towards the set-point."""

    def __init__(self):
        self.resets: list[tuple] = []
        self.out = 0.0

    def reset(self, output, setpoint=None, measurement=None):
        self.resets.append((output, setpoint, measurement))
        self.out = output

    def update(self, setpoint, measurement):
        self.out += -1.0 if measurement > setpoint else 1.0
        return self.out


def settings(**over) -> ShieldSettings:
    base = dict(low=300.0, high=390.0, max_rate=5.0, guard_trip=380.0, guard_reset=370.0,
                stale_periods=2, on_stale="hold", pid_setpoint=350.0)
    return ShieldSettings(**(base | over))


def test_pass_clamp_and_rate_limit():
    shield = Shield(settings(), FakePID(), initial=340.0)
    d = shield.step(343.0, 340.0)
    assert (d.setpoint, d.verdict, d.source) == (343.0, "pass", "agent")
    d = shield.step(360.0, 340.0)  # +17 from 343: limited to +5
    assert (d.setpoint, d.verdict) == (348.0, "rate_limited")
    shield = Shield(settings(max_rate=None), FakePID())
    assert shield.step(500.0, 340.0).setpoint == 390.0
    assert shield.step(100.0, 340.0).verdict == "clamped"
    assert shield.interventions == {"clamped": 2}


def test_guard_trips_above_trip_hands_over_bumplessly_and_resets_below_reset():
    pid = FakePID()
    shield = Shield(settings(), pid, initial=360.0)
    assert shield.step(365.0, 379.0).verdict == "pass"  # below trip: the policy
    d = shield.step(390.0, 381.0)  # above trip
    assert d.verdict == "guard" and d.source == "pid" and d.guard_active
    assert pid.resets == [(365.0, 350.0, 381.0)]  # loaded with the applied set-point
    assert d.setpoint == 364.0  # the PID moves from 365, not a jump to the policy's 390
    d = shield.step(390.0, 375.0)  # between reset and trip: still the fallback (hysteresis)
    assert d.verdict == "guard" and d.setpoint == 363.0 and len(pid.resets) == 1
    d = shield.step(390.0, 369.0)  # below reset: the policy again, rate-limited from 363
    assert (d.verdict, d.source, d.guard_active, d.setpoint) == (
        "rate_limited", "agent", False, 368.0)
    assert shield.interventions == {"guard": 2, "rate_limited": 1}


def test_guard_is_a_low_select_never_hotter_than_the_policy_asks():
    """Tripped, the fallback's output and the policy's set-point meet in a low select: a
    policy that already cools harder than the PID keeps its own (lower) set-point."""
    pid = FakePID()
    shield = Shield(settings(max_rate=None), pid, initial=360.0)
    d = shield.step(340.0, 381.0)  # tripped; the PID would give 359, the policy asks 340
    assert (d.verdict, d.source, d.setpoint) == ("guard", "pid", 340.0)
    d = shield.step(375.0, 379.0)  # the policy asks hotter again: the PID's output wins
    assert (d.verdict, d.setpoint) == ("guard", pid.out) and pid.out < 375.0


def test_watchdog_holds_then_alarms_after_n_periods_and_recovers():
    shield = Shield(settings(), FakePID(), initial=350.0)
    shield.step(352.0, 340.0)
    for k in (1, 2):  # tolerated: held, not yet alarmed
        d = shield.step(None, 340.0)
        assert (d.setpoint, d.verdict, d.source, d.watchdog_active, d.stale_periods) == (
            352.0, "watchdog", "hold", False, k)
    d = shield.step(math.nan, math.nan)  # third in a row: more than 2 → alarm
    assert d.watchdog_active and d.setpoint == 352.0
    d = shield.step(354.0, 340.0)  # valid again: alarm condition clears
    assert not d.watchdog_active and d.verdict == "pass" and d.stale_periods == 0
    assert shield.interventions["watchdog"] == 3


def test_watchdog_pid_fallback_when_the_guard_tag_is_still_valid():
    pid = FakePID()
    shield = Shield(settings(on_stale="pid", stale_periods=1), pid, initial=350.0)
    assert shield.step(None, 345.0).source == "hold"
    d = shield.step(None, 345.0)
    assert d.watchdog_active and d.source == "pid" and d.verdict == "watchdog"
    assert d.setpoint == 351.0 and pid.resets == [(350.0, 350.0, 345.0)]
    assert shield.step(None, math.nan).source == "hold"  # no measurement: hold


def test_write_failure_restores_the_rate_limit_base_and_counts():
    shield = Shield(settings(), FakePID(), initial=350.0)
    shield.step(355.0, 340.0)
    shield.write_failed(350.0)
    assert shield.step(365.0, 340.0).setpoint == 355.0  # from 350, not from 355
    assert shield.interventions["write_failed"] == 1


@pytest.mark.parametrize("over, field", [({"low": 400.0}, "low"),
                                         ({"guard_reset": 385.0}, "reset"),
                                         ({"max_rate": 0.0}, "max_rate"),
                                         ({"stale_periods": 0}, "stale_periods")])
def test_inconsistent_settings_are_refused(over, field):
    with pytest.raises(ValueError, match=field):
        settings(**over)
