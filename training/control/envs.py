"""The batch reactors as Gymnasium environments (the models are in :mod:`.plant`).

Both environments share one shape, so every agent, the shield and the gateway treat them alike:

* action ``Box(-1, 1, (1,), float32)``, mapped to engineering units by :attr:`action_spec`
  (``T`` in K for the kinetics benchmark, the jacket inlet set-point ``Tj_sp`` in K for the
  jacketed reactor, where it is also rate-limited per control step);
* observation: ``(measured − center) / scale`` of the tags in :attr:`observation_tags`, in
  that order, float32 — exactly what a gateway rebuilds from the MQTT values of
  :meth:`measured_tags` (noise and dead time included); batch time is itself a tag;
* ``steps`` control periods per batch (20 by default: 3 min each over t_f = 1 h); the episode
  terminates at the end of the batch.

**Rewards** (per step; units of x2, mol/L per mol/L of nominal charge):

* kinetics: the increase of x2 over the step, so the episode's return *is* the yield x2(t_f);
* jacketed: the increase of x2, minus ``energy_weight`` per kWh of jacket utility energy
  (default ``ENERGY_WEIGHT``), minus ``move_weight`` per K that the applied jacket set-point
  moved this step (default 0: off), minus ``VIOLATION_PENALTY`` for each step whose true
  peak reactor temperature exceeds ``plant.T_LIMIT`` and ``EXCESS_PENALTY`` per K of that
  excess. The two weights are constructor arguments (a training config sets them through
  ``control.overrides``) because they are design choices of a policy's training, not of the
  plant: the evaluation scores yield, energy and violations themselves, never the reward.

**Seeds.** ``reset(seed=s)`` draws the episode's disturbances (jacketed: ±10 % on both
pre-exponential factors, UA fouling, initial x1) and its sensor noise from ``s``. Training uses
seeds below :data:`EVAL_SEED_BASE` (1 000 000); the evaluation uses ``EVAL_SEED_BASE + i``
(:func:`eval_seeds`), which training never sees (:func:`check_training_seed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from training.control import plant

EVAL_SEED_BASE = 1_000_000
STEPS = 20  # control periods per batch (default)
ENERGY_WEIGHT = 2e-4  # reward per kWh of jacket utility energy (≈ 0.009 for a 44-kWh batch)
VIOLATION_PENALTY = 0.05  # reward per control step with the true peak T above plant.T_LIMIT
EXCESS_PENALTY = 0.01  # reward per K of that step's peak above plant.T_LIMIT
MOVE_WEIGHT = 0.0  # reward per K of jacket set-point move per step (default: no penalty)
OBS_BOUND = 100.0  # |observation| bound of the space (tags stay within a few units)


def eval_seeds(n: int) -> list[int]:
    """The held-apart evaluation seeds: EVAL_SEED_BASE + 0 … n − 1."""
    return [EVAL_SEED_BASE + i for i in range(n)]


def check_training_seed(seed: int) -> int:
    """A training seed must stay below EVAL_SEED_BASE (the evaluation's seeds)."""
    if not 0 <= seed < EVAL_SEED_BASE:
        raise ValueError(f"training seed {seed} is outside [0, {EVAL_SEED_BASE}): seeds from "
                         f"{EVAL_SEED_BASE} on are the held-apart evaluation episodes")
    return seed


@dataclass(frozen=True)
class ActionSpec:
    """The manipulated variable in engineering units; ``max_rate`` per control step or None."""

    name: str
    unit: str
    low: float
    high: float
    max_rate: float | None = None

    def to_setpoint(self, a: float) -> float:
        return self.low + (float(a) + 1.0) / 2.0 * (self.high - self.low)

    def to_action(self, setpoint: float) -> float:
        return 2.0 * (float(setpoint) - self.low) / (self.high - self.low) - 1.0


@dataclass(frozen=True)
class ObservationTag:
    """One measured tag of the observation: ``(value − center) / scale``."""

    name: str
    unit: str
    center: float
    scale: float


def _tags(*rows: tuple[str, str, float, float]) -> tuple[ObservationTag, ...]:
    return tuple(ObservationTag(*r) for r in rows)


class _BatchEnv(gym.Env):
    """What both reactors share: spaces, the clock, seeds, observation from measured tags."""

    metadata = {"render_modes": []}
    action_spec: ActionSpec
    observation_tags: tuple[ObservationTag, ...]
    kind: str

    def __init__(self, steps: int = STEPS, substeps: int = plant.SUBSTEPS,
                 disturbances: bool = False, noise: bool = False):
        if steps < 1 or substeps < 1:
            raise ValueError("steps and substeps must be >= 1")
        self.steps, self.substeps = int(steps), int(substeps)
        self.disturbances, self.noise = bool(disturbances), bool(noise)
        self.dt_h = plant.T_FINAL_H / self.steps
        self.period_s = self.dt_h * 3600.0
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        n = len(self.observation_tags)
        self.observation_space = gym.spaces.Box(-OBS_BOUND, OBS_BOUND, (n,), np.float32)
        self.params = plant.NOMINAL
        self.k = 0
        self._measured: dict[str, float] = {}

    # --- the Gymnasium API ---
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.params = (plant.Disturbance.draw(self.np_random) if self.disturbances
                       else plant.NOMINAL)
        self._noise_rng = np.random.default_rng(int(self.np_random.integers(2**63)))
        self.k = 0
        self.state = plant.initial_state(self.kind, self.params)[0]
        self.energy = 0.0
        self._start()
        self.peak_T = self.true_T
        self._measure()
        return self._obs(), self._info(violation=False)

    def step(self, action):
        a = float(np.clip(np.asarray(action, np.float64).ravel()[0], -1.0, 1.0))
        commanded = self.action_spec.to_setpoint(a)
        seg, reward = self._advance(commanded)
        self.k += 1
        peak = float(seg.T_nodes.max())  # kinetics: T before the first action never acts
        self.peak_T = peak if self.k == 1 else max(self.peak_T, peak)
        violation = bool(self.kind == "jacketed" and seg.T_nodes.max() > plant.T_LIMIT)
        self._measure()
        done = self.k >= self.steps
        info = self._info(violation=violation) | {"commanded": commanded}
        if done:
            info["yield"] = float(self.state[1])
        return self._obs(), float(reward), done, False, info

    # --- what a plant publishes ---
    def measured_tags(self) -> dict[str, float]:
        """The tags a plant would publish now (noise and dead time included), by name."""
        return dict(self._measured)

    @property
    def batch_time_h(self) -> float:
        return self.k * self.dt_h

    def _obs(self) -> np.ndarray:
        m = self._measured
        return np.array([(m[t.name] - t.center) / t.scale for t in self.observation_tags],
                        np.float32)

    def _info(self, violation: bool) -> dict:
        return {"T": self.true_T, "setpoint": self.setpoint, "x1": float(self.state[0]),
                "x2": float(self.state[1]), "energy": self.energy, "violation": violation,
                "peak_T": self.peak_T, "batch_time": self.batch_time_h,
                "measured": self.measured_tags(), "params": self.params.as_dict()}

    def _analyzer(self, value: float) -> float:
        return value + (float(self._noise_rng.normal(0.0, plant.ANALYZER_NOISE))
                        if self.noise else 0.0)

    # subclasses: _start, _advance, _measure, true_T, setpoint


class KineticsEnv(_BatchEnv):
    """The published benchmark: the action is the reactor temperature itself (298–398 K),
    applied at once; nominal parameters unless ``disturbances=True``; exact measurements
    unless ``noise=True`` (then the x1/x2 analyzer has ``plant.ANALYZER_NOISE``)."""

    kind = "kinetics"
    action_spec = ActionSpec("T", "K", plant.T_MIN, plant.T_MAX, None)
    observation_tags = _tags(("batch_time", "h", 0.5, 0.5), ("x1", "mol/L", 0.5, 0.5),
                             ("x2", "mol/L", 0.3, 0.3), ("T", "K", 348.0, 50.0))

    def _start(self) -> None:
        self.setpoint = self.action_spec.to_setpoint(0.0)  # held before the first action

    @property
    def true_T(self) -> float:
        return float(self.setpoint)

    def _advance(self, commanded: float):
        self.setpoint = commanded
        before = float(self.state[1])
        seg = plant.rk4_segment(plant.kinetics_rhs, self.state[None], np.array([commanded]),
                                self.params, self.dt_h, self.substeps)
        self.state = seg.state[0]
        return seg, float(self.state[1]) - before

    def _measure(self) -> None:
        self._measured = {"batch_time": self.batch_time_h,
                          "x1": self._analyzer(float(self.state[0])),
                          "x2": self._analyzer(float(self.state[1])), "T": self.true_T}


class JacketedReactorEnv(_BatchEnv):
    """The kinetics with energy balances (:func:`plant.jacketed_rhs`): the action is the
    jacket inlet set-point (290–420 K, at most ``plant.SETPOINT_MAX_RATE`` K per step), the
    reactor must stay at or below ``plant.T_LIMIT``; per-episode disturbances and sensor noise
    and dead time on by default."""

    kind = "jacketed"
    action_spec = ActionSpec("Tj_sp", "K", plant.SETPOINT_LOW, plant.SETPOINT_HIGH,
                             plant.SETPOINT_MAX_RATE)
    observation_tags = _tags(("batch_time", "h", 0.5, 0.5), ("x1", "mol/L", 0.5, 0.5),
                             ("x2", "mol/L", 0.3, 0.3), ("T", "K", 340.0, 10.0),
                             ("Tj", "K", 330.0, 20.0), ("Tj_sp", "K", 355.0, 65.0))

    def __init__(self, steps: int = STEPS, substeps: int = plant.SUBSTEPS,
                 disturbances: bool = True, noise: bool = True,
                 energy_weight: float = ENERGY_WEIGHT, move_weight: float = MOVE_WEIGHT):
        super().__init__(steps, substeps, disturbances, noise)
        self.energy_weight = _cost("energy_weight", energy_weight)
        self.move_weight = _cost("move_weight", move_weight)

    def _start(self) -> None:
        self.setpoint = plant.T0_JACKETED  # the jacket holds the preheat temperature
        self._t_hist = [0.0]
        self._T_hist = [self.true_T]

    @property
    def true_T(self) -> float:
        return float(self.state[2])

    def _advance(self, commanded: float):
        rate, before_sp = self.action_spec.max_rate, self.setpoint
        self.setpoint = float(np.clip(commanded, before_sp - rate, before_sp + rate))
        before_x2, before_e = float(self.state[1]), float(self.state[4])
        t0 = self.batch_time_h
        seg = plant.rk4_segment(plant.jacketed_rhs, self.state[None], np.array([self.setpoint]),
                                self.params, self.dt_h, self.substeps, t_index=2)
        self.state = seg.state[0]
        self.energy = float(self.state[4])
        nodes = seg.T_nodes[0]
        self._t_hist += list(t0 + self.dt_h * np.arange(1, len(nodes)) / (len(nodes) - 1))
        self._T_hist += [float(v) for v in nodes[1:]]
        excess = max(float(nodes.max()) - plant.T_LIMIT, 0.0)
        penalty = (VIOLATION_PENALTY + EXCESS_PENALTY * excess) if excess > 0 else 0.0
        reward = (float(self.state[1]) - before_x2
                  - self.energy_weight * (self.energy - before_e)
                  - self.move_weight * abs(self.setpoint - before_sp) - penalty)
        return seg, reward

    def _thermometer(self, value: float) -> float:
        return value + (float(self._noise_rng.normal(0.0, plant.SENSOR_NOISE_K))
                        if self.noise else 0.0)

    def _measure(self) -> None:
        delayed = float(np.interp(self.batch_time_h - plant.SENSOR_DEAD_TIME_H,
                                  self._t_hist, self._T_hist))
        self._measured = {"batch_time": self.batch_time_h,
                          "x1": self._analyzer(float(self.state[0])),
                          "x2": self._analyzer(float(self.state[1])),
                          "T": self._thermometer(delayed),
                          "Tj": self._thermometer(float(self.state[3])),
                          "Tj_sp": self.setpoint}


def _cost(name: str, value) -> float:
    """A reward weight from a config: a number >= 0 (YAML reads ``1e-5`` as a string)."""
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not weight >= 0:
        raise ValueError(f"{name} {value!r} must be >= 0 (a cost)")
    return weight


class DiscreteActions(gym.ActionWrapper):
    """``Discrete(n)``: level i is the continuous action −1 + 2·i/(n − 1) (DQN)."""

    def __init__(self, env: gym.Env, n: int):
        if n < 2:
            raise ValueError(f"discrete levels must be >= 2, got {n}")
        super().__init__(env)
        self.levels = np.linspace(-1.0, 1.0, n).astype(np.float32)
        self.action_space = gym.spaces.Discrete(n)

    def action(self, action) -> np.ndarray:
        return np.array([self.levels[int(action)]], np.float32)


ENVS: dict[str, type[_BatchEnv]] = {"kinetics": KineticsEnv, "jacketed": JacketedReactorEnv}


def make_env(name: str, seed: int | None = None, discrete: int = 0, **overrides) -> gym.Env:
    """A reactor environment; ``overrides``: ``steps``, ``substeps``, ``disturbances``,
    ``noise``. With ``seed`` the first reset happens here (later resets continue its stream
    unless given their own seed)."""
    if name not in ENVS:
        raise ValueError(f"unknown reactor environment {name!r}; one of {sorted(ENVS)}")
    env: gym.Env = ENVS[name](**overrides)
    if discrete:
        env = DiscreteActions(env, discrete)
    if seed is not None:
        env.reset(seed=seed)
    return env
