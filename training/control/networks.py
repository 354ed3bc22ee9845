"""The networks of task ``control``: what the agents train and what ships to the edge.

Two registered families, each ``build(obs_dim, n_out, **kw) -> keras.Model`` with input
``(obs_dim,)`` and output ``(n_out,)``:

- ``dqn``: the Q-value of each of ``n_out`` discrete action levels (the edge takes the argmax);
- ``ppo``: the deterministic action, the Gaussian policy's mean squashed by tanh into [-1, 1].

Both start with a frozen *observation normaliser* ``obs_norm``: a non-trainable Dense layer
whose kernel is ``diag(1/σ)`` and bias ``-μ/σ``. It is the identity until an agent that learns
running observation statistics writes them in (:func:`set_normaliser`), so the exported model
takes the raw observation and carries its normalisation as constants. Only Dense, relu, tanh,
concatenate: every op is a LiteRT builtin. The Dueling aggregation ``Q = V + A − mean(A)`` is
itself linear, so it is one more frozen Dense on ``[V, A]`` rather than a custom layer (which
the converter's child process could not load).

:func:`value_network` is PPO's critic (not exported).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from training.registry import register

NORM_LAYER = "obs_norm"


def _normaliser(obs_dim: int) -> layers.Dense:
    return layers.Dense(obs_dim, name=NORM_LAYER, trainable=False,
                        kernel_initializer="identity", bias_initializer="zeros")


def set_normaliser(model: keras.Model, mean: np.ndarray, std: np.ndarray) -> None:
    """Freeze ``(obs − mean) / std`` into ``model``'s ``obs_norm`` layer as constants."""
    std = np.maximum(np.asarray(std, np.float64), 1e-8)
    kernel = np.diag(1.0 / std).astype(np.float32)
    bias = (-np.asarray(mean, np.float64) / std).astype(np.float32)
    model.get_layer(NORM_LAYER).set_weights([kernel, bias])


def _trunk(x, hidden: tuple[int, ...], activation: str, seed: int | None):
    for i, units in enumerate(hidden):
        init = keras.initializers.GlorotUniform(seed=None if seed is None else seed + i)
        x = layers.Dense(units, activation=activation, kernel_initializer=init,
                         name=f"hidden{i}")(x)
    return x


def _dueling_matrix(n_out: int) -> np.ndarray:
    """``[V, A] @ M = V + A − mean(A)``: row 0 broadcasts V, the rest centre A."""
    return np.vstack([np.ones((1, n_out)),
                      np.eye(n_out) - np.full((n_out, n_out), 1.0 / n_out)]).astype(np.float32)


@register("control", "dqn", small={"hidden": [8]})
def dqn(obs_dim: int, n_out: int, hidden: tuple[int, ...] = (256, 256), dueling: bool = False,
        seed: int | None = None) -> keras.Model:
    """MLP Q-network over discrete action levels (optionally Dueling: V and A streams)."""
    inputs = keras.Input((obs_dim,), name="observation")
    x = _trunk(_normaliser(obs_dim)(inputs), tuple(hidden), "relu", seed)
    out_init = keras.initializers.GlorotUniform(seed=None if seed is None else seed + 100)
    if not dueling:
        q = layers.Dense(n_out, kernel_initializer=out_init, name="q")(x)
        return keras.Model(inputs, q, name="dqn")
    value = layers.Dense(1, kernel_initializer=out_init, name="value")(x)
    adv_init = keras.initializers.GlorotUniform(seed=None if seed is None else seed + 101)
    advantage = layers.Dense(n_out, kernel_initializer=adv_init, name="advantage")(x)
    both = layers.Concatenate(name="value_advantage")([value, advantage])
    matrix = _dueling_matrix(n_out)
    q = layers.Dense(n_out, use_bias=False, trainable=False, name="q",
                     kernel_initializer=keras.initializers.Constant(matrix))(both)
    return keras.Model(inputs, q, name="dueling_dqn")


@register("control", "ppo", small={"hidden": [8]})
def ppo(obs_dim: int, n_out: int, hidden: tuple[int, ...] = (64, 64),
        seed: int | None = None, hold_obs: int | None = None,
        max_step: float = 0.2) -> keras.Model:
    """MLP policy: the Gaussian mean, tanh-squashed into the action range [-1, 1].

    With ``hold_obs`` (one action; the observation column that holds the applied action in
    action units, e.g. the jacketed reactor's ``Tj_sp``) the tanh output is a *step* instead:
    action = observation[hold_obs] + max_step · tanh(…), so the policy moves the set-point by
    less than ``max_step`` per period by construction and sitting still is its easiest output
    (a rate limit it cannot violate, no chatter from overshooting targets). The sum is one more
    frozen Dense on ``[observation, step]``: the exported model still takes the raw
    observation and gives the absolute action, so the gateway needs no change."""
    inputs = keras.Input((obs_dim,), name="observation")
    x = _trunk(_normaliser(obs_dim)(inputs), tuple(hidden), "tanh", seed)
    # A small last layer starts the policy near a = 0 with little preference (PPO practice).
    init = keras.initializers.Orthogonal(gain=0.01, seed=None if seed is None else seed + 100)
    name = "action" if hold_obs is None else "step"
    out = layers.Dense(n_out, activation="tanh", kernel_initializer=init, name=name)(x)
    if hold_obs is None:
        return keras.Model(inputs, out, name="ppo_policy")
    if n_out != 1 or not 0 <= hold_obs < obs_dim or not max_step > 0:
        raise ValueError(f"hold_obs {hold_obs} needs one action, a column < {obs_dim} and "
                         f"max_step > 0 (got {n_out} actions, max_step {max_step})")
    kernel = np.zeros((obs_dim + 1, 1), np.float32)
    kernel[hold_obs, 0], kernel[obs_dim, 0] = 1.0, max_step
    action = layers.Dense(1, use_bias=False, trainable=False, name="action",
                          kernel_initializer=keras.initializers.Constant(kernel))(
        layers.Concatenate(name="hold_step")([inputs, out]))
    return keras.Model(inputs, action, name="ppo_step_policy")


def value_network(obs_dim: int, hidden: tuple[int, ...] = (64, 64),
                  seed: int | None = None) -> keras.Model:
    """PPO's critic: the state value, on the same frozen normaliser as the policy."""
    inputs = keras.Input((obs_dim,), name="observation")
    x = _trunk(_normaliser(obs_dim)(inputs), tuple(hidden), "tanh",
               None if seed is None else seed + 1000)
    init = keras.initializers.Orthogonal(gain=1.0, seed=None if seed is None else seed + 1100)
    value = layers.Dense(1, kernel_initializer=init, name="value")(x)
    return keras.Model(inputs, value, name="ppo_value")
