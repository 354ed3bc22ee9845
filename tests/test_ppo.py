"""PPO (training.control.ppo): GAE by hand, seeded runs repeat exactly, a one-step continuous
bandit with a known best action is learned, and the exported policy carries the observation
normalisation as frozen constants with its actions in [-1, 1]."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from training.control.ppo import PPOAgent, PPOConfig, gae  # noqa: E402
from training.control.rl_common import RunningStats  # noqa: E402

TARGET = 0.5
OFFSET, SCALE = np.array([5.0, -100.0]), np.array([2.0, 30.0])


class Bandit(gym.Env):
    """One step; reward −(a − 0.5)². Observations far from N(0, 1) so normalisation matters."""

    observation_space = gym.spaces.Box(-1e3, 1e3, (2,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs(), {}

    def _obs(self):
        return (OFFSET + SCALE * self.np_random.normal(size=2)).astype(np.float32)

    def step(self, action):
        return self._obs(), -float((action[0] - TARGET) ** 2), True, False, {}


def _config(**kw) -> PPOConfig:
    base = dict(lr=3e-3, n_envs=2, n_steps=64, epochs=4, batch_size=32, hidden=[16],
                gamma=0.9, anneal_lr=False)
    return PPOConfig(**{**base, **kw})


def test_gae_matches_a_hand_computation():
    reward = np.array([[1.0], [0.0], [2.0]])
    value = np.array([[0.5], [1.0], [0.2]])
    done = np.array([[False], [True], [False]])
    g, lam, last = 0.9, 0.8, np.array([3.0])
    d2 = 2.0 + g * 3.0 - 0.2
    d1 = 0.0 - 1.0  # episode ends after step 1: no bootstrap, no carry-over
    d0 = 1.0 + g * 1.0 - 0.5
    expected = [[d0 + g * lam * d1], [d1], [d2]]
    np.testing.assert_allclose(gae(reward, value, done, last, g, lam), expected)


def test_running_stats_match_numpy():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(500, 2))
    stats = RunningStats((2,))
    for chunk in np.array_split(x, 7):
        stats.update(chunk)
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(stats.var, x.var(axis=0), rtol=1e-3)


def test_same_seed_same_returns():
    runs = []
    for _ in range(2):
        agent = PPOAgent(2, 1, _config(), seed=3)
        log = agent.fit(Bandit(), 256, progress=False)
        runs.append((log.episode_returns, agent.log_std.numpy().copy()))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_bandit_is_learned_and_the_export_is_frozen(tmp_path):
    agent = PPOAgent(2, 1, _config(), seed=0)
    log = agent.fit(Bandit(), 3000, log_dir=tmp_path / "tb", progress=False)
    assert np.mean(log.episode_returns[-100:]) > np.mean(log.episode_returns[:100])
    model = agent.policy_model()
    x = (OFFSET + SCALE * np.random.default_rng(1).normal(size=(64, 2))).astype(np.float32)
    action = np.asarray(model(x))
    assert action.shape == (64, 1)
    assert np.all(np.abs(action) <= 1.0)
    assert abs(float(np.mean(action)) - TARGET) < 0.15
    np.testing.assert_allclose(action, np.asarray(agent.actor(x)), rtol=1e-6)
    # The normaliser is frozen in as constants near the observation statistics.
    kernel, bias = model.get_layer("obs_norm").get_weights()
    assert not model.get_layer("obs_norm").trainable
    np.testing.assert_allclose(1.0 / np.diag(kernel), SCALE, rtol=0.2)
    assert np.all(np.abs(-bias / np.diag(kernel) - OFFSET) < 0.2 * SCALE)
    # More training changes the agent, never the model already exported.
    agent.fit(Bandit(), 256, progress=False)
    np.testing.assert_array_equal(np.asarray(model(x)), action)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_a_step_policy_moves_from_the_held_action_by_less_than_max_step():
    """hold_obs: the exported model gives observation[hold_obs] + max_step · tanh(…), the
    raw observation in (the normaliser only feeds the step), and the agent's export is it."""
    agent = PPOAgent(3, 1, _config(hold_obs=1, max_step=0.25), seed=0)
    model = agent.policy_model()
    step = model.get_layer("step")
    kernel, bias = step.get_weights()
    step.set_weights([np.full_like(kernel, 5.0), bias])  # saturate: the bound must hold
    x = np.random.default_rng(2).uniform(-1, 1, (32, 3)).astype(np.float32)
    moved = np.asarray(model(x))[:, 0] - x[:, 1]
    assert np.all(np.abs(moved) <= 0.25 + 1e-6) and np.abs(moved).max() > 0.2
    np.testing.assert_allclose(np.asarray(agent.policy_model()(x)), np.asarray(agent.actor(x)),
                               rtol=1e-6)
    assert np.allclose(np.asarray(agent.actor(x))[:, 0], x[:, 1], atol=0.05)  # starts still
