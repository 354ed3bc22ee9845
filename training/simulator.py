"""A heated stirred tank under PI temperature control — the plant procedge trains on when no
historian export is given (tests, demo, CI).

Physics: gravity outflow ``F_out = k·sqrt(h)``; level ``A·dh/dt = F_in − F_out``; energy balance
``dT/dt = F_in/V·(T_in − T) + Q/(ρ·c_p·V)``; bottom pressure is hydrostatic. Inlet flow and
inlet temperature wander (Ornstein–Uhlenbeck + slow cycles), the temperature set-point steps
now and then. Sensor faults corrupt the *reported* values only, from ``start_s`` on:
``drift`` (ramp), ``step`` (offset), ``stuck`` (frozen at the last good value).
Only numpy: the simulator also runs where the gateway runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

TAGS: list[tuple[str, str]] = [
    ("flow_in", "m3/h"),
    ("level", "m"),
    ("temperature", "degC"),
    ("pressure", "kPa"),
    ("heater_power", "kW"),
]
NOISE = np.array([0.08, 0.004, 0.05, 0.05, 1.0])
EPOCH_2026 = 1767225600.0  # 2026-01-01T00:00:00Z

AREA_M2 = 0.5
RHO_CP = 4180.0  # kJ/(m3·K)


@dataclass(frozen=True)
class Fault:
    kind: Literal["drift", "step", "stuck"]
    tag: str
    start_s: float = 0.0  # seconds after the start of the run
    magnitude: float = 0.0  # drift: units per second; step: units; stuck: unused


@dataclass
class SimulatedRun:
    timestamps: np.ndarray  # epoch seconds, shape (N,)
    values: np.ndarray  # (N, F) reported measurements
    tags: list[tuple[str, str]] = field(default_factory=lambda: list(TAGS))
    faulty: np.ndarray | None = None  # (N,) True where a fault corrupts a reported value

    @property
    def tag_names(self) -> list[str]:
        return [name for name, _ in self.tags]


def simulate(
    steps: int,
    period_s: float = 5.0,
    seed: int = 0,
    start_epoch_s: float = EPOCH_2026,
    faults: list[Fault] | tuple[Fault, ...] = (),
) -> SimulatedRun:
    """Simulate ``steps`` samples ``period_s`` apart (explicit Euler, 1 s sub-steps)."""
    rng = np.random.default_rng(seed)
    substeps = max(1, int(round(period_s)))
    dt = period_s / substeps
    k_out = 12.0 / np.sqrt(1.5)  # 12 m3/h leaves at 1.5 m
    h, temp, integral = 1.5, 60.0, 1100.0
    flow_dev, tin_dev, setpoint = 0.0, 0.0, 60.0
    out = np.empty((steps, len(TAGS)))
    for i in range(steps):
        t = i * period_s
        if rng.random() < period_s / 900.0:  # a new set-point every ~15 min
            setpoint = float(rng.uniform(55.0, 65.0))
        for _ in range(substeps):
            flow_dev += -flow_dev * dt / 120.0 + 0.08 * np.sqrt(dt) * rng.normal()
            tin_dev += -tin_dev * dt / 600.0 + 0.05 * np.sqrt(dt) * rng.normal()
            f_in = 12.0 + 2.0 * np.sin(2 * np.pi * t / 1800.0) + flow_dev
            t_in = 20.0 + 3.0 * np.sin(2 * np.pi * t / 3600.0) + tin_dev
            volume = AREA_M2 * h
            error = setpoint - temp
            demand = 40.0 * error + 0.5 * (integral + error * dt)
            if 0.0 < demand < 1500.0:  # anti-windup: integrate only while unsaturated
                integral += error * dt
            power = float(np.clip(demand, 0.0, 1500.0))
            f_out = k_out * np.sqrt(max(h, 1e-3))
            h = max(h + (f_in - f_out) / 3600.0 / AREA_M2 * dt, 0.05)
            temp += (f_in / 3600.0 / volume * (t_in - temp) + power / (RHO_CP * volume)) * dt
        pressure = 101.325 + 9.81 * h
        out[i] = [f_in, h, temp, pressure, power]
    out += rng.normal(size=out.shape) * NOISE
    timestamps = start_epoch_s + np.arange(steps) * period_s
    faulty = _inject(out, timestamps - start_epoch_s, faults)
    return SimulatedRun(timestamps, out, list(TAGS), faulty)


def _inject(values: np.ndarray, elapsed_s: np.ndarray, faults) -> np.ndarray:
    names = [name for name, _ in TAGS]
    faulty = np.zeros(len(values), dtype=bool)
    for fault in faults:
        col = names.index(fault.tag)
        on = elapsed_s >= fault.start_s
        if not on.any():
            continue
        first = int(np.argmax(on))
        if fault.kind == "drift":
            values[on, col] += fault.magnitude * (elapsed_s[on] - fault.start_s)
        elif fault.kind == "step":
            values[on, col] += fault.magnitude
        elif fault.kind == "stuck":
            values[on, col] = values[max(first - 1, 0), col]
        faulty |= on
    return faulty


# ----------------------------------------------------------------------- a lab-like quality

LAB_TAG = ("conversion", "%")
K60_PER_S = 1.0 / 225.0  # first-order rate constant at 60 degC: k·tau = 1 at the nominal point
K_PER_DEGC = 0.08  # its relative rise per degC (Arrhenius, linearised over 55–65 degC)


def conversion(run: SimulatedRun) -> np.ndarray:
    """A quality value no sensor reports, per row: the conversion (%) of a first-order
    reaction in the tank, ``X = k·τ / (1 + k·τ)`` at the residence time ``τ = A·h / F_in``
    and a rate constant that rises with temperature, followed with the tank's own lag (a
    mixed tank's composition trails its steady state by about τ). It depends on flow, level
    and temperature — the soft-sensor's inputs — but is none of them."""
    names = run.tag_names
    flow = np.maximum(run.values[:, names.index("flow_in")], 0.5) / 3600.0  # m3/s
    level = np.maximum(run.values[:, names.index("level")], 0.05)
    temp = run.values[:, names.index("temperature")]
    tau = AREA_M2 * level / flow
    k = K60_PER_S * np.exp(K_PER_DEGC * (temp - 60.0))
    steady = 100.0 * k * tau / (1.0 + k * tau)
    period = float(run.timestamps[1] - run.timestamps[0]) if len(run.timestamps) > 1 else 1.0
    out = np.empty_like(steady)
    out[0] = steady[0]
    for i in range(1, len(steady)):
        a = min(period / tau[i], 1.0)
        out[i] = out[i - 1] + a * (steady[i] - out[i - 1])
    return out


