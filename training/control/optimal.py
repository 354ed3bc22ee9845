"""The hindsight optimum every controller is scored against: direct single shooting on the
control grid (piecewise-constant T for the kinetics benchmark, piecewise-constant jacket
set-point for the jacketed reactor), solved with scipy from the episode's *true* parameters.

Gradients are forward finite differences, all perturbations simulated in one vectorised pass
of :func:`training.control.plant.simulate` (one batch of n + 1 trajectories per gradient), so a
20-step solve takes a fraction of a second. The kinetics problem has only bounds (L-BFGS-B);
the jacketed one adds the rate limit of the set-point (linear) and the hard temperature limit
on the peak of every period (SLSQP). The objective is the yield x2(t_f) alone: regret is the
yield a controller leaves on the table; energy is reported beside it, not traded against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from training.control import plant

FD_STEP = 1e-6  # in the scaled control (-1..1)


@dataclass(frozen=True)
class Optimum:
    """The solution: controls (K) per step, the yield, the trajectory's reactor temperatures
    at the control instants and its peak per period, and whether the solver converged."""

    controls: np.ndarray
    yield_: float
    T: np.ndarray
    peak_T: np.ndarray
    energy_kwh: float
    success: bool
    message: str

    def as_dict(self) -> dict:
        return {"controls": self.controls.tolist(), "yield": self.yield_, "T": self.T.tolist(),
                "peak_T": self.peak_T.tolist(), "energy_kwh": self.energy_kwh,
                "success": self.success, "message": self.message}

    @classmethod
    def from_dict(cls, d: dict) -> Optimum:
        return cls(np.asarray(d["controls"]), float(d["yield"]), np.asarray(d["T"]),
                   np.asarray(d["peak_T"]), float(d["energy_kwh"]), bool(d["success"]),
                   str(d["message"]))


def bounds(kind: str) -> tuple[float, float]:
    return ((plant.T_MIN, plant.T_MAX) if kind == "kinetics"
            else (plant.SETPOINT_LOW, plant.SETPOINT_HIGH))


class _Shooting:
    """Objective and peak-temperature constraints with their Jacobians from one batched
    simulation per point, memoised (SLSQP asks for f, g and their Jacobians separately)."""

    def __init__(self, kind: str, steps: int, d: plant.Disturbance, substeps: int):
        self.kind, self.steps, self.d, self.substeps = kind, steps, d, substeps
        self.low, self.high = bounds(kind)
        self._z: np.ndarray | None = None

    def to_controls(self, z: np.ndarray) -> np.ndarray:
        return self.low + (np.asarray(z) + 1.0) / 2.0 * (self.high - self.low)

    def _eval(self, z: np.ndarray) -> None:
        if self._z is not None and np.array_equal(z, self._z):
            return
        zs = np.vstack([z, z + FD_STEP * np.eye(len(z))])
        traj = plant.simulate(self.kind, self.to_controls(zs), self.d, substeps=self.substeps)
        y, peak = traj.yield_, traj.peak_T
        self._z = z.copy()
        self.f, self.df = -y[0], -(y[1:] - y[0]) / FD_STEP
        self.g = plant.T_LIMIT - peak[0]
        self.dg = -(peak[1:] - peak[0]).T / FD_STEP  # (steps, n_vars)

    def fun(self, z):
        self._eval(z)
        return self.f

    def jac(self, z):
        self._eval(z)
        return self.df

    def con(self, z):
        self._eval(z)
        return self.g

    def con_jac(self, z):
        self._eval(z)
        return self.dg


def solve(kind: str, steps: int = 20, d: plant.Disturbance = plant.NOMINAL,
          substeps: int = plant.SUBSTEPS, x0: np.ndarray | None = None,
          maxiter: int = 300) -> Optimum:
    """The optimal open-loop control sequence of one episode (true parameters ``d``)."""
    prob = _Shooting(kind, steps, d, substeps)
    scale = (prob.high - prob.low) / 2.0
    if x0 is None:
        x0 = _initial_guess(kind, steps)
    z0 = np.clip((np.asarray(x0, np.float64) - prob.low) / scale - 1.0, -1.0, 1.0)
    box = [(-1.0, 1.0)] * steps
    if kind == "kinetics":
        res = minimize(prob.fun, z0, jac=prob.jac, method="L-BFGS-B", bounds=box,
                       options={"maxiter": maxiter, "ftol": 1e-13, "gtol": 1e-9})
    else:
        rate = plant.SETPOINT_MAX_RATE / scale
        diff = np.eye(steps) - np.eye(steps, k=-1)  # u_k − u_{k−1}
        first = np.zeros(steps)
        first[0] = (plant.T0_JACKETED - prob.low) / scale - 1.0  # the set-point held at t = 0
        cons = [{"type": "ineq", "fun": lambda z: rate - (diff @ z - first),
                 "jac": lambda z: -diff},
                {"type": "ineq", "fun": lambda z: rate + (diff @ z - first),
                 "jac": lambda z: diff},
                {"type": "ineq", "fun": prob.con, "jac": prob.con_jac}]
        res = minimize(prob.fun, z0, jac=prob.jac, method="SLSQP", bounds=box,
                       constraints=cons, options={"maxiter": maxiter, "ftol": 1e-10})
    u = prob.to_controls(np.clip(res.x, -1.0, 1.0))
    traj = plant.simulate(kind, u[None], d, substeps=substeps)
    temps = traj.states[0, :, 2] if kind == "jacketed" else u
    energy = float(traj.states[0, -1, 4]) if kind == "jacketed" else 0.0
    return Optimum(u, float(traj.yield_[0]), temps, traj.peak_T[0], energy, bool(res.success),
                   str(res.message))


def _initial_guess(kind: str, steps: int) -> np.ndarray:
    """A falling profile (the known shape of the optimum); for the jacket, a set-point that
    starts at the preheat temperature and cools slowly."""
    t = (np.arange(steps) + 0.5) / steps
    if kind == "kinetics":
        return 370.0 - 30.0 * t
    return plant.T0_JACKETED + 5.0 - 25.0 * t


def best_constant(kind: str, steps: int = 20, d: plant.Disturbance = plant.NOMINAL,
                  substeps: int = plant.SUBSTEPS) -> tuple[float, float]:
    """The best constant control (K) and its yield, by a dense scan then a bounded refine
    (kinetics: T itself; jacketed: the jacket set-point, peak T within the limit)."""
    from scipy.optimize import minimize_scalar

    low, high = bounds(kind)

    def batch(values: np.ndarray) -> np.ndarray:
        traj = plant.simulate(kind, np.repeat(values[:, None], steps, axis=1), d,
                              substeps=substeps)
        feasible = traj.peak_T.max(axis=1) <= plant.T_LIMIT if kind == "jacketed" else True
        return np.where(feasible, traj.yield_, -np.inf)

    grid = np.linspace(low, high, 201)
    best = grid[int(np.argmax(batch(grid)))]
    step = grid[1] - grid[0]
    res = minimize_scalar(lambda v: -batch(np.array([v]))[0], method="bounded",
                          bounds=(max(low, best - step), min(high, best + step)),
                          options={"xatol": 1e-6})
    return float(res.x), float(-res.fun)
