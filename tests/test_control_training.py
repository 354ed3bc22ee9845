"""The workstation half of task control without an agent: the shield in training (the
Gymnasium wrapper) on a fake plant with the environments' interface, the bundle section it
derives, and the parity metric on actions (PPO) and argmax levels (DQN)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from edge_runtime.bundle import PidSpec, RunRecord, ShieldSpec
from training.control.shielded import ShieldedEnv, control_spec
from training.tasks.control import check_step_head, parity

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Action:
    name: str = "T_sp"
    unit: str = "K"
    low: float = 300.0
    high: float = 400.0
    max_rate: float | None = 10.0


@dataclass(frozen=True)
class Tag:
    name: str
    unit: str
    center: float
    scale: float


class FakePlant(gym.Env):
    """Temperature follows the set-point at once; records the actions it was given."""

    period_s = 60.0
    action_spec = Action()
    observation_tags = (Tag("T", "K", 350.0, 50.0),)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)

    def reset(self, seed=None, options=None):
        self.T, self.applied = 350.0, []
        return np.zeros(1, np.float32), {}

    def measured_tags(self):
        return {"T": self.T}

    def step(self, action):
        self.applied.append(float(action[0]))
        self.T = 300.0 + (float(action[0]) + 1) / 2 * 100.0
        return np.array([(self.T - 350.0) / 50.0], np.float32), 0.0, False, False, {"T": self.T}


SHIELD = ShieldSpec.model_validate({"low": 310.0, "high": 390.0, "guard": {
    "tag": "T", "trip": 385.0, "reset": 375.0}})
PID = PidSpec(kp=1.0, ti_s=600.0, setpoint=360.0)


def test_every_training_action_goes_through_the_shield():
    env = ShieldedEnv(FakePlant(), control_spec(FakePlant(), SHIELD, PID))
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([0.0], np.float32))  # 350 K: within every limit
    assert info["shield"] == "pass" and info["shielded_setpoint"] == 350.0
    _, _, _, _, info = env.step(np.array([1.0], np.float32))  # asks 400 K from 350: +10 max
    assert info["shield"] == "rate_limited" and info["shielded_setpoint"] == 360.0
    for _ in range(3):
        env.step(np.array([1.0], np.float32))
    assert abs(env.unwrapped.T - 390.0) < 1e-4  # clamped at shield.high, rate-limited before
    _, _, _, _, info = env.step(np.array([1.0], np.float32))  # measured 390 > trip 385
    assert info["shield"] == "guard" and info["shielded_setpoint"] <= 390.0
    assert env.interventions["rate_limited"] >= 3 and env.interventions["guard"] == 1
    assert all(-1.0 <= a <= 1.0 for a in env.unwrapped.applied)


def test_a_step_policy_must_hold_the_action_in_action_units_within_the_rate_limit():
    spec = control_spec(FakePlant(), SHIELD, PID)  # tag T: center 350, scale 50 = the action's
    check_step_head(0, 0.2, spec)  # 0.2 · 50 K = the 10 K rate limit
    with pytest.raises(ValueError, match="max_step 0.3 is 15 K per period"):
        check_step_head(0, 0.3, spec)
    with pytest.raises(ValueError, match="hold_obs 1: the observation has 1 tags"):
        check_step_head(1, 0.1, spec)
    other = spec.model_copy(update={"observation": [
        spec.observation[0].model_copy(update={"center": 340.0})]})
    with pytest.raises(ValueError, match="is not the action 'T_sp' in action units"):
        check_step_head(0, 0.1, other)


def test_discrete_levels_map_to_set_points_and_the_section_is_a_valid_bundle_section():
    spec = control_spec(FakePlant(), SHIELD, PID, levels=5)
    assert spec.levels == [-1.0, -0.5, 0.0, 0.5, 1.0] and spec.period_s == 60.0
    assert spec.max_rate == 10.0 and spec.observation[0].center == 350.0
    env = ShieldedEnv(FakePlant(), spec)
    assert env.action_space == gym.spaces.Discrete(5)
    env.reset(seed=0)
    _, _, _, _, info = env.step(2)  # level 0.0 → 350 K
    assert info["raw_action"] == 0.0 and info["shielded_setpoint"] == 350.0


def record(levels: list[float]) -> RunRecord:
    spec = control_spec(FakePlant(), SHIELD, PID, levels=len(levels))
    return RunRecord(name="r", task="control", family="dqn" if levels else "ppo",
                     input=spec.input_spec(), scaler=spec.scaler_spec(), control=spec,
                     training_data_sha256="0" * 64)


def test_parity_is_the_action_error_as_a_fraction_of_the_range():
    ref = np.array([[0.0], [0.5], [-0.5], [1.0]], np.float32)
    got = ref + np.array([[0.02], [0.0], [0.0], [0.02]], np.float32)  # 1.2 clipped to 1
    keras_m, edge_m, reasons = parity([ref], [got], {}, record([]), 0.01)
    assert edge_m["action_error"] == pytest.approx(0.02 / 4 / 2, abs=1e-7) and not reasons
    _, edge_m, reasons = parity([ref], [ref + 0.05], {}, record([]), 0.01)
    assert reasons and "budget" in reasons[0]


def test_dqn_parity_compares_the_levels_the_argmax_picks():
    levels = [-1.0, -0.5, 0.0, 0.5, 1.0]
    q = np.eye(5, dtype=np.float32)[[0, 1, 2, 3, 4, 4, 4, 4, 4, 4]]
    flipped = q.copy()
    flipped[9] = np.eye(5)[3]  # one of ten picks the neighbouring level
    _, edge_m, reasons = parity([q], [flipped], {}, record(levels), 0.01)
    assert edge_m["level_agreement"] == 0.9
    assert edge_m["action_error"] == pytest.approx(0.5 / 10 / 2)  # 2.5 % of the range
    assert reasons


def test_shield_wrap_puts_any_controller_behind_a_bundles_shield():
    from training.control.shielded import shield_wrap

    env = shield_wrap(control_spec(FakePlant(), SHIELD, PID, levels=5))(FakePlant())
    assert env.action_space == FakePlant.action_space  # continuous, even for a DQN bundle
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([-1.0], np.float32))  # 300 K < shield.low 310
    assert info["shield"] == "clamped" and info["shielded_setpoint"] == 310.0


def test_an_agents_and_a_generators_summary_count_steps_not_epochs():
    from edge_runtime.bundle import TrainingInfo

    info = TrainingInfo(epochs=1, epochs_budget=1, device="CPU", seconds_per_epoch=73.94,
                        env_steps=60000)
    assert info.summary("reactor") == "reactor: 60000 environment steps (budget done), " \
                                      "73.9 s on CPU"
    assert "epochs" in TrainingInfo(epochs=3, epochs_budget=5).summary("fit")
    assert TrainingInfo(epochs=1, epochs_budget=1, device="CPU", seconds_per_epoch=6.67,
                        optimizer_steps=2000).summary("tank_cvae") == \
        "tank_cvae: 2000 training steps (budget done), 6.7 s on CPU"


def test_bad_environment_overrides_are_refused_before_tensorflow():
    code = """
import sys, yaml
from training.config import ConfigError, TrainConfig, check_train_config
raw = yaml.safe_load(open("configs/reactor_jacketed_ppo.yaml"))
check_train_config(TrainConfig.model_validate(raw), "ppo.yaml")  # the shipped one passes
for bad, why in (({"energy_wieght": 1e-4}, "unexpected keyword argument 'energy_wieght'"),
                 ({"energy_weight": "lots"}, "energy_weight must be a number")):
    raw["control"]["overrides"] = bad
    try:
        check_train_config(TrainConfig.model_validate(raw), "ppo.yaml")
    except ConfigError as exc:
        assert "ppo.yaml" in str(exc) and "control.overrides" in str(exc), exc
        assert why in str(exc), exc
    else:
        raise AssertionError(f"{bad} passed")
assert "tensorflow" not in sys.modules and "keras" not in sys.modules
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
