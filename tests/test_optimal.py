"""The hindsight optimum (training/control/optimal.py): the published kinetics optimum
J* = 0.6108 and its falling temperature, the 20-step value, and a jacketed episode's optimum
within its rate and temperature limits."""

from __future__ import annotations

import numpy as np
import pytest

from training.control import envs, optimal, plant


def test_kinetics_optimum_on_a_fine_grid_matches_the_published_value():
    opt = optimal.solve("kinetics", steps=80, substeps=3)
    assert opt.success, opt.message
    assert abs(opt.yield_ - plant.J_STAR) < 1e-3
    T = opt.controls
    assert T[0] > T[-1] + 20  # hot early, cooler late
    assert np.all(np.diff(T[1:]) <= 1e-6)  # falls over the batch


def test_kinetics_optimum_on_the_default_grid():
    opt = optimal.solve("kinetics", steps=envs.STEPS)
    assert opt.yield_ == pytest.approx(0.61045, abs=5e-5)  # the value docs/control.md reports
    const_T, const_y = optimal.best_constant("kinetics")
    assert const_T == pytest.approx(335.34, abs=0.05) and const_y < opt.yield_ - 0.004
    # the optimum played through the environment gives the same yield
    env = envs.make_env("kinetics")
    env.reset(seed=0)
    for u in opt.controls:
        *_, info = env.step(np.array([env.unwrapped.action_spec.to_action(u)], np.float32))
    assert info["yield"] == pytest.approx(opt.yield_, abs=1e-6)


def test_jacketed_optimum_respects_rate_and_temperature_limits():
    env = envs.make_env("jacketed", noise=False)
    env.reset(seed=envs.EVAL_SEED_BASE)  # an episode whose optimum sits on the limit
    d = env.unwrapped.params
    x0 = plant.T0_JACKETED + 5.0 - 25.0 * (np.arange(20) + 0.5) / 20
    opt = optimal.solve("jacketed", 20, d, x0=x0)
    assert opt.success, opt.message
    assert opt.peak_T.max() <= plant.T_LIMIT + 1e-3
    assert opt.peak_T.max() > plant.T_LIMIT - 0.05  # the limit is active in this episode
    steps = np.diff(np.concatenate([[plant.T0_JACKETED], opt.controls]))
    assert np.abs(steps).max() <= plant.SETPOINT_MAX_RATE + 1e-6
    # nothing open-loop and feasible does better: a constant set-point and a cooler profile
    _, const_y = optimal.best_constant("jacketed", 20, d)
    assert opt.yield_ >= const_y - 1e-6
    # the same controls in the environment give the optimum's yield (no noise: exact)
    for u in opt.controls:
        *_, info = env.step(np.array([env.unwrapped.action_spec.to_action(u)], np.float32))
    assert info["yield"] == pytest.approx(opt.yield_, abs=1e-6)
    assert info["energy"] == pytest.approx(opt.energy_kwh, rel=1e-6)
