"""Task ``control`` at the edge: every control period the policy's action on the current tag
values, through the safety shield (:mod:`edge_runtime.shield`), published as advice; written
to the plant only with ``mode: closed_loop`` (docs/control_edge.md).

The observation is the series pipeline's window of length 1 — the observation tags at the
period's grid point, ``(value - center) / scale`` by the bundle's scaler — exactly as the
environment builds it. A period without a valid observation (a stale or missing tag, a NaN)
is a stale period for the shield: the grid's gap check drops the window, and a period is also
declared stale by :func:`tick`, a timer the daemon calls at least every 0.5 s, when no sample
completed it within ``(1 + timer_slack)`` periods (so the watchdog fires when nothing arrives
at all).

Payload on ``<uns>/advice/<model>``: ``{"ts", "setpoint" (shielded, engineering units),
"tag", "unit", "raw_action" (the policy's, in [-1, 1]; null in a stale period), "level"
(DQN: the chosen output), "raw_setpoint", "verdict" (pass|clamped|rate_limited|guard|watchdog),
"source" (agent|pid|hold), "guard_active", "watchdog_active", "stale_periods", "mode",
"written"}``. Alarms (ISA-18.2, through the daemon): ``<model>.watchdog`` (inputs stale more
than the shield's ``stale_periods``), ``<model>.guard`` (the temperature guard holds the
loop), ``<model>.write`` (a set-point write failed).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edge_runtime.bundle import ControlSpec, Manifest
from edge_runtime.payloads import iso_ms
from edge_runtime.shield import Decision, Shield, ShieldSettings

if TYPE_CHECKING:
    from edge_runtime.config import ControlEdgeConfig
    from edge_runtime.pipelines import ModelPipeline, Output

ALARMS = ("watchdog", "guard", "write")
MAX_CATCH_UP = 100  # stale periods decided at once at most (a suspended process, a clock jump)


@dataclass
class ControlState:
    """What one control pipeline remembers between periods."""

    spec: ControlSpec
    options: ControlEdgeConfig
    shield: Shield
    guard_index: int
    last_t: float | None = None  # grid time of the last decided period
    deadline: float = math.inf  # monotonic time at which the next period counts as missed
    conditions: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(ALARMS, False))
    unreported: Counter = field(default_factory=Counter)  # interventions not yet in /metrics
    late_windows: int = 0  # windows of periods the timer had already declared stale
    written: float | None = None  # the set-point the plant has from the last good write
    dirty: bool = False  # decided or written since the daemon last committed the snapshot

    @property
    def wall_period_s(self) -> float:
        return self.spec.period_s / self.options.speed

    def take_counts(self) -> Counter:
        """Interventions since the last call (the daemon moves them into /metrics)."""
        counts, self.unreported = self.unreported, Counter()
        return counts


def shield_settings(spec: ControlSpec) -> ShieldSettings:
    s = spec.shield
    return ShieldSettings(low=s.low, high=s.high, max_rate=spec.max_rate,
                          guard_trip=s.guard.trip, guard_reset=s.guard.reset,
                          stale_periods=s.watchdog.stale_periods, on_stale=s.watchdog.on_stale,
                          pid_setpoint=spec.pid.setpoint)


def build_shield(spec: ControlSpec) -> Shield:
    """The shield of a bundle's control section, with its PID fallback."""
    from edge_runtime.pid import PID

    p, s = spec.pid, spec.shield
    pid = PID(p.kp, p.ti_s, p.td_s, s.low, s.high, spec.period_s, max_rate=spec.max_rate)
    return Shield(shield_settings(spec), pid)


def initial_state(manifest: Manifest, options: ControlEdgeConfig | None) -> ControlState:
    from edge_runtime.config import ControlEdgeConfig

    if options is not None and not isinstance(options, ControlEdgeConfig):
        raise ValueError("a control bundle takes a 'control' section, not "
                         f"{type(options).__name__}")
    spec = manifest.control
    names = [t.name for t in spec.observation]
    return ControlState(spec, options or ControlEdgeConfig(), build_shield(spec),
                        names.index(spec.shield.guard.tag))


