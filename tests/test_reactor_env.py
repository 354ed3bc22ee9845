"""The batch-reactor environments (training/control/envs.py, plant.py) and `procedge eval
reactor`: the Gymnasium checker, the observation contract the gateway relies on, rewards,
integration accuracy, rate limit, dead time, seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from training.control import envs, plant


def run(env, actions, seed=0):
    obs, info = env.reset(seed=seed)
    out = [(obs, 0.0, info)]
    for a in actions:
        obs, r, terminated, truncated, info = env.step(np.array([a], np.float32))
        out.append((obs, r, info))
        if terminated or truncated:
            break
    return out


@pytest.mark.parametrize("name", sorted(envs.ENVS))
def test_gymnasium_checker_passes(name):
    check_env(envs.make_env(name), skip_render_check=True)


@pytest.mark.parametrize("name", sorted(envs.ENVS))
def test_observation_is_the_measured_tags_scaled(name):
    env = envs.make_env(name).unwrapped
    obs = run(env, [0.3] * 5, seed=4)[-1][0]
    m = env.measured_tags()
    expect = [(m[t.name] - t.center) / t.scale for t in env.observation_tags]
    np.testing.assert_array_equal(obs, np.array(expect, np.float32))
    assert [t.name for t in env.observation_tags][0] == "batch_time"
    assert "T" in m and env.period_s == pytest.approx(180.0)


def test_kinetics_return_is_the_yield_and_the_action_is_T():
    env = envs.make_env("kinetics")
    steps = run(env, [-1.0 + 2 * 37.3406 / 100] * 20)
    spec = env.unwrapped.action_spec
    assert steps[1][2]["T"] == pytest.approx(spec.to_setpoint(-1.0 + 2 * 37.3406 / 100))
    assert spec.to_action(spec.to_setpoint(0.37)) == pytest.approx(0.37)
    total = sum(r for _, r, _ in steps)
    assert len(steps) == 21 and total == pytest.approx(steps[-1][2]["yield"], abs=1e-12)
    assert steps[-1][2]["yield"] == pytest.approx(0.6059, abs=2e-4)  # the best constant T


@pytest.mark.parametrize("kind", ["kinetics", "jacketed"])
def test_rk4_is_converged(kind):
    """Halving the RK4 step moves x2(t_f) by < 1e-5 (a disturbed episode, a rough profile)."""
    d = plant.Disturbance(a1=1.1, a2=0.9, ua=0.7, x10=1.05)
    rng = np.random.default_rng(0)
    low, high = (plant.T_MIN, plant.T_MAX) if kind == "kinetics" else (300.0, 360.0)
    u = rng.uniform(low, high, (1, 20))
    coarse = plant.simulate(kind, u, d, substeps=plant.SUBSTEPS).yield_[0]
    fine = plant.simulate(kind, u, d, substeps=2 * plant.SUBSTEPS).yield_[0]
    assert abs(coarse - fine) < 1e-5


def test_jacketed_rate_limit_dead_time_and_reward_terms():
    env = envs.make_env("jacketed", noise=False)
    u = env.unwrapped
    steps = run(env, [-1.0] + [-0.5] * 19, seed=11)  # 345 K → 290 K asked: 330 K given
    sps = [info["setpoint"] for _, _, info in steps]
    assert sps[0] == plant.T0_JACKETED
    assert np.abs(np.diff(sps)).max() == pytest.approx(plant.SETPOINT_MAX_RATE)
    # the thermometer shows the reactor as it was one dead time ago
    t = u._t_hist
    delayed = np.interp(u.batch_time_h - plant.SENSOR_DEAD_TIME_H, t, u._T_hist)
    assert u.measured_tags()["T"] == pytest.approx(delayed)
    assert u.measured_tags()["T"] != pytest.approx(steps[-1][2]["T"], abs=1e-6)
    last = steps[-1][2]
    total = sum(r for _, r, _ in steps)
    penalties = sum(info["violation"] for _, _, info in steps)
    assert penalties == 0
    assert total == pytest.approx(last["yield"] - envs.ENERGY_WEIGHT * last["energy"], abs=1e-9)
    assert last["energy"] > 0


def test_jacketed_reward_weights_are_settings_and_the_move_is_charged():
    """energy_weight per kWh and move_weight per K of applied set-point move, from
    make_env's overrides; the return is the yield minus both (no violation here)."""
    env = envs.make_env("jacketed", noise=False, energy_weight=1e-3, move_weight=1e-4)
    steps = run(env, [-1.0, -0.5, -0.3] + [-0.4] * 17, seed=11)
    moved = np.abs(np.diff([info["setpoint"] for _, _, info in steps])).sum()
    last = steps[-1][2]
    assert moved > 20 and not any(info["violation"] for _, _, info in steps)
    total = sum(r for _, r, _ in steps)
    assert total == pytest.approx(last["yield"] - 1e-3 * last["energy"] - 1e-4 * moved,
                                  abs=1e-9)
    with pytest.raises(ValueError, match="move_weight"):
        envs.make_env("jacketed", move_weight=-1.0)
    with pytest.raises(ValueError, match="energy_weight must be a number"):
        envs.make_env("jacketed", energy_weight="lots")
    assert envs.make_env("jacketed", move_weight="1e-05").unwrapped.move_weight == 1e-5


