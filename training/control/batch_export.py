"""A historian export of N batches of the jacketed reactor: the data a batch-end soft sensor
is trained on (``procedge simulate --batches N --out FILE.csv``).

Each batch runs :class:`training.control.envs.JacketedReactorEnv` (its per-batch disturbances:
±10 % on both pre-exponential factors, 70–100 % of the clean UA, ±5 % on the charge of A; the
thermometers' noise and the reactor thermometer's dead time) under the repo's SIMC-tuned PI
loop (:class:`training.control.baselines.PIDTracking`) tracking a **recipe**: a falling
temperature profile, as the optimum of this reactor is,

    T_sp(t) = T_end + (T_start − T_end) · exp(−t / τ),   capped at T_LIMIT − 2 K,

with ``T_start``, ``T_end`` and ``τ`` drawn per batch (:data:`RECIPE`). The export holds what a
plant measures — ``T`` (reactor, noisy, 60 s late), ``Tj`` (jacket), ``Tj_sp`` (the loop's
output), ``T_sp`` (the recipe), ``duty_kW`` (the utility meter) — plus ``batch_id``, ``phase``
(1 heat-up/hold, 2 reaction, 3 finish, by batch time) and, in the last row of each batch only,
``yield``: x2(t_f) in mol/L, the batch-end value. The concentrations x1, x2 are never
exported. Batches follow one another with a turnaround between them (no rows there).

With ``recipe_columns`` the export also carries the batch's recipe in every row of it
(:data:`RECIPE_TAGS`): what a batch record holds before the batch starts (the initial
conditions of multiway batch models, Nomikos & MacGregor's Z). On the batch-end yield they
did not help (docs/soft_sensors.md): the unmeasured charge, not the recipe, limits it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.control import plant
from training.control.baselines import LIMIT_MARGIN_K, PIDTracking, simc_tuning
from training.control.envs import make_env

# per-batch recipe draws (uniform), K and h
RECIPE = {"T_start": (338.0, 348.0), "T_end": (320.0, 336.0), "tau_h": (0.1, 0.45)}
PHASE_ENDS_H = (0.15, 0.7)  # batch time (h) where phase 1 ends and phase 3 begins
TURNAROUND_S = 1800.0  # s between one batch's last row and the next one's first
TAGS = (("T", "K"), ("Tj", "K"), ("Tj_sp", "K"), ("T_sp", "K"), ("duty_kW", "kW"))
TARGET = ("yield", "mol/L")
RECIPE_TAGS = (("recipe_T_start", "K"), ("recipe_T_end", "K"), ("recipe_tau_h", "h"))
DUTY_NOISE_KW = 2.0  # kW, standard deviation of the utility meter


@dataclass(frozen=True)
class Recipe:
    """One batch's temperature profile."""

    T_start: float
    T_end: float
    tau_h: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Recipe:
        return cls(*(float(rng.uniform(*RECIPE[k])) for k in ("T_start", "T_end", "tau_h")))

    def setpoints(self, times_h: np.ndarray) -> np.ndarray:
        profile = self.T_end + (self.T_start - self.T_end) * np.exp(-times_h / self.tau_h)
        return np.minimum(profile, plant.T_LIMIT - LIMIT_MARGIN_K)


def phase(t_h: float) -> int:
    return 1 if t_h < PHASE_ENDS_H[0] else (2 if t_h < PHASE_ENDS_H[1] else 3)


def simulate_batches(n: int, seed: int = 0, steps: int = 60,
                     start_epoch_s: float = 1_767_225_600.0,
                     recipe_columns: bool = False,
                     truth: list[dict[str, float]] | None = None) -> pd.DataFrame:
    """``n`` batches of ``steps`` control periods each (t_f = 1 h): one row per period and
    one at the start, columns ``timestamp`` (ISO 8601 UTC), ``batch_id`` (1..n), ``phase``,
    :data:`TAGS` (and :data:`RECIPE_TAGS` with ``recipe_columns``; the draws, hence the
    batches, are the same either way), and ``yield`` in each batch's last row (empty
    elsewhere). ``truth``: a list that receives each batch's hidden parameters (the plant's
    disturbance and the recipe), for studies of what the data can tell; never exported."""
    if n < 1 or steps < 2:
        raise ValueError(f"need n >= 1 batches and steps >= 2, got {n}, {steps}")
    rng = np.random.default_rng(seed)
    env = make_env("jacketed", steps=steps)  # disturbances and noise on
    u = env.unwrapped
    tuning = simc_tuning(u.period_s)
    frames, start = [], float(start_epoch_s)
    for b in range(1, n + 1):
        recipe = Recipe.draw(rng)
        sp = recipe.setpoints(np.arange(1, steps + 1) * u.dt_h)
        pid = PIDTracking("recipe", u.action_spec, sp, tuning, u.period_s)
        _, info = env.reset(seed=int(rng.integers(2**31)))
        meter = np.random.default_rng(int(rng.integers(2**31)))
        rows, energy = [], 0.0
        for k in range(steps + 1):
            m = info["measured"]
            duty = (info["energy"] - energy) / u.dt_h if k else 0.0  # kWh per h = kW
            energy = info["energy"]
            rows.append({"batch_id": b, "phase": phase(k * u.dt_h), "T": m["T"], "Tj": m["Tj"],
                         "Tj_sp": info["setpoint"], "T_sp": float(sp[min(k, steps - 1)]),
                         "duty_kW": duty + float(meter.normal(0.0, DUTY_NOISE_KW))})
            if k < steps:
                _, _, _, _, info = env.step(pid.act(None, info))
        rows[-1]["yield"] = info["x2"]
        if truth is not None:
            truth.append(u.params.as_dict() | vars(recipe) | {"yield": info["x2"]})
        frame = pd.DataFrame(rows)
        if recipe_columns:
            for (tag, _), value in zip(RECIPE_TAGS, (recipe.T_start, recipe.T_end,
                                                     recipe.tau_h), strict=True):
                frame.insert(len(frame.columns) - 1, tag, value)
        frame.insert(0, "timestamp", pd.to_datetime(start + np.arange(steps + 1) * u.period_s,
                                                    unit="s", utc=True))
        frames.append(frame)
        start += steps * u.period_s + TURNAROUND_S
    out = pd.concat(frames, ignore_index=True)
    out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out