def post(pipeline: ModelPipeline, times: list[float], x: np.ndarray,
         ys: list[np.ndarray]) -> list[Output]:
    state: ControlState = pipeline.task_state
    spec = state.spec
    obs = np.asarray(x, dtype=np.float64).reshape(len(times), -1)
    guard = obs[:, state.guard_index] * spec.observation[state.guard_index].scale + \
        spec.observation[state.guard_index].center
    y = np.asarray(ys[0], dtype=np.float64).reshape(len(times), -1)
    outputs: list[Output] = []
    for i, grid_t in enumerate(times):
        if state.last_t is not None and grid_t <= state.last_t + 1e-9:
            state.late_windows += 1  # the timer already declared this period stale
            continue
        if state.last_t is not None:  # periods skipped (gaps): stale, in order
            missed = round((grid_t - state.last_t) / spec.period_s) - 1
            for _ in range(min(missed, MAX_CATCH_UP)):
                outputs += _decide(pipeline, state.last_t + spec.period_s, None, None,
                                   math.nan, False)
        level = None
        if spec.levels:
            level = int(np.argmax(y[i]))
            action = spec.levels[level]
        else:
            action = float(np.clip(y[i, 0], -1.0, 1.0))
        outputs += _decide(pipeline, grid_t, action, level, float(guard[i]), True)
    return outputs


def tick(pipeline: ModelPipeline, now: float | None = None) -> list[Output]:
    """The watchdog's timer: a period that no sample completed in time is decided as stale
    (hold, or the PID fallback), whatever arrives later for it."""
    state: ControlState = pipeline.task_state
    now = time.monotonic() if now is None else now
    outputs: list[Output] = []
    decided = 0
    while state.last_t is not None and now >= state.deadline:
        if decided >= MAX_CATCH_UP:  # far behind: the periods in between get no advice
            state.deadline = now + state.wall_period_s
            break
        decided += 1
        outputs += _decide(pipeline, state.last_t + state.spec.period_s, None, None, math.nan,
                           False)
    return outputs


def _decide(pipeline: ModelPipeline, grid_t: float, action: float | None, level: int | None,
            guard_value: float, valid: bool) -> list[Output]:
    from edge_runtime.pipelines import Output

    state: ControlState = pipeline.task_state
    spec, shield = state.spec, state.shield
    proposed = spec.action.to_setpoint(action) if action is not None else None
    decision = shield.step(proposed, guard_value)
    state.dirty = True
    now = time.monotonic()
    state.last_t = grid_t
    # a valid period restarts the timer; a stale one moves it on by one period (a timer
    # behind by several periods decides each of them, in order)
    state.deadline = (now + (1 + state.options.timer_slack) * state.wall_period_s if valid
                      else state.deadline + state.wall_period_s)
    if decision.verdict != "pass":
        state.unreported[decision.verdict] += 1
    closed = state.options.mode == "closed_loop"
    base = pipeline.base_payload() | {"ts": iso_ms(grid_t)}
    outputs = [Output("advice", base | _advice(state, decision, action, level, closed),
                      grid_t=grid_t)]
    if closed:
        outputs.append(Output("write", {"v": round(decision.setpoint, 6), "ts": iso_ms(grid_t),
                                        "model": pipeline.name, "verdict": decision.verdict,
                                        "source": decision.source}, grid_t=grid_t))
    outputs += _alarms(pipeline, grid_t, {"watchdog": decision.watchdog_active,
                                          "guard": decision.guard_active}, guard_value)
    return outputs


def _advice(state: ControlState, d: Decision, action: float | None, level: int | None,
            closed: bool) -> dict:
    a = state.spec.action
    return {"setpoint": round(d.setpoint, 6), "tag": a.name, "unit": a.unit,
            "raw_action": None if action is None else round(action, 6), "level": level,
            "raw_setpoint": None if d.proposed is None else round(d.proposed, 6),
            "verdict": d.verdict, "source": d.source, "guard_active": d.guard_active,
            "watchdog_active": d.watchdog_active, "stale_periods": d.stale_periods,
            "mode": state.options.mode, "written": closed}


