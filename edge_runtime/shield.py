"""The safety shield between a learned policy and the plant: every action passes through it, in
training (an environment wrapper calls it) and at the gateway (the ``control`` task).

Why a shield: a policy is a function fitted on simulated batches; nothing proves it stays
inside the plant's envelope on a real one, or behaves when its inputs fail. The shield makes
four guarantees that do not depend on the policy, in this order each control period:

1. **watchdog** — no valid input this period (a stale or missing tag, a NaN): the last applied
   set-point is held; after more than ``stale_periods`` such periods in a row the watchdog
   alarm is raised and, with ``on_stale: pid`` and a valid guard measurement, the PID fallback
   takes over;
2. **temperature guard** — the guard tag (the reactor temperature) above ``trip``: the policy
   is overridden and the PID fallback (:class:`edge_runtime.pid.PID`, loaded bumplessly with
   the set-point the plant has) drives it towards its own set-point, until the guard tag falls
   below ``reset`` (hysteresis: ``reset < trip``, so it does not chatter at the limit). The
   override is a low select, as an override controller in a plant's DCS: the lower of the
   PID's output and the policy's set-point goes out (a higher set-point heats, as the PID's
   positive gain assumes), so the guard never cools less than the policy itself asked —
   measured: without it, an open-loop profile that was about to cool hard crossed the hard
   limit in more batches behind the shield than without it;
3. **clamp** to ``[low, high]``;
4. **rate limit**: at most ``max_rate`` from the last applied set-point per period (a return
   from the fallback to the policy is therefore bumpless too).

Every period gets one verdict (``pass|clamped|rate_limited|guard|watchdog``) and every verdict
but ``pass`` is counted by reason (``interventions``), as is a failed set-point write.
Pure Python: the gateway runs it without numpy's help, TensorFlow or gymnasium.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from edge_runtime.pid import PID

Verdict = Literal["pass", "clamped", "rate_limited", "guard", "watchdog"]
VERDICTS: tuple[str, ...] = ("pass", "clamped", "rate_limited", "guard", "watchdog")
#: What drives the set-point: the policy, the PID fallback, or a hold of the last one.
Source = Literal["agent", "pid", "hold"]


@dataclass(frozen=True)
class ShieldSettings:
    """The shield's limits, engineering units of the action (set-point) and the guard tag."""

    low: float
    high: float
    max_rate: float | None  # per control period; None: no rate limit
    guard_trip: float  # guard tag above this: fallback
    guard_reset: float  # guard tag below this: back to the policy
    stale_periods: int  # periods without valid input tolerated before the watchdog alarm
    on_stale: Literal["hold", "pid"] = "hold"
    pid_setpoint: float = 0.0  # what the PID fallback holds the guard tag at

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise ValueError(f"shield: low {self.low} must be below high {self.high}")
        if self.max_rate is not None and not self.max_rate > 0:
            raise ValueError(f"shield: max_rate {self.max_rate} must be > 0 (or None)")
        if not self.guard_reset < self.guard_trip:
            raise ValueError(f"shield: guard reset {self.guard_reset} must be below trip "
                             f"{self.guard_trip} (hysteresis)")
        if self.stale_periods < 1:
            raise ValueError(f"shield: stale_periods {self.stale_periods} must be >= 1")


@dataclass(frozen=True)
class Decision:
    """One period's outcome: the set-point to apply, what the policy asked, the verdict, who
    drives (``source``) and the alarms' conditions after this period."""

    setpoint: float
    proposed: float | None  # the policy's set-point (None: no valid input this period)
    verdict: Verdict
    source: Source
    guard_active: bool
    watchdog_active: bool
    stale_periods: int


class Shield:
    """One loop's shield; :meth:`step` once per control period, in order."""

    def __init__(self, settings: ShieldSettings, pid: PID | None = None,
                 initial: float | None = None):
        """``pid``: the fallback (needed for the guard and ``on_stale: pid``); ``initial``:
        the set-point the plant has now (the first rate limit starts from it; None: the
        first set-point is only clamped)."""
        self.settings = settings
        self.pid = pid
        self.last: float | None = initial
        self.guard_active = False
        self.watchdog_active = False
        self.stale = 0  # consecutive periods without valid input
        self.source: Source = "agent"
        self.interventions: Counter[str] = Counter()

    def step(self, proposed: float | None, guard_value: float | None) -> Decision:
        """Shield the policy's set-point ``proposed`` (engineering units; None or NaN: the
        inputs were not valid this period) given the guard tag's measurement."""
        s = self.settings
        valid = _finite(proposed) and _finite(guard_value)
        if not valid:
            return self._stale(guard_value)
        self.stale, self.watchdog_active = 0, False
        if self.guard_active and guard_value < s.guard_reset:
            self.guard_active = False
        elif not self.guard_active and guard_value > s.guard_trip:
            self.guard_active = True
        if self.guard_active:
            return self._fallback(guard_value, proposed, "guard")
        self.source = "agent"
        return self._limit(float(proposed), proposed, None)

    def _stale(self, guard_value: float | None) -> Decision:
        s = self.settings
        self.stale += 1
        self.watchdog_active = self.stale > s.stale_periods
        if (self.watchdog_active and s.on_stale == "pid" and self.pid is not None
                and _finite(guard_value)):
            return self._fallback(guard_value, None, "watchdog")
        self.source = "hold"
        held = self.last if self.last is not None else (s.low + s.high) / 2
        self.last = held
        return self._decide(held, None, "watchdog")

    def _fallback(self, measured: float, proposed: float | None, verdict: Verdict) -> Decision:
        if self.pid is None:  # no fallback configured: hold what the plant has
            self.source = "hold"
            held = self.last if self.last is not None else self.settings.low
            return self._decide(held, proposed, verdict)
        if self.source != "pid":  # bumpless: the PID starts from the set-point applied
            start = self.last if self.last is not None else self.settings.low
            self.pid.reset(start, self.settings.pid_setpoint, measured)
        self.source = "pid"
        out = self.pid.update(self.settings.pid_setpoint, float(measured))
        if verdict == "guard" and proposed is not None and float(proposed) < out:
            out = float(proposed)  # low select: never hotter than the policy asks
            # external reset feedback: the PID tracks what went out (no windup behind it)
            self.pid.reset(out, self.settings.pid_setpoint, measured)
        return self._limit(out, proposed, verdict)

    def _limit(self, value: float, proposed: float | None, verdict: Verdict | None) -> Decision:
        """Clamp, then rate-limit from the last applied set-point; ``verdict`` (guard,
        watchdog) wins over what the limits did."""
        s = self.settings
        clamped = min(max(value, s.low), s.high)
        limited = clamped
        if s.max_rate is not None and self.last is not None:
            limited = min(max(clamped, self.last - s.max_rate), self.last + s.max_rate)
        if verdict is None:
            verdict = ("rate_limited" if limited != clamped
                       else "clamped" if clamped != value else "pass")
        self.last = limited
        return self._decide(limited, proposed, verdict)

    def _decide(self, setpoint: float, proposed: float | None, verdict: Verdict) -> Decision:
        if verdict != "pass":
            self.interventions[verdict] += 1
        return Decision(float(setpoint), None if proposed is None else float(proposed),
                        verdict, self.source, self.guard_active, self.watchdog_active,
                        self.stale)

    def write_failed(self, previous: float | None) -> None:
        """The set-point of this period never reached the plant: the next rate limit starts
        from the set-point it still has (``previous``), and the failure is counted."""
        self.last = previous
        self.interventions["write_failed"] += 1


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
