"""The classical controllers every learned policy is compared with, behind one interface.

A controller has ``name``, ``reset()`` (before each episode) and ``act(obs, info) -> action``
(the environment's normalised action in [-1, 1], shape (1,)); ``obs`` is the observation and
``info`` the environment's info of the previous step (``info["measured"]``: the measured tags,
``info["setpoint"]``: the set-point the plant holds). A trained policy is one more controller:
:class:`PolicyController` wraps any ``obs → action`` function (a Keras model's ``predict``, a
LiteRT interpreter, an agent's ``act``), Q-values or discrete levels included.

Baselines (engineering units from :mod:`.plant`, the set-points from :mod:`.optimal` on the
*nominal* parameters — a controller never sees an episode's true ones):

* ``constant``: the best constant control (kinetics: T; jacketed: the jacket set-point);
* ``openloop``: the nominal optimal control sequence, played blind;
* ``pid``: a PI(D) loop on the measured reactor temperature tracking the best constant
  temperature; ``pid_profile``: the same loop tracking the nominal optimal temperature
  profile. Both track at most ``plant.T_LIMIT − LIMIT_MARGIN_K``. Tuning: SIMC (Skogestad
  2003) on a first-order-plus-dead-time fit of a step test of the jacketed plant, see
  :func:`simc_tuning`.

On the kinetics benchmark the temperature *is* the action, so a temperature loop is the
identity: ``pid`` there is the best constant temperature and ``pid_profile`` the nominal
optimal profile (the same as ``openloop``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edge_runtime.pid import PID
from training.control import optimal, plant
from training.control.envs import ActionSpec

LIMIT_MARGIN_K = 2.0  # K below plant.T_LIMIT: the highest temperature a PID may track
STEP_K = 5.0  # K, jacket set-point step of the tuning test
CONTROLLERS = ("pid", "pid_profile", "openloop", "constant")


class Controller:
    """Base: ``act`` returns the normalised action for the coming control period."""

    name = "controller"

    def reset(self) -> None:
        """Before each episode."""

    def act(self, obs: np.ndarray, info: dict) -> np.ndarray:
        raise NotImplementedError


class OpenLoop(Controller):
    """A fixed sequence of set-points (engineering units), one per control step."""

    def __init__(self, name: str, spec: ActionSpec, controls: np.ndarray):
        self.name, self.spec = name, spec
        self.controls = np.asarray(controls, np.float64)
        self.k = 0

    def reset(self) -> None:
        self.k = 0

    def act(self, obs, info) -> np.ndarray:
        value = self.controls[min(self.k, len(self.controls) - 1)]
        self.k += 1
        return np.array([self.spec.to_action(value)], np.float32)


class PIDTracking(Controller):
    """:class:`edge_runtime.pid.PID` on the measured reactor temperature ``T`` (dead time and
    noise included) tracking ``setpoints`` (K, one per step), started bumplessly from the
    set-point the plant holds."""

    def __init__(self, name: str, spec: ActionSpec, setpoints: np.ndarray, tuning: PidTuning,
                 period_s: float):
        self.name, self.spec = name, spec
        self.setpoints = np.asarray(setpoints, np.float64)
        self.pid = PID(tuning.kp, tuning.ti_s, tuning.td_s, spec.low, spec.high, period_s,
                       max_rate=spec.max_rate)
        self.k = 0

    def reset(self) -> None:
        self.k = 0

    def act(self, obs, info) -> np.ndarray:
        sp = self.setpoints[min(self.k, len(self.setpoints) - 1)]
        measured = float(info["measured"]["T"])
        if self.k == 0:
            self.pid.reset(info["setpoint"], sp, measured)
        self.k += 1
        return np.array([self.spec.to_action(self.pid.update(sp, measured))], np.float32)


class PolicyController(Controller):
    """A learned policy: ``policy(obs)`` gives a continuous action in [-1, 1], or, with
    ``levels``, Q-values (argmax) or a level index, mapped to ``levels[i]``."""

    def __init__(self, name: str, policy: Callable[[np.ndarray], np.ndarray | int],
                 levels: np.ndarray | None = None):
        self.name, self.policy = name, policy
        self.levels = None if levels is None else np.asarray(levels, np.float32)

    def act(self, obs, info) -> np.ndarray:
        out = np.asarray(self.policy(np.asarray(obs, np.float32)))
        if self.levels is not None:
            index = int(out) if out.size == 1 else int(np.argmax(out))
            return np.array([self.levels[index]], np.float32)
        return np.clip(out.reshape(-1)[:1], -1.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class PidTuning:
    """PID settings and the FOPDT model they came from (gain K/K, τ and θ in s)."""

    kp: float
    ti_s: float
    td_s: float
    gain: float
    tau_s: float
    dead_s: float

    def as_dict(self) -> dict[str, float]:
        return dict(vars(self))


def step_test(period_s: float, n: int = 240) -> tuple[np.ndarray, np.ndarray]:
    """The tuning experiment on the nominal jacketed plant with an inert charge (no reaction,
    so it rests at the preheat temperature): the jacket set-point steps by ``STEP_K`` at t = 0;
    returns the time (s) and the *measured* reactor temperature rise (K, the thermometer's
    dead time included, no noise) over ``n`` samples of a tenth of a control period."""
    dt_h = period_s / 3600.0 / 10
    inert = plant.Disturbance(x10=0.0)
    u = np.full((1, n), plant.T0_JACKETED + STEP_K)
    traj = plant.simulate("jacketed", u, inert, t_final_h=n * dt_h, substeps=4)
    t_s = np.arange(n + 1) * dt_h * 3600.0
    rise = traj.states[0, :, 2] - plant.T0_JACKETED
    measured = np.interp(t_s - plant.SENSOR_DEAD_TIME_H * 3600.0, t_s, rise, left=0.0)
    return t_s, measured


def fit_fopdt(t_s: np.ndarray, y: np.ndarray, du: float) -> tuple[float, float, float]:
    """Least-squares fit of y = K·du·(1 − exp(−(t − θ)/τ)) for t > θ: (K, τ_s, θ_s)."""
    from scipy.optimize import curve_fit

    def model(t, k, tau, theta):
        return k * du * (1.0 - np.exp(-np.clip(t - theta, 0.0, None) / tau))

    p0 = (y[-1] / du, t_s[-1] / 5, t_s[1])
    (k, tau, theta), _ = curve_fit(model, t_s, y, p0=p0, bounds=([0, 1e-3, 0], np.inf))
    return float(k), float(tau), float(theta)


@lru_cache(maxsize=4)
def simc_tuning(period_s: float) -> PidTuning:
    """SIMC PI on the FOPDT fit: θ_eff = θ + period/2 (sample and hold), τc = θ_eff,
    Kc = τ / (K·(τc + θ_eff)), τI = min(τ, 4·(τc + θ_eff)); a first-order model gives no
    derivative action (τD = 0)."""
    t_s, y = step_test(period_s)
    k, tau, theta = fit_fopdt(t_s, y, STEP_K)
    theta_eff = theta + period_s / 2.0
    tau_c = theta_eff
    kp = tau / (k * (tau_c + theta_eff))
    ti = min(tau, 4.0 * (tau_c + theta_eff))
    return PidTuning(kp, ti, 0.0, k, tau, theta)


@dataclass(frozen=True)
class References:
    """What the baselines are built from (nominal parameters only)."""

    optimum: optimal.Optimum
    best_constant: float  # the best constant control (K)
    best_constant_T: float  # the best constant reactor temperature (K, the kinetics optimum)


@lru_cache(maxsize=8)
def references(kind: str, steps: int) -> References:
    opt = optimal.solve(kind, steps)
    const, _ = optimal.best_constant(kind, steps)
    const_T, _ = optimal.best_constant("kinetics", steps)
    return References(opt, const, const_T)


def make_controller(name: str, env) -> Controller:
    """One of :data:`CONTROLLERS` for ``env`` (a reactor environment of :mod:`.envs`)."""
    u = env.unwrapped
    spec, kind = u.action_spec, u.kind
    ref = references(kind, u.steps)
    if name == "constant" or (kind == "kinetics" and name == "pid"):
        return OpenLoop(name, spec, np.full(u.steps, ref.best_constant))
    if name == "openloop" or (kind == "kinetics" and name == "pid_profile"):
        return OpenLoop(name, spec, ref.optimum.controls)
    cap = plant.T_LIMIT - LIMIT_MARGIN_K
    if name == "pid":
        setpoints = np.full(u.steps, min(ref.best_constant_T, cap))
    elif name == "pid_profile":
        setpoints = np.minimum(ref.optimum.T[1:], cap)  # the optimum's T at each step's end
    else:
        raise ValueError(f"unknown controller {name!r}; one of {CONTROLLERS}")
    return PIDTracking(name, spec, setpoints, simc_tuning(u.period_s), u.period_s)