def _alarms(pipeline: ModelPipeline, grid_t: float, now_active: dict[str, bool],
            value: float) -> list[Output]:
    """Raise or clear the task's alarms whose condition changed this period."""
    from edge_runtime.pipelines import Output

    state: ControlState = pipeline.task_state
    s = state.spec.shield
    limits = {"watchdog": s.watchdog.stale_periods, "guard": s.guard.trip, "write": 0}
    outputs = []
    for kind, active in now_active.items():
        if active == state.conditions[kind]:
            continue
        state.conditions[kind] = active
        aid = f"{pipeline.name}.{kind}"
        score = (state.shield.stale if kind == "watchdog" else
                 1.0 if kind == "write" else value)
        payload = pipeline.base_payload() | {
            "ts": iso_ms(grid_t), "alarm_id": aid, "event": "raise" if active else "clear",
            "state": "active" if active else "normal",
            "priority": "high" if kind in ("guard", "watchdog") else "medium",
            "source": [s.guard.tag] if kind == "guard" else [state.spec.action.name],
            "score": score if math.isfinite(score) else None, "threshold": limits[kind]}
        outputs.append(Output("alarm", payload, aid, grid_t))
    return outputs


def hand_over(old: ModelPipeline, new: ModelPipeline) -> None:
    """A hot reload mid-batch: the new policy continues from the set-point the plant has (the
    rate limit holds across the swap), the same period clock, watchdog count and fallback
    (a PID that drives now goes on driving, loaded bumplessly by the new shield)."""
    a, b = old.task_state, new.task_state
    if not (isinstance(a, ControlState) and isinstance(b, ControlState)):
        return
    b.last_t, b.deadline, b.written = a.last_t, a.deadline, a.written
    b.conditions = dict(a.conditions)
    b.shield.last = a.shield.last
    b.shield.stale, b.shield.watchdog_active = a.shield.stale, a.shield.watchdog_active
    b.shield.guard_active = a.shield.guard_active
    if a.shield.source == "pid" and a.shield.last is not None:
        b.shield.source = "pid"
        b.shield.pid.reset(a.shield.last)


def snapshot(pipeline: ModelPipeline) -> dict:
    """What a restart must not lose (the daemon keeps it in the outbox's state table, committed
    with the batch that decided it): the set-point the plant has (the last good write), the
    last one applied or advised, and whether the guard's fallback holds the loop."""
    state: ControlState = pipeline.task_state
    return {"written": state.written, "last": state.shield.last,
            "guard_active": state.shield.guard_active}


def restore(pipeline: ModelPipeline, saved: dict) -> bool:
    """Take up a :func:`snapshot` after a restart: the first rate limit starts from the
    set-point the plant still has (the last written one; advisory: the last advised), and a
    guard that held the loop holds it until the guard tag is below ``reset`` (hysteresis as
    if the process had not stopped). Any bundle version: the plant's set-point does not
    depend on the policy. The period clock and the watchdog count start afresh (the periods
    of the outage are not decided after the fact). Whether anything was taken."""
    state: ControlState = pipeline.task_state
    start = saved.get("written")
    if start is None:
        start = saved.get("last")
    if start is None or not math.isfinite(float(start)):
        return False
    s = state.shield.settings
    state.written = None if saved.get("written") is None else float(saved["written"])
    state.shield.last = min(max(float(start), s.low), s.high)
    # the fallback itself starts bumplessly from the set-point above, with the first
    # measurement, when the guard next decides
    state.shield.guard_active = bool(saved.get("guard_active", False))
    return True


def alarm_ids(pipeline: ModelPipeline) -> list[str]:
    """The ISA-18.2 alarms a control pipeline raises (the daemon creates them)."""
    return [f"{pipeline.name}.{kind}" for kind in ALARMS]


def write_result(pipeline: ModelPipeline, grid_t: float, setpoint: float,
                 ok: bool) -> list[Output]:
    """After the daemon tried to write a period's set-point: a failure is counted, the
    shield's next rate limit starts from the set-point the plant still has (the last one
    written), and the write alarm is raised (cleared by the next write that succeeds)."""
    state: ControlState = pipeline.task_state
    state.dirty = True
    if ok:
        state.written = setpoint
    else:
        state.shield.write_failed(state.written)
        state.unreported["write_failed"] += 1
    return _alarms(pipeline, grid_t, {"write": not ok}, 1.0)
