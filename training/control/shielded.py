"""The safety shield in training: a Gymnasium wrapper that passes every action of an agent
through the same :class:`edge_runtime.shield.Shield` the gateway runs, built from the same
settings the bundle carries — so the agent learns on the plant as the shield will let it act.

The wrapped environment is continuous (``Box(-1, 1, (1,))``); with ``levels > 0`` the wrapper
offers ``Discrete(levels)`` (levels evenly over [-1, 1], as the bundle's ``levels``) and the
shielded set-point goes to the plant as a continuous action, which a discrete wrapper below it
could not carry. ``info["shield"]`` is each step's verdict; :attr:`interventions` counts them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from edge_runtime.bundle import (
    ActionSpecModel,
    ControlSpec,
    ObservationTagSpec,
    PidSpec,
    ShieldSpec,
)
from edge_runtime.tasks.control import build_shield


def control_spec(env: gym.Env, shield: ShieldSpec, pid: PidSpec, levels: int = 0) -> ControlSpec:
    """The bundle's control section for ``env``: its observation tags, action spec and period
    (the environment's own, so the gateway rebuilds the observation exactly), the shield and
    PID settings, and the discrete levels (DQN)."""
    u = env.unwrapped
    a = u.action_spec
    return ControlSpec(
        observation=[ObservationTagSpec(name=t.name, unit=t.unit, center=float(t.center),
                                        scale=float(t.scale)) for t in u.observation_tags],
        action=ActionSpecModel(name=a.name, unit=a.unit, low=float(a.low), high=float(a.high),
                               max_rate=None if a.max_rate is None else float(a.max_rate)),
        levels=discrete_levels(levels), shield=shield, pid=pid, period_s=float(u.period_s))


def discrete_levels(levels: int) -> list[float]:
    return [float(v) for v in np.linspace(-1.0, 1.0, levels)] if levels else []


class ShieldedEnv(gym.Wrapper):
    """Every action through the shield; a fresh shield (and PID) each episode."""

    def __init__(self, env: gym.Env, spec: ControlSpec):
        super().__init__(env)
        self.control = spec
        self.levels = spec.levels
        if self.levels:
            self.action_space = gym.spaces.Discrete(len(self.levels))
        self.guard_tag = spec.shield.guard.tag
        self.shield = build_shield(spec)
        self.interventions: Counter[str] = Counter()

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        # the first rate limit starts from the plant's set-point when the reset tells it
        self.shield = build_shield(self.control)
        if "setpoint" in info:
            self.shield.last = float(info["setpoint"])
        return obs, info

    def step(self, action):
        a = (self.levels[int(np.asarray(action).ravel()[0])] if self.levels
             else float(np.clip(np.asarray(action, dtype=np.float64).ravel()[0], -1.0, 1.0)))
        proposed = self.control.action.to_setpoint(a)
        measured = float(self.env.unwrapped.measured_tags()[self.guard_tag])
        decision = self.shield.step(proposed, measured)
        if decision.verdict != "pass":
            self.interventions[decision.verdict] += 1
        applied = np.array([self.control.action.to_action(decision.setpoint)], dtype=np.float32)
        obs, reward, terminated, truncated, info = self.env.step(np.clip(applied, -1.0, 1.0))
        info = dict(info) | {"shield": decision.verdict, "raw_action": a,
                             "shielded_setpoint": decision.setpoint}
        return obs, reward, terminated, truncated, info


def shield_wrap(spec: ControlSpec) -> Callable[[gym.Env], gym.Env]:
    """``evaluation.reactor.evaluate(wrap=shield_wrap(manifest.control))``: every
    controller's continuous action (a policy's levels are already actions) behind the
    bundle's shield, its verdicts in ``info["shield"]``."""
    continuous = spec.model_copy(update={"levels": []})
    return lambda env: ShieldedEnv(env, continuous)
