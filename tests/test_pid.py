"""The gateway's PID (edge_runtime/pid.py): tracking, anti-windup, no derivative kick, bumpless
transfer, limits. A discrete first-order-plus-dead-time plant stands in for the reactor."""

from __future__ import annotations

import math
from collections import deque

import pytest

from edge_runtime.pid import PID


def fopdt_loop(pid: PID, setpoints: list[float], gain=1.0, tau_s=300.0, dead_steps=2, y0=0.0):
    """Closed loop on y' = (gain·u − y)/tau with ``dead_steps`` periods of input dead time."""
    h, y = pid.period_s, y0
    queue = deque([pid.output] * dead_steps)
    ys, us = [], []
    for sp in setpoints:
        u = pid.update(sp, y)
        queue.append(u)
        u_plant = queue.popleft()
        y += (gain * u_plant - y) * (1 - math.exp(-h / tau_s))
        ys.append(y)
        us.append(u)
    return ys, us


def test_tracks_a_setpoint_without_offset():
    pid = PID(kp=2.0, ti_s=300.0, td_s=0.0, low=-10, high=10, period_s=60.0)
    pid.reset(0.0)
    ys, _ = fopdt_loop(pid, [1.0] * 200)
    assert abs(ys[-1] - 1.0) < 1e-3


def test_proportional_only_leaves_the_textbook_offset():
    pid = PID(kp=1.0, ti_s=math.inf, td_s=0.0, low=-10, high=10, period_s=60.0)
    pid.reset(0.0)
    ys, _ = fopdt_loop(pid, [1.0] * 300)
    assert ys[-1] == pytest.approx(0.5, abs=1e-3)  # kp·K/(1 + kp·K)


def test_output_stays_within_limits_and_rate():
    pid = PID(kp=50.0, ti_s=100.0, td_s=20.0, low=-1, high=2, period_s=60.0, max_rate=0.25)
    pid.reset(0.0)
    _, us = fopdt_loop(pid, [5.0] * 50 + [-5.0] * 50)
    assert min(us) >= -1 and max(us) <= 2
    steps = [abs(b - a) for a, b in zip([0.0, *us], us, strict=False)]
    assert max(steps) <= 0.25 + 1e-12


def test_back_calculation_prevents_windup():
    """An unreachable set-point for a long time, then a reachable one: with anti-windup the
    output leaves the upper limit at once; a naive integral would stay saturated for ages."""
    pid = PID(kp=1.0, ti_s=120.0, td_s=0.0, low=0, high=1, period_s=60.0)
    pid.reset(0.0)
    ys, us = fopdt_loop(pid, [3.0] * 100 + [0.5] * 40, dead_steps=0)
    after = us[100:]
    assert after[2] < 1.0  # off the limit within three periods
    assert abs(ys[-1] - 0.5) < 0.02
    assert pid._integral < 2.0  # bounded near the limit, not ~100 periods of error


def test_derivative_acts_on_measurement_not_setpoint():
    base = dict(kp=2.0, ti_s=math.inf, low=-100, high=100, period_s=10.0)
    with_d, without_d = PID(td_s=50.0, **base), PID(td_s=0.0, **base)
    for pid in (with_d, without_d):
        pid.reset(0.0, setpoint=0.0, measurement=0.0)
        pid.update(0.0, 0.0)
    # a set-point step with the measurement unchanged: identical outputs (no kick)
    assert with_d.update(5.0, 0.0) == pytest.approx(without_d.update(5.0, 0.0))
    # a measurement step: the derivative term opposes it
    assert with_d.update(5.0, 1.0) < without_d.update(5.0, 1.0)


def test_bumpless_reset():
    pid = PID(kp=3.0, ti_s=200.0, td_s=30.0, low=290, high=400, period_s=60.0)
    pid.reset(331.0, setpoint=340.0, measurement=338.0)
    assert pid.update(340.0, 338.0) == pytest.approx(331.0)
    assert pid.output == pytest.approx(331.0)


@pytest.mark.parametrize("kwargs", [dict(low=1, high=1), dict(period_s=0), dict(ti_s=0),
                                    dict(td_s=-1), dict(max_rate=0)])
def test_rejects_bad_settings(kwargs):
    args = dict(kp=1.0, ti_s=10.0, td_s=0.0, low=0.0, high=1.0, period_s=1.0) | kwargs
    with pytest.raises(ValueError):
        PID(**args)
