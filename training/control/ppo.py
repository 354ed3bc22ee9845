"""Proximal Policy Optimization (PPO) with a Gaussian policy on a continuous action, in Keras 3.

The policy gradient moves the policy towards actions that did better than expected. PPO makes
it stable with three ideas, each a few lines below:

1. *Rollouts*: ``n_envs`` environments (``gymnasium.vector.SyncVectorEnv``) run the current
   policy for ``n_steps`` each. The action is sampled from ``N(μ(s), σ²)`` with ``μ`` the tanh-
   squashed network output (:func:`training.control.networks.ppo`) and a state-independent,
   learned ``log σ``; the environment gets it clipped to [-1, 1].
2. *Advantages by GAE(λ)*: ``A_t = Σ (γλ)^k δ_{t+k}``, ``δ_t = r_t + γ V(s_{t+1}) − V(s_t)``
   from a separate value network (the critic); a time-limit truncation bootstraps with
   ``γ V(s_final)``, a termination does not.
3. *Clipped surrogate*: for ``epochs`` passes over minibatches, maximise
   ``min(ρ A, clip(ρ, 1 − ε, 1 + ε) A)`` with ``ρ = π_new(a|s) / π_old(a|s)``: the update gains
   nothing by moving the policy far from the one that collected the data. Plus a value loss
   and an entropy bonus (exploration).

Observations are normalised by running statistics; they are frozen into the networks'
``obs_norm`` layer at the start of each rollout (so a rollout and its update see one
normalisation) and the exported :meth:`PPOAgent.policy_model` carries the last ones as
constants. Rewards are optionally divided by the running std of the discounted return.

All sampling noise comes from one seeded numpy generator, the initial weights from seeded
initializers, the environments from ``seed + i``: the same seed gives the same returns.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf
from pydantic import Field

from edge_runtime.contract import Strict
from training.control import networks
from training.control.rl_common import RunningStats, Scalars, Stopwatch, TrainLog
from training.progress import progress as progress_bar

LOG_2PI = math.log(2 * math.pi)


class PPOConfig(Strict):
    """PPO hyper-parameters. Defaults: Pendulum-v1 (RL Zoo's values, but γ = 0.98: with 0.9
    a few test episodes never swung up, ``procedge eval rl-classic``)."""

    lr: float = Field(1e-3, gt=0, description="Adam learning rate (start of the schedule).")
    anneal_lr: bool = Field(True, description="Decay the learning rate linearly to 0.")
    gamma: float = Field(0.98, gt=0, le=1, description="Discount factor.")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE λ.")
    n_envs: int = Field(4, ge=1, description="Environments stepped side by side.")
    n_steps: int = Field(1024, ge=1, description="Steps per environment per rollout.")
    epochs: int = Field(10, ge=1, description="Passes over each rollout.")
    batch_size: int = Field(64, ge=1, description="Minibatch size.")
    clip: float = Field(0.2, gt=0, description="Surrogate clip ε.")
    ent_coef: float = Field(0.0, ge=0, description="Entropy bonus weight.")
    vf_coef: float = Field(0.5, ge=0, description="Value loss weight.")
    max_grad_norm: float = Field(0.5, gt=0, description="Global gradient-norm clip.")
    log_std_init: float = Field(-0.5, description="Initial log σ of the Gaussian policy.")
    hidden: list[int] = Field([64, 64], description="Hidden widths (tanh), policy and value.")
    normalize_obs: bool = Field(True, description="Running observation normalisation.")
    scale_rewards: bool = Field(True,
                                description="Divide rewards by the running return std.")
    hold_obs: int | None = Field(None, ge=0, description="Observation column holding the "
                                 "applied action in action units: the policy outputs a step "
                                 "from it (networks.ppo); None: the action itself.")
    max_step: float = Field(0.2, gt=0, le=2, description="With hold_obs: the largest step "
                            "per period, action units.")


# Hyper-parameters that reached the goals on the batch reactor (``python -m
# evaluation.rl_reactor``), over the Pendulum defaults; the edge training config may copy them.
_REACTOR = dict(lr=3e-4, gamma=1.0, gae_lambda=0.95, n_envs=4, n_steps=256, epochs=10,
                batch_size=64, log_std_init=-1.0, hidden=[64, 64])
REACTOR_DEFAULTS: dict[str, dict] = {"kinetics": _REACTOR, "jacketed": _REACTOR}


class PPOAgent:
    """A PPO agent on a Box(-1, 1, (act_dim,)) action; :meth:`policy_model` is what ships."""

    def __init__(self, obs_dim: int, act_dim: int, config: PPOConfig | None = None,
                 seed: int = 0):
        self.config = config = config or PPOConfig()
        self.obs_dim, self.act_dim, self.seed = obs_dim, act_dim, seed
        self.rng = np.random.default_rng(seed)
        self.actor = networks.ppo(obs_dim, act_dim, hidden=tuple(config.hidden), seed=seed,
                                  **self._head())
        self.critic = networks.value_network(obs_dim, tuple(config.hidden), seed=seed)
        self.log_std = keras.Variable(np.full(act_dim, config.log_std_init, np.float32),
                                      name="log_std")
        self.variables = [*self.actor.trainable_variables, *self.critic.trainable_variables,
                          self.log_std]
        self.optimizer = keras.optimizers.Adam(config.lr, global_clipnorm=config.max_grad_norm)
        self.optimizer.build(self.variables)
        self.obs_stats = RunningStats((obs_dim,))
        spec = tf.TensorSpec((None, obs_dim), tf.float32)
        self._forward = tf.function(
            lambda x: (self.actor(x, training=False), self.critic(x, training=False)[:, 0]),
            input_signature=[spec])

    # ---- acting -------------------------------------------------------------------------
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """The mean action (or, not ``deterministic``, a sample clipped to [-1, 1])."""
        mean = np.asarray(self._forward(np.asarray(obs, np.float32).reshape(1, -1))[0])[0]
        if deterministic:
            return mean
        noise = self.rng.normal(size=self.act_dim) * np.exp(self.log_std.numpy())
        return np.clip(mean + noise, -1.0, 1.0).astype(np.float32)

    def policy_model(self) -> keras.Model:
        """A copy of the policy (the registered ``ppo`` family) with its observation
        normalisation frozen in: raw observation in, mean action in [-1, 1] out."""
        model = networks.ppo(self.obs_dim, self.act_dim, hidden=tuple(self.config.hidden),
                             **self._head())
        model.set_weights(self.actor.get_weights())
        return model

    def _head(self) -> dict:
        c = self.config
        return {} if c.hold_obs is None else {"hold_obs": c.hold_obs, "max_step": c.max_step}

    def _freeze_normaliser(self) -> None:
        if self.config.normalize_obs:
            for model in (self.actor, self.critic):
                networks.set_normaliser(model, self.obs_stats.mean, self.obs_stats.std)

    # ---- learning -----------------------------------------------------------------------
    def _log_prob(self, mean, action):
        z = (action - mean) / tf.exp(self.log_std)
        return tf.reduce_sum(-0.5 * z ** 2 - self.log_std - 0.5 * LOG_2PI, axis=1)

    @tf.function
    def _update_step(self, obs, action, old_log_prob, advantage, returns):
        c = self.config
        advantage = (advantage - tf.reduce_mean(advantage)) / (tf.math.reduce_std(advantage)
                                                               + 1e-8)
        with tf.GradientTape() as tape:
            mean = self.actor(obs, training=True)
            value = self.critic(obs, training=True)[:, 0]
            ratio = tf.exp(self._log_prob(mean, action) - old_log_prob)
            surrogate = tf.minimum(ratio * advantage,
                                   tf.clip_by_value(ratio, 1 - c.clip, 1 + c.clip) * advantage)
            policy_loss = -tf.reduce_mean(surrogate)
            value_loss = tf.reduce_mean((returns - value) ** 2)
            entropy = tf.reduce_sum(self.log_std + 0.5 * (LOG_2PI + 1.0))
            loss = policy_loss + c.vf_coef * value_loss - c.ent_coef * entropy
        self.optimizer.apply_gradients(zip(tape.gradient(loss, self.variables),
                                           self.variables, strict=True))
        return loss, policy_loss, value_loss, entropy

    def fit(self, env, total_steps: int, log_dir: Path | None = None, progress: bool = True,
            evaluate: Callable[[keras.Model], float] | None = None,
            eval_every: int = 0) -> TrainLog:
        """Train for about ``total_steps`` environment steps (whole rollouts of
        ``n_envs · n_steps``). ``env``: a gymnasium Env (copied ``n_envs`` times) or a
        function returning one. With ``evaluate`` (exported policy → score, on seeds apart from
        the final test's), the policy is scored every ``eval_every`` steps (at the end of a
        rollout) and the best weights are kept at the end."""
        c, log, scalars, clock = self.config, TrainLog(), Scalars(log_dir), Stopwatch()
        envs = _vector_env(env, c.n_envs)
        obs, _ = envs.reset(seed=[self.seed + i for i in range(c.n_envs)])
        self.obs_stats.update(obs)
        ret_stats, running_return = RunningStats(), np.zeros(c.n_envs)
        episode_return = np.zeros(c.n_envs)
        rollout = c.n_envs * c.n_steps
        n_rollouts = max(1, math.ceil(total_steps / rollout))
        step, next_eval, best_weights = 0, eval_every, None
        iterations = range(n_rollouts)
        for it in (_bar(iterations, "ppo") if progress else iterations):
            if c.anneal_lr:
                self.optimizer.learning_rate.assign(c.lr * (1.0 - it / n_rollouts))
            self._freeze_normaliser()
            batch = {k: [] for k in ("obs", "action", "log_prob", "value", "reward", "done")}
            for _ in range(c.n_steps):
                mean, value = (np.asarray(t) for t in self._forward(obs.astype(np.float32)))
                std = np.exp(self.log_std.numpy())
                action = (mean + std * self.rng.normal(size=mean.shape)).astype(np.float32)
                log_prob = np.sum(-0.5 * ((action - mean) / std) ** 2 - np.log(std)
                                  - 0.5 * LOG_2PI, axis=1)
                next_obs, reward, terminated, truncated, info = envs.step(
                    np.clip(action, -1.0, 1.0))
                step += c.n_envs
                done = terminated | truncated
                episode_return += reward
                reward = np.asarray(reward, np.float64)
                if c.scale_rewards:
                    running_return = running_return * c.gamma + reward
                    ret_stats.update(running_return)
                    reward = reward / ret_stats.std
                    running_return[done] = 0.0
                # A time limit is not the end of the task: bootstrap from the final state.
                cut = truncated & ~terminated
                if cut.any():
                    final = np.stack([info["final_obs"][i] for i in np.flatnonzero(cut)])
                    reward[cut] += c.gamma * np.asarray(
                        self._forward(final.astype(np.float32))[1])
                for i in np.flatnonzero(done):
                    log.episode_returns.append(float(episode_return[i]))
                    log.episode_end_steps.append(step)
                    scalars(step, episode_return=float(episode_return[i]))
                    episode_return[i] = 0.0
                for k, v in zip(batch, (obs, action, log_prob, value, reward, done),
                                strict=True):
                    batch[k].append(v)
                obs = next_obs
                self.obs_stats.update(obs)
            last_value = np.asarray(self._forward(obs.astype(np.float32))[1])
            data = {k: np.asarray(v) for k, v in batch.items()}
            advantage = gae(data["reward"], data["value"], data["done"], last_value, c.gamma,
                            c.gae_lambda)
            losses = self._update(data, advantage)
            log.losses.append((step, losses[0]))
            scalars(step, loss=losses[0], policy_loss=losses[1], value_loss=losses[2],
                    entropy=losses[3], std=float(np.exp(self.log_std.numpy()).mean()))
            if evaluate is not None and eval_every and step >= next_eval:
                next_eval += eval_every
                score = float(evaluate(self.policy_model()))
                log.evaluations.append((step, score))
                scalars(step, evaluation=score)
                if log.best is None or score >= log.best[1]:
                    log.best = (step, score)
                    best_weights = self.actor.get_weights()
        envs.close()
        if best_weights is not None:
            self.actor.set_weights(best_weights)
        log.steps, log.wall_s = step, clock()
        scalars.close()
        return log

    def _update(self, data: dict, advantage: np.ndarray) -> tuple[float, ...]:
        c = self.config
        flat = lambda a: a.reshape(-1, *a.shape[2:])  # noqa: E731 (steps, envs, …) → rows
        returns = flat(advantage + data["value"]).astype(np.float32)
        tensors = (flat(data["obs"]).astype(np.float32), flat(data["action"]),
                   flat(data["log_prob"]).astype(np.float32),
                   flat(advantage).astype(np.float32), returns)
        n, out = len(returns), []
        for _ in range(c.epochs):
            order = self.rng.permutation(n)
            for start in range(0, n - c.batch_size + 1, c.batch_size):
                idx = order[start:start + c.batch_size]
                out.append([float(v) for v in self._update_step(*(t[idx] for t in tensors))])
        return tuple(np.mean(out, axis=0))


def gae(reward: np.ndarray, value: np.ndarray, done: np.ndarray, last_value: np.ndarray,
        gamma: float, lam: float) -> np.ndarray:
    """Generalised advantage estimates, arrays (steps, envs); ``done[t]`` ends the episode
    after step t (its bootstrap, if truncated, is already in ``reward[t]``)."""
    advantage = np.zeros_like(reward, dtype=np.float64)
    running = np.zeros(reward.shape[1])
    for t in reversed(range(len(reward))):
        next_value = last_value if t == len(reward) - 1 else value[t + 1]
        alive = 1.0 - done[t]
        delta = reward[t] + gamma * next_value * alive - value[t]
        running = delta + gamma * lam * alive * running
        advantage[t] = running
    return advantage


def _vector_env(env, n: int) -> gym.vector.SyncVectorEnv:
    """``n`` copies side by side; an episode that ends is reset in the same step (its final
    observation in ``info["final_obs"]``)."""
    if callable(env) and not isinstance(env, gym.Env):
        fns = [env] * n
    else:
        copies = [copy.deepcopy(env) for _ in range(n)]
        fns = [lambda e=e: e for e in copies]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def _bar(items, desc: str):
    return progress_bar(items, desc=desc, total=len(items), unit="rollout")
