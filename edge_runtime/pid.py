"""A discrete PID controller in pure Python: the baseline every learned policy is compared with
on the workstation, and the fallback the gateway's safety shield hands the plant back to.

Form: ideal (ISA) PID, ``u = kp·(e + 1/ti·∫e dt − td·dy/dt)``, sampled every ``period_s``:

* **derivative on the measurement**, never on the error, so a set-point step gives no kick;
  filtered by a first-order lag of ``td / n_filter`` (no noise amplification at high
  frequency);
* **anti-windup by back-calculation** (Åström & Hägglund): whenever the output is clamped to
  ``[low, high]`` (or rate-limited by ``max_rate``), the integral is pulled back by
  ``period_s / tt_s · (u_applied − u_computed)``, so it never winds up past what the actuator
  can deliver and the loop leaves saturation without overshoot; ``tt_s`` defaults to
  ``sqrt(ti·td)`` (``ti`` without derivative) and is never shorter than one period;
* **bumpless transfer**: :meth:`PID.reset` loads the integral so the next output equals the
  output the plant already has (the set-point an operator or a policy left), which is how a
  shield switches from a learned policy to this loop without a step.

Reverse-acting loops (a cooling valve) take a negative ``kp``. Times are in seconds; the
output is in the actuator's engineering unit (e.g. a jacket inlet temperature set-point in K).
"""

from __future__ import annotations

import math


class PID:
    """One loop. ``update`` once per control period, in order; ``ti_s = math.inf`` gives no
    integral action, ``td_s = 0`` no derivative action."""

    def __init__(self, kp: float, ti_s: float, td_s: float, low: float, high: float,
                 period_s: float, *, max_rate: float | None = None, tt_s: float | None = None,
                 n_filter: float = 10.0):
        if not high > low:
            raise ValueError(f"PID output range [{low}, {high}] is empty")
        if not (period_s > 0 and ti_s > 0 and td_s >= 0 and n_filter > 0):
            raise ValueError("PID needs period_s > 0, ti_s > 0, td_s >= 0, n_filter > 0")
        if max_rate is not None and not max_rate > 0:
            raise ValueError(f"PID max_rate {max_rate} must be > 0 (per period) or None")
        self.kp, self.ti_s, self.td_s = float(kp), float(ti_s), float(td_s)
        self.low, self.high, self.period_s = float(low), float(high), float(period_s)
        self.max_rate = None if max_rate is None else float(max_rate)
        self.n_filter = float(n_filter)
        default_tt = math.sqrt(ti_s * td_s) if td_s > 0 and math.isfinite(ti_s) else ti_s
        self.tt_s = max(float(tt_s if tt_s is not None else default_tt), self.period_s)
        self.reset((self.low + self.high) / 2)

    def reset(self, output: float, setpoint: float | None = None,
              measurement: float | None = None) -> None:
        """Start (again) from ``output`` without a bump. With the set-point and measurement of
        the moment, the next :meth:`update` on them returns exactly ``output``; without them
        the integral holds ``output`` and the proportional term is added on top."""
        output = min(max(float(output), self.low), self.high)
        self._integral = output
        if setpoint is not None and measurement is not None:
            self._integral = output - self.kp * (setpoint - measurement)
        self._deriv = 0.0
        self._last_y: float | None = None if measurement is None else float(measurement)
        self._last_u = output

    def update(self, setpoint: float, measurement: float) -> float:
        """The output for this period, clamped to ``[low, high]`` and to ``max_rate``."""
        h, y = self.period_s, float(measurement)
        error = float(setpoint) - y
        if self.td_s > 0 and self._last_y is not None:
            tf = self.td_s / self.n_filter
            self._deriv = (tf * self._deriv - self.kp * self.td_s * (y - self._last_y)) / (tf + h)
        self._last_y = y
        computed = self.kp * error + self._integral + self._deriv
        applied = min(max(computed, self.low), self.high)
        if self.max_rate is not None:
            step = min(max(applied - self._last_u, -self.max_rate), self.max_rate)
            applied = self._last_u + step
        if math.isfinite(self.ti_s):
            self._integral += self.kp * h / self.ti_s * error + h / self.tt_s * (applied - computed)
        self._last_u = applied
        return applied

    @property
    def output(self) -> float:
        """The last output (what the actuator holds now)."""
        return self._last_u