def test_violation_is_flagged_and_penalised():
    env = envs.make_env("jacketed", noise=False)
    steps = run(env, [1.0] * 20, seed=3)  # full heating: far past the limit
    flags = [info["violation"] for _, _, info in steps[1:]]
    assert any(flags) and steps[-1][2]["peak_T"] > plant.T_LIMIT
    hot = next(i for i, f in enumerate(flags, 1) if f)
    now, before = steps[hot][2], steps[hot - 1][2]
    excess = now["peak_T"] - plant.T_LIMIT  # the first violating step holds the peak so far
    expect = (now["x2"] - before["x2"] - envs.ENERGY_WEIGHT * (now["energy"] - before["energy"])
              - envs.VIOLATION_PENALTY - envs.EXCESS_PENALTY * excess)
    assert steps[hot][1] == pytest.approx(expect, abs=1e-12)


def test_seeds_set_the_disturbances_and_eval_seeds_are_apart():
    a, b = envs.make_env("jacketed"), envs.make_env("jacketed")
    oa, ia = a.reset(seed=5)
    ob, ib = b.reset(seed=5)
    np.testing.assert_array_equal(oa, ob)
    assert ia["params"] == ib["params"]
    _, ic = b.reset(seed=6)
    assert ic["params"] != ia["params"]
    p = ia["params"]
    assert 0.9 <= p["a1"] <= 1.1 and 0.7 <= p["ua"] <= 1.0 and 0.95 <= p["x10"] <= 1.05
    assert envs.make_env("kinetics", seed=5).unwrapped.params == plant.NOMINAL
    assert envs.eval_seeds(3) == [1_000_000, 1_000_001, 1_000_002]
    with pytest.raises(ValueError):
        envs.check_training_seed(envs.EVAL_SEED_BASE)
    assert envs.check_training_seed(999_999) == 999_999


def test_discrete_wrapper_levels():
    env = envs.make_env("kinetics", discrete=5)
    assert env.action_space.n == 5
    env.reset(seed=0)
    _, _, _, _, info = env.step(4)
    assert info["setpoint"] == pytest.approx(plant.T_MAX)
    _, _, _, _, info = env.step(2)
    assert info["setpoint"] == pytest.approx((plant.T_MIN + plant.T_MAX) / 2)
    with pytest.raises(ValueError):
        envs.make_env("stirred")


def test_eval_reactor_kinetics_table_and_json(tmp_path, capsys):
    from evaluation import reactor
    from evaluation.results import check
    from procedge.cli import EVALS

    assert EVALS["reactor"] == "evaluation.reactor"
    out = tmp_path / "r.json"
    reactor.main(["--env", "kinetics", "--episodes", "3", "--controller", "pid,openloop",
                  "--out", str(tmp_path), "--json", str(out)])
    printed = capsys.readouterr().out
    assert "shield" in printed and "openloop" in printed
    doc = check(json.loads(out.read_text()))
    rows = {r.model: r.model_dump() for r in doc.results}
    assert rows["openloop"]["regret_mean"] == pytest.approx(0.0, abs=1e-9)
    assert rows["pid"]["regret_mean"] > 0.004  # a constant T leaves ≈ 0.45 points
    assert rows["pid"]["shield_interventions"] == 0
    assert (tmp_path / "kinetics_temperature.png").stat().st_size > 1000
    with pytest.raises(ValueError):
        reactor.main(["--env", "kinetics", "--controller", "dqn", "--no-plots"])


def test_evaluate_counts_the_verdicts_of_a_wrapping_shield():
    import gymnasium as gym

    from evaluation import reactor
    from training.control import baselines

    class Clamp(gym.Wrapper):  # a stand-in shield: caps the temperature at 340 K
        def step(self, action):
            spec = self.env.unwrapped.action_spec
            capped = min(float(action[0]), spec.to_action(340.0))
            obs, r, term, trunc, info = self.env.step(np.array([capped], np.float32))
            return obs, r, term, trunc, info | {
                "shield": "clamped" if capped < float(action[0]) else "pass"}

    env = envs.make_env("kinetics")
    ctl = baselines.make_controller("openloop", env)
    hot = int((ctl.controls > 340.0 + 1e-4).sum())  # the optimum's early, hot steps
    assert 1 <= hot < 10
    doc = reactor.evaluate("kinetics", [ctl], 2, wrap=Clamp)
    row = doc["results"][1]
    assert row["shield_interventions"] == 2 * hot
    assert row["max_T_max"] == pytest.approx(340.0)