def lab_samples(run: SimulatedRun, every_s: float, dead_time_s: float, noise: float = 0.3,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Lab results of :func:`conversion`: a sample drawn about every ``every_s`` (jitter up to
    a quarter of it), its result stamped ``dead_time_s`` later (the stamp is when the value is
    known; it describes the process at stamp - dead time), with a lab error of ``noise``.
    Returns (stamps in epoch seconds, values); only results known within the run."""
    rng = np.random.default_rng(seed + 7919)
    start, end = float(run.timestamps[0]), float(run.timestamps[-1])
    drawn = start + np.arange(every_s, end - start - dead_time_s + 1e-9, every_s)
    drawn = drawn + rng.uniform(0.0, every_s / 4.0, size=len(drawn))
    drawn = drawn[drawn + dead_time_s <= end]
    period = float(run.timestamps[1] - run.timestamps[0])
    rows = np.floor((drawn - start) / period + 1e-9).astype(int)
    values = conversion(run)[rows] + rng.normal(size=len(rows)) * noise
    return drawn + dead_time_s, values


def write_csv(run: SimulatedRun, path, sep: str = ",", decimal: str = ".",
              timestamp_format: str = "%Y-%m-%dT%H:%M:%SZ", timezone: str = "UTC") -> None:
    """Write a run as a historian export would: one timestamp column (local time of
    ``timezone``, formatted by ``timestamp_format``), one column per tag."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(timezone)
    lines = [sep.join(["timestamp", *run.tag_names])]
    for ts, row in zip(run.timestamps, run.values, strict=True):
        stamp = datetime.fromtimestamp(float(ts), zone).strftime(timestamp_format)
        lines.append(sep.join([stamp, *(f"{v:.6g}".replace(".", decimal) for v in row)]))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    """``python -m training.simulator --csv PATH``: a historian-style export of the plant."""
    import argparse
    from pathlib import Path

    p = argparse.ArgumentParser(prog="python -m training.simulator", description=main.__doc__)
    p.add_argument("--csv", required=True, help="file to write")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--period", type=float, default=5.0, help="seconds per sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sep", default=",")
    p.add_argument("--decimal", default=".")
    p.add_argument("--timestamp-format", default="%Y-%m-%dT%H:%M:%SZ", help="strftime")
    p.add_argument("--timezone", default="UTC", help="IANA zone the stamps are written in")
    args = p.parse_args(argv)
    run = simulate(args.steps, args.period, seed=args.seed)
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    write_csv(run, args.csv, args.sep, args.decimal, args.timestamp_format, args.timezone)
    print(f"wrote {args.steps} rows of {len(run.tag_names)} tags to {args.csv}")


if __name__ == "__main__":
    main()
