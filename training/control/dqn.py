"""Deep Q-learning (DQN) in Keras 3, compact enough to read as a tutorial.

The Bellman view: the optimal action value satisfies ``Q(s, a) = E[r + γ · max_a' Q(s', a')]``.
DQN fits a network to that fixed point from its own experience:

1. act ε-greedily (ε falls linearly from ``eps_start`` to ``eps_end`` over the first
   ``exploration_fraction`` of the steps), store ``(s, a, r, s', terminated)`` in a replay
   buffer (a numpy ring): sampling old transitions at random breaks their correlation;
2. every ``train_freq`` steps, take ``gradient_steps`` minibatches and regress ``Q(s, a)`` on the
   target ``y = r + γ · (1 − terminated) · Q_target(s', a*)`` with the Huber loss (robust to
   the large early errors). A time-limit truncation is *not* terminal: it still bootstraps;
3. the target network is a lagging copy (hard copy, or Polyak averaging with ``tau < 1``) so
   the regression target does not move with every step;
4. *Double DQN* picks ``a*`` with the online network and values it with the target one (less
   over-estimation); *Dueling* splits the network into V(s) and A(s, a) streams
   (:func:`training.control.networks.dqn`).

All randomness (exploration, replay sampling) comes from one seeded numpy generator and the
initial weights from seeded initializers: the same seed gives the same returns.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from pydantic import Field

from edge_runtime.contract import Strict
from training.control import networks
from training.control.rl_common import Scalars, Stopwatch, TrainLog
from training.progress import progress as progress_bar


class DQNConfig(Strict):
    """DQN hyper-parameters. Defaults: CartPole-v1 (RL Zoo's tuned values)."""

    lr: float = Field(2.3e-3, gt=0, description="Adam learning rate.")
    gamma: float = Field(0.99, gt=0, le=1, description="Discount factor.")
    batch_size: int = Field(64, ge=1, description="Transitions per gradient step.")
    buffer_size: int = Field(100_000, ge=1, description="Replay buffer capacity (ring).")
    learning_starts: int = Field(1000, ge=0, description="Random steps before training.")
    train_freq: int = Field(256, ge=1, description="Environment steps between trainings.")
    gradient_steps: int = Field(128, ge=1, description="Minibatches per training.")
    target_update: int = Field(128, ge=1,
                               description="Gradient steps between target-network updates.")
    tau: float = Field(1.0, gt=0, le=1,
                       description="Target update weight: 1 = hard copy, < 1 = Polyak.")
    exploration_fraction: float = Field(0.16, ge=0, le=1,
                                        description="Fraction of the steps over which ε falls.")
    eps_start: float = Field(1.0, ge=0, le=1, description="Initial ε.")
    eps_end: float = Field(0.04, ge=0, le=1, description="Final ε.")
    double: bool = Field(True, description="Double DQN target (online argmax, target value).")
    dueling: bool = Field(False, description="Dueling network (V and A streams).")
    hidden: list[int] = Field([256, 256], description="Hidden layer widths (relu).")
    huber_delta: float = Field(1.0, gt=0, description="Huber loss threshold.")
    max_grad_norm: float = Field(10.0, gt=0, description="Global gradient-norm clip.")


# Hyper-parameters that reached the goals on the batch reactor (``python -m
# evaluation.rl_reactor``), over the CartPole defaults; the edge training config may copy them.
_REACTOR = dict(lr=1e-3, gamma=1.0, batch_size=64, buffer_size=50_000, learning_starts=1000,
                train_freq=1, gradient_steps=1, target_update=1, tau=0.005,
                exploration_fraction=0.3, eps_end=0.02, hidden=[64, 64])
REACTOR_DEFAULTS: dict[str, dict] = {"kinetics": _REACTOR, "jacketed": _REACTOR}


class DQNAgent:
    """A DQN agent on ``n_actions`` discrete actions; :meth:`policy_model` is what ships."""

    def __init__(self, obs_dim: int, n_actions: int, config: DQNConfig | None = None,
                 seed: int = 0):
        self.config = config = config or DQNConfig()
        self.obs_dim, self.n_actions, self.seed = obs_dim, n_actions, seed
        self.rng = np.random.default_rng(seed)
        build = dict(hidden=tuple(config.hidden), dueling=config.dueling)
        self.q = networks.dqn(obs_dim, n_actions, seed=seed, **build)
        self.target = networks.dqn(obs_dim, n_actions, seed=seed, **build)
        self.target.set_weights(self.q.get_weights())
        self.optimizer = keras.optimizers.Adam(config.lr, global_clipnorm=config.max_grad_norm)
        self.optimizer.build(self.q.trainable_variables)
        self._buffer = _Replay(config.buffer_size, obs_dim)
        self._gradient_steps = 0
        spec = tf.TensorSpec((None, obs_dim), tf.float32)
        self._q_values = tf.function(lambda x: self.q(x, training=False),
                                     input_signature=[spec])

    # ---- acting -------------------------------------------------------------------------
    def act(self, obs: np.ndarray, deterministic: bool = True, epsilon: float = 0.0) -> int:
        """The greedy action (or, not ``deterministic``, ε-greedy with ``epsilon``)."""
        if not deterministic and self.rng.random() < epsilon:
            return int(self.rng.integers(self.n_actions))
        q = self._q_values(np.asarray(obs, np.float32).reshape(1, -1))
        return int(np.argmax(q[0]))

    def policy_model(self) -> keras.Model:
        """A copy of the Q-network (the registered ``dqn`` family): Q-values in, argmax at
        the edge."""
        model = networks.dqn(self.obs_dim, self.n_actions, hidden=tuple(self.config.hidden),
                             dueling=self.config.dueling)
        model.set_weights(self.q.get_weights())
        return model

    def epsilon(self, step: int, total_steps: int) -> float:
        c = self.config
        span = max(1, int(c.exploration_fraction * total_steps))
        return c.eps_end + (c.eps_start - c.eps_end) * max(0.0, 1.0 - step / span)

    # ---- learning -----------------------------------------------------------------------
    @tf.function
    def _train_step(self, obs, action, reward, next_obs, terminated):
        c = self.config
        q_next_target = self.target(next_obs, training=False)
        if c.double:
            best = tf.argmax(self.q(next_obs, training=False), axis=1, output_type=tf.int32)
            q_next = tf.gather(q_next_target, best, axis=1, batch_dims=1)
        else:
            q_next = tf.reduce_max(q_next_target, axis=1)
        y = reward + c.gamma * (1.0 - terminated) * q_next
        with tf.GradientTape() as tape:
            q = tf.gather(self.q(obs, training=True), action, axis=1, batch_dims=1)
            err = tf.abs(y - q)
            quad = tf.minimum(err, c.huber_delta)
            loss = tf.reduce_mean(0.5 * quad ** 2 + c.huber_delta * (err - quad))
        variables = self.q.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables,
                                           strict=True))
        return loss

    @tf.function
    def _update_target(self):
        tau = self.config.tau
        for t, s in zip(self.target.weights, self.q.weights, strict=True):
            t.assign(tau * s + (1.0 - tau) * t)

    def _train(self) -> float:
        c, losses = self.config, []
        for _ in range(c.gradient_steps):
            batch = self._buffer.sample(self.rng, c.batch_size)
            losses.append(float(self._train_step(*batch)))
            self._gradient_steps += 1
            if self._gradient_steps % c.target_update == 0:
                self._update_target()
        return float(np.mean(losses))

    def fit(self, env, total_steps: int, log_dir: Path | None = None, progress: bool = True,
            evaluate: Callable[[keras.Model], float] | None = None,
            eval_every: int = 0) -> TrainLog:
        """Train for ``total_steps`` environment steps on ``env`` (a gymnasium Env with a
        Discrete action space). With ``evaluate`` (exported policy → score, on seeds apart
        from the final test's), every ``eval_every`` steps the policy is scored and the best
        weights are kept at the end, as a practitioner keeps the best checkpoint."""
        c, log, scalars, clock = self.config, TrainLog(), Scalars(log_dir), Stopwatch()
        obs, _ = env.reset(seed=self.seed)
        episode_return, best_weights = 0.0, None
        steps = range(total_steps)
        for step in (_bar(steps, "dqn") if progress else steps):
            eps = self.epsilon(step, total_steps)
            action = (int(self.rng.integers(self.n_actions)) if step < c.learning_starts
                      else self.act(obs, deterministic=False, epsilon=eps))
            next_obs, reward, terminated, truncated, _ = env.step(action)
            self._buffer.add(obs, action, reward, next_obs, terminated)
            episode_return += float(reward)
            obs = next_obs
            if terminated or truncated:
                log.episode_returns.append(episode_return)
                log.episode_end_steps.append(step + 1)
                scalars(step + 1, episode_return=episode_return, epsilon=eps)
                episode_return = 0.0
                obs, _ = env.reset()
            if step + 1 >= c.learning_starts and (step + 1) % c.train_freq == 0:
                loss = self._train()
                log.losses.append((step + 1, loss))
                scalars(step + 1, loss=loss)
            if evaluate is not None and eval_every and (step + 1) % eval_every == 0:
                score = float(evaluate(self.policy_model()))
                log.evaluations.append((step + 1, score))
                scalars(step + 1, evaluation=score)
                if log.best is None or score >= log.best[1]:
                    log.best, best_weights = (step + 1, score), self.q.get_weights()
        if best_weights is not None:
            self.q.set_weights(best_weights)
        log.steps, log.wall_s = total_steps, clock()
        scalars.close()
        return log


def _bar(items, desc: str):
    return progress_bar(items, desc=desc, total=len(items), unit="step")


class _Replay:
    """The replay buffer: preallocated numpy arrays written as a ring."""

    def __init__(self, capacity: int, obs_dim: int):
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.action = np.zeros(capacity, np.int32)
        self.reward = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.capacity, self.size, self.pos = capacity, 0, 0

    def add(self, obs, action: int, reward: float, next_obs, terminated: bool) -> None:
        i = self.pos
        self.obs[i], self.action[i], self.reward[i] = obs, action, reward
        self.next_obs[i], self.terminated[i] = next_obs, float(terminated)
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, n: int):
        idx = rng.integers(0, self.size, n)
        return (self.obs[idx], self.action[idx], self.reward[idx], self.next_obs[idx],
                self.terminated[idx])
