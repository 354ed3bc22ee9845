"""The batch-reactor models, pure numpy, vectorised over a leading batch axis (so the optimal
control solver can simulate every finite-difference perturbation of a control sequence in one
pass, and the evaluation many episodes at once).

**Kinetics** (the published benchmark, DYNOPT ex. 6 / PROPT "Batch Reactor Problem"):
consecutive reactions A → B → C in a batch, temperature T is the control::

    dx1/dt = −k1·x1²            k1 = a1 · 4000   · exp(−2500 / T)   [L/(mol·h)]
    dx2/dt =  k1·x1² − k2·x2     k2 = a2 · 620000 · exp(−5000 / T)   [1/h]

x1, x2 in mol/L (the nominal charge is 1 mol/L of A, so x2 is also the yield as a fraction of
the nominal charge), t in h, t_f = 1 h, 298 ≤ T ≤ 398 K; a1 = a2 = 1 nominally.

**Jacketed reactor**: the same kinetics plus the energy balances of the contents and of a
jacket whose inlet temperature set-point ``u`` (K) is the manipulated variable::

    dT/dt  = (−ΔH1·r1 − ΔH2·r2) / ρcp − α·f_UA·(T − Tj)       r1 = k1·x1², r2 = k2·x2
    dTj/dt = (u − Tj) / τ_j + β·f_UA·(T − Tj)
    dE/dt  = C_j·|u − Tj| / τ_j · V / 3600                     (utility duty, kWh/h)

``E`` is the utility energy spent on the jacket (heating and cooling both count). All the
parameters (unit, value, meaning) are the constants below; docs/control.md repeats them.
Integration is a fixed-step RK4 with ``substeps`` steps per control period: deterministic and
fast; the tests check that halving the step changes x2(t_f) by less than 1e-5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# --- kinetics (published benchmark) ---
K1_PRE = 4000.0  # L/(mol·h), pre-exponential factor of A → B (second order in A)
K1_EA_R = 2500.0  # K, activation energy / R of A → B
K2_PRE = 620000.0  # 1/h, pre-exponential factor of B → C (first order in B)
K2_EA_R = 5000.0  # K, activation energy / R of B → C
T_MIN, T_MAX = 298.0, 398.0  # K, temperature bounds of the benchmark
T_FINAL_H = 1.0  # h, batch duration
J_STAR = 0.61080  # mol/L, the published optimum x2(t_f) (PROPT/SNOPT 0.610799)

# --- jacketed reactor (energy balance), per litre of contents unless said ---
DH1 = -80.0  # kJ/mol, heat of reaction A → B (exothermic)
DH2 = -40.0  # kJ/mol, heat of reaction B → C (exothermic)
RHO_CP = 4.0  # kJ/(L·K), volumetric heat capacity of the contents (aqueous)
VOLUME_L = 1000.0  # L, contents volume (only scales energy to kWh)
UA_OVER_RHOCPV = 15.0  # 1/h, α: clean jacket UA / (ρcp·V), the contents' cooling rate per K
JACKET_TAU_H = 0.05  # h, τ_j: jacket flow-through time constant (inlet → jacket temperature)
JACKET_CAP = 0.8  # kJ/(L·K), C_j: jacket fluid heat capacity per litre of contents
UA_OVER_CJ = UA_OVER_RHOCPV * RHO_CP / JACKET_CAP  # 1/h, β: UA / C_j (clean)
SETPOINT_LOW, SETPOINT_HIGH = 290.0, 420.0  # K, jacket inlet set-point range (utility skid)
SETPOINT_MAX_RATE = 15.0  # K per control step, rate limit on the jacket set-point
T0_JACKETED = 345.0  # K, the preheated charge (reactor and jacket) at t = 0
T_LIMIT = 350.0  # K, hard limit on the reactor temperature (runaway / product degradation)
SENSOR_NOISE_K = 0.3  # K, standard deviation of the reactor/jacket thermometers
SENSOR_DEAD_TIME_H = 1.0 / 60.0  # h (60 s), dead time of the reactor thermometer (thermowell)
ANALYZER_NOISE = 0.002  # mol/L, standard deviation of the in-line x1/x2 analyzer

# --- per-episode disturbances (uniform, drawn from the episode's seed) ---
PRE_EXP_SPREAD = 0.10  # ±10 % on each pre-exponential factor (a1, a2 independent)
UA_FOULING = (0.70, 1.00)  # f_UA: fraction of the clean UA left by fouling
X10_SPREAD = 0.05  # ±5 % on the initial concentration of A (mol/L around 1)

SUBSTEPS = 10  # RK4 steps per control period (default; halving it moves x2(t_f) < 1e-8)


@dataclass(frozen=True)
class Disturbance:
    """One episode's true parameters: pre-exponential multipliers, UA fouling, initial x1.
    Fields may be arrays (one entry per simulated trajectory) to simulate many at once."""

    a1: float | np.ndarray = 1.0
    a2: float | np.ndarray = 1.0
    ua: float | np.ndarray = 1.0
    x10: float | np.ndarray = 1.0

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Disturbance:
        s = PRE_EXP_SPREAD
        return cls(a1=float(rng.uniform(1 - s, 1 + s)), a2=float(rng.uniform(1 - s, 1 + s)),
                   ua=float(rng.uniform(*UA_FOULING)),
                   x10=float(rng.uniform(1 - X10_SPREAD, 1 + X10_SPREAD)))

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in vars(self).items()}


NOMINAL = Disturbance()


def rates(x1: np.ndarray, x2: np.ndarray, T: np.ndarray, d: Disturbance):
    """Reaction rates r1 = k1·x1², r2 = k2·x2 (mol/(L·h)) at temperature T (K)."""
    k1 = d.a1 * K1_PRE * np.exp(-K1_EA_R / T)
    k2 = d.a2 * K2_PRE * np.exp(-K2_EA_R / T)
    return k1 * x1 * x1, k2 * x2


def kinetics_rhs(s: np.ndarray, T: np.ndarray, d: Disturbance) -> np.ndarray:
    """State (n, 2) = (x1, x2); T (n,) held over the step."""
    r1, r2 = rates(s[:, 0], s[:, 1], T, d)
    return np.stack([-r1, r1 - r2], axis=1)


def jacketed_rhs(s: np.ndarray, u: np.ndarray, d: Disturbance) -> np.ndarray:
    """State (n, 5) = (x1, x2, T, Tj, E); ``u`` (n,) the jacket inlet set-point (K)."""
    x1, x2, T, Tj = s[:, 0], s[:, 1], s[:, 2], s[:, 3]
    r1, r2 = rates(x1, x2, T, d)
    transfer = d.ua * (T - Tj)
    dT = (-DH1 * r1 - DH2 * r2) / RHO_CP - UA_OVER_RHOCPV * transfer
    dTj = (u - Tj) / JACKET_TAU_H + UA_OVER_CJ * transfer
    duty_kwh = JACKET_CAP * np.abs(u - Tj) / JACKET_TAU_H * VOLUME_L / 3600.0
    return np.stack([-r1, r1 - r2, dT, dTj, duty_kwh], axis=1)


@dataclass
class Segment:
    """One control period simulated: the state at its end and the reactor temperature at every
    RK4 node (start included), for the peak and the dead-time history."""

    state: np.ndarray
    T_nodes: np.ndarray = field(repr=False)  # (n, substeps + 1)


def rk4_segment(rhs, s: np.ndarray, u: np.ndarray, d: Disturbance, dt_h: float,
                substeps: int = SUBSTEPS, t_index: int | None = None) -> Segment:
    """Integrate ``rhs`` over one period ``dt_h`` with ``u`` held; ``t_index`` the state
    column of the reactor temperature to record (None: the control itself is T)."""
    h = dt_h / substeps
    nodes = [s[:, t_index] if t_index is not None else np.broadcast_to(u, s.shape[:1])]
    for _ in range(substeps):
        k1 = rhs(s, u, d)
        k2 = rhs(s + 0.5 * h * k1, u, d)
        k3 = rhs(s + 0.5 * h * k2, u, d)
        k4 = rhs(s + h * k3, u, d)
        s = s + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        nodes.append(s[:, t_index] if t_index is not None else np.broadcast_to(u, s.shape[:1]))
    return Segment(s, np.stack(nodes, axis=1))


def initial_state(kind: str, d: Disturbance, n: int = 1) -> np.ndarray:
    """(n, 2) for the kinetics, (n, 5) for the jacketed reactor."""
    x10 = np.broadcast_to(np.asarray(d.x10, np.float64), (n,))
    if kind == "kinetics":
        return np.stack([x10, np.zeros(n)], axis=1)
    T0 = np.full(n, T0_JACKETED)
    return np.stack([x10, np.zeros(n), T0, T0.copy(), np.zeros(n)], axis=1)


@dataclass
class Trajectory:
    """A whole batch under a control sequence ``controls`` (n, steps): states at the control
    instants (n, steps + 1, dim) and the peak reactor temperature of each period (n, steps)."""

    states: np.ndarray
    peak_T: np.ndarray

    @property
    def yield_(self) -> np.ndarray:
        return self.states[:, -1, 1]


def simulate(kind: str, controls: np.ndarray, d: Disturbance = NOMINAL,
             t_final_h: float = T_FINAL_H, substeps: int = SUBSTEPS) -> Trajectory:
    """Open-loop batches: ``controls`` (n, steps) of T (kinetics) or jacket set-points (K)."""
    controls = np.atleast_2d(np.asarray(controls, np.float64))
    n, steps = controls.shape
    rhs, t_index = (kinetics_rhs, None) if kind == "kinetics" else (jacketed_rhs, 2)
    s = initial_state(kind, d, n)
    states, peaks = [s], []
    for k in range(steps):
        seg = rk4_segment(rhs, s, controls[:, k], d, t_final_h / steps, substeps, t_index)
        s = seg.state
        states.append(s)
        peaks.append(seg.T_nodes.max(axis=1))
    return Trajectory(np.stack(states, axis=1), np.stack(peaks, axis=1))
