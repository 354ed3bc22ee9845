"""DQN (training.control.dqn): seeded runs repeat exactly, a one-step bandit whose best action
is known is learned, the exported Q-network is the registered family with the agent's weights,
and the Dueling aggregation is V + A − mean(A)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from training.control.dqn import DQNAgent, DQNConfig, _Replay  # noqa: E402

BEST = 2


class Bandit(gym.Env):
    """One step per episode; action ``BEST`` pays 1, the others 0."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.array([1.0, 0.0], np.float32), {}

    def step(self, action):
        return (np.array([1.0, 0.0], np.float32), float(action == BEST), True, False, {})


def _config(**kw) -> DQNConfig:
    base = dict(lr=5e-3, batch_size=16, buffer_size=500, learning_starts=30, train_freq=1,
                gradient_steps=1, target_update=10, exploration_fraction=0.3, hidden=[16])
    return DQNConfig(**{**base, **kw})


def test_same_seed_same_returns_and_weights():
    logs, weights = [], []
    for _ in range(2):
        agent = DQNAgent(2, 3, _config(), seed=7)
        logs.append(agent.fit(Bandit(), 120, progress=False))
        weights.append(agent.q.get_weights())
    assert logs[0].episode_returns == logs[1].episode_returns
    assert [loss for _, loss in logs[0].losses] == [loss for _, loss in logs[1].losses]
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)
    other = DQNAgent(2, 3, _config(), seed=8).fit(Bandit(), 120, progress=False)
    assert other.episode_returns != logs[0].episode_returns


@pytest.mark.parametrize("variant", [dict(double=True, dueling=True),
                                     dict(double=False, dueling=False, tau=0.1)])
def test_bandit_is_learned_and_loss_falls(variant, tmp_path):
    agent = DQNAgent(2, 3, _config(**variant), seed=0)
    log = agent.fit(Bandit(), 400, log_dir=tmp_path / "tb", progress=False)
    assert agent.act(np.array([1.0, 0.0], np.float32)) == BEST
    q = np.asarray(agent.policy_model()(np.array([[1.0, 0.0]], np.float32)))[0]
    np.testing.assert_allclose(q, [0.0, 0.0, 1.0], atol=0.25)
    losses = [loss for _, loss in log.losses]
    assert np.mean(losses[-50:]) < 0.5 * np.mean(losses[:50])
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert log.plot(tmp_path / "curve.png", "bandit").stat().st_size > 1000


def test_policy_model_is_the_family_with_the_agents_weights():
    agent = DQNAgent(2, 3, _config(dueling=True), seed=1)
    agent.fit(Bandit(), 60, progress=False)
    model = agent.policy_model()
    x = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    q = np.asarray(model(x))
    assert q.shape == (5, 3)
    np.testing.assert_allclose(q, np.asarray(agent.q(x)), rtol=1e-6)
    # Dueling: Q = V + A − mean(A), built from the model's own streams.
    import keras

    streams = keras.Model(model.input, [model.get_layer("value").output,
                                        model.get_layer("advantage").output])
    v, a = (np.asarray(t) for t in streams(x))
    np.testing.assert_allclose(q, v + a - a.mean(axis=1, keepdims=True), rtol=1e-5,
                               atol=1e-6)
    assert not model.get_layer("q").trainable


def test_epsilon_schedule_and_replay_ring():
    agent = DQNAgent(2, 3, _config(eps_start=1.0, eps_end=0.1, exploration_fraction=0.5))
    assert agent.epsilon(0, 100) == 1.0
    assert agent.epsilon(25, 100) == pytest.approx(0.55)
    assert agent.epsilon(80, 100) == pytest.approx(0.1)
    ring = _Replay(3, 1)
    for i in range(5):
        ring.add([i], 0, float(i), [i + 1], False)
    assert ring.size == 3 and sorted(ring.reward) == [2.0, 3.0, 4.0]
