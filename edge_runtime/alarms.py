"""Raise/clear logic for anomaly scores: on-delay, off-delay and a deadband.

The same class replays scores at training time (to measure what the edge will do) and runs
live in the daemon, so the evaluated alarm behaviour is the deployed one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge_runtime.bundle import ThresholdSpec
from edge_runtime.payloads import iso_ms
from edge_runtime.smoothing import smooth_scores

Transition = Literal["raise", "clear"]


@dataclass
class AlarmLogic:
    spec: ThresholdSpec
    active: bool = False
    _above: int = 0
    _below: int = 0

    def update(self, score: float) -> Transition | None:
        """Feed one window's score; return 'raise' or 'clear' on a state change."""
        if not math.isfinite(score):
            return None
        if self.active:
            self._below = self._below + 1 if score < self.spec.clear_at else 0
            if self._below >= self.spec.off_delay:
                self.active, self._below = False, 0
                return "clear"
        else:
            self._above = self._above + 1 if score >= self.spec.raise_at else 0
            if self._above >= self.spec.on_delay:
                self.active, self._above = True, 0
                return "raise"
        return None

    def priority(self, score: float) -> str:
        """Margin over the raise limit → low / medium / high / urgent."""
        ratio = score / self.spec.raise_at if self.spec.raise_at > 0 else np.inf
        if ratio >= 4:
            return "urgent"
        if ratio >= 2:
            return "high"
        if ratio >= 1.3:
            return "medium"
        return "low"


def replay(spec: ThresholdSpec, raw_scores: np.ndarray) -> np.ndarray:
    """Alarm-active flag per window for raw window scores, exactly as the daemon sets it:
    the bundle's smoothing (EWMA, k-of-n), then the on/off-delay and deadband logic."""
    logic = AlarmLogic(spec)
    scores = smooth_scores(spec, np.asarray(raw_scores, dtype=np.float64))
    active = np.zeros(len(scores), dtype=bool)
    for i, score in enumerate(scores):
        logic.update(float(score))
        active[i] = logic.active
    return active


# -- ISA-18.2 alarm states on top of the detection logic above ------------------------------
NORMAL = "normal"
UNACK = "active_unacknowledged"
ACKED = "active_acknowledged"
RTN_UNACK = "returned_unacknowledged"
# every value of Alarm.effective_state (the alarm-count gauge has one series per state)
EFFECTIVE_STATES = (NORMAL, UNACK, ACKED, RTN_UNACK, "shelved", "out_of_service")
PRIORITIES = ("low", "medium", "high", "urgent")
COMMANDS = ("ack", "shelve", "unshelve", "out_of_service", "return_to_service")


@dataclass
class AlarmPolicy:
    """Operator-facing rules shared by every alarm of a gateway."""

    max_shelve_s: float = 8 * 3600.0
    max_out_of_service_s: float = 8 * 3600.0  # out of service returns by itself after this
    chatter_count: int = 5       # this many raises ...
    chatter_window_s: float = 600.0  # ... within this source-time span = chattering


@dataclass
class Alarm:
    """One alarm's ISA-18.2 state: condition × acknowledgement, plus shelved / out of service.

    The detection (on/off delay, deadband) stays in :class:`AlarmLogic` so training replays
    and the edge agree; this class only turns its raise/clear transitions and operator commands
    into states and events. Every method returns the events to publish (dicts). Event ids are
    ``<alarm_id>@<source ms>:<event>``: the same data gives the same id, so a redelivered event
    is recognisable as a duplicate.
    """

    alarm_id: str
    model: str
    policy: AlarmPolicy
    state: str = NORMAL
    condition_active: bool = False
    priority: str = "low"
    shelved_until: float | None = None
    out_of_service: bool = False
    out_of_service_until: float | None = None  # None while out of service: set at next tick
    chattering: bool = False
    raise_times: list[float] | None = None
    context: dict | None = None  # last score record: score, threshold, contributions, ts...
    suppressed: int = 0  # events not annunciated (shelved, out of service, chattering)

    @property
    def effective_state(self) -> str:
        if self.out_of_service:
            return "out_of_service"
        if self.shelved_until is not None:
            return "shelved"
        return self.state

    def snapshot(self) -> dict:
        """The retained state message (and what is persisted)."""
        return {"alarm_id": self.alarm_id, "model": self.model, "state": self.effective_state,
                "isa_state": self.state, "condition_active": self.condition_active,
                "priority": self.priority, "shelved_until": self.shelved_until,
                "out_of_service": self.out_of_service,
                "out_of_service_until": self.out_of_service_until, "chattering": self.chattering,
                "raise_times": self.raise_times or [], "context": self.context}

    @classmethod
    def restore(cls, data: dict, policy: AlarmPolicy) -> Alarm:
        return cls(alarm_id=data["alarm_id"], model=data["model"], policy=policy,
                   state=data["isa_state"], condition_active=data["condition_active"],
                   priority=data["priority"], shelved_until=data["shelved_until"],
                   out_of_service=data["out_of_service"],
                   out_of_service_until=data.get("out_of_service_until"),  # older snapshots
                   chattering=data["chattering"],
                   raise_times=list(data["raise_times"]), context=data["context"])

    # -- process side ---------------------------------------------------------------------
    def on_condition(self, transition: Transition, record: dict, source_s: float,
                     now_s: float) -> list[dict]:
        """A raise or clear from the detection logic (``record`` = the window's result)."""
        self.context = _context(record)
        chattering_before = self.chattering
        if transition == "raise":
            self.condition_active = True
            self.priority = record.get("priority", self.priority)
            self._note_raise(source_s)
            self.state = UNACK
        else:
            self.condition_active = False
            self.state = RTN_UNACK if self.state == UNACK else NORMAL
        starts_chatter = self.chattering and not chattering_before
        return self._emit(transition, source_s, now_s, force=starts_chatter)

    def on_score(self, record: dict, priority: str, source_s: float, now_s: float) -> list[dict]:
        """A window while active: an ``update`` event when the priority escalates (a priority
        that falls back is not announced: that would flood operators near a boundary)."""
        if not self.condition_active or PRIORITIES.index(priority) <= PRIORITIES.index(
                self.priority):
            return []
        self.priority = priority
        self.context = _context(record)
        return self._emit("update", source_s, now_s)

    def _note_raise(self, source_s: float) -> None:
        window = self.policy.chatter_window_s
        self.raise_times = [t for t in (self.raise_times or []) if source_s - t < window]
        self.raise_times.append(source_s)
        self.chattering = len(self.raise_times) >= self.policy.chatter_count

    # -- operator side ----------------------------------------------------------------------
    def command(self, verb: str, by: str, now_s: float,
                duration_s: float | None = None) -> tuple[bool, str, list[dict]]:
        """Apply an operator command; returns (accepted, reason, events)."""
        if verb == "ack":
            if self.state == UNACK:
                self.state = ACKED
            elif self.state == RTN_UNACK:
                self.state = NORMAL
            else:
                return False, f"nothing to acknowledge (state {self.state})", []
        elif verb == "shelve":
            if self.out_of_service:
                return False, "alarm is out of service", []
            limit = self.policy.max_shelve_s
            duration = limit if duration_s is None else duration_s
            if not 0 < duration <= limit:
                return False, f"shelve duration must be in (0, {limit:g}] s", []
            self.shelved_until = now_s + duration
        elif verb == "unshelve":
            if self.shelved_until is None:
                return False, "alarm is not shelved", []
            self.shelved_until = None
            self._reannunciate()
        elif verb == "out_of_service":
            if self.out_of_service:
                return False, "alarm is already out of service", []
            limit = self.policy.max_out_of_service_s
            if duration_s is not None and not duration_s > 0:
                return False, "out_of_service duration must be > 0 s", []
            if duration_s is None:
                reason = f"out of service for {limit:g} s (the maximum; no duration given)"
            elif duration_s > limit:
                reason = f"out of service for {limit:g} s (capped: {duration_s:g} s asked)"
            else:
                reason = f"out of service for {duration_s:g} s"
            duration = limit if duration_s is None else min(duration_s, limit)
            self.out_of_service, self.shelved_until = True, None
            self.out_of_service_until = now_s + duration
            return True, reason, self._emit(verb, now_s, now_s, by=by or "unknown")
        elif verb == "return_to_service":
            if not self.out_of_service:
                return False, "alarm is in service", []
            self.out_of_service, self.out_of_service_until = False, None
            self._reannunciate()
        else:
            return False, f"unknown command {verb!r}", []
        return True, "accepted", self._emit(verb, now_s, now_s, by=by or "unknown")

    def tick(self, now_s: float) -> list[dict]:
        """Time-driven changes: a shelve or an out of service that reached its time ends (an
        out of service restored from a snapshot without an end gets the maximum from now)."""
        if self.out_of_service:
            if self.out_of_service_until is None:
                self.out_of_service_until = now_s + self.policy.max_out_of_service_s
            elif now_s >= self.out_of_service_until:
                self.out_of_service, self.out_of_service_until = False, None
                self._reannunciate()
                return self._emit("return_to_service", now_s, now_s, by="out-of-service-timer")
        if self.shelved_until is not None and now_s >= self.shelved_until:
            self.shelved_until = None
            self._reannunciate()
            return self._emit("unshelve", now_s, now_s, by="shelve-timer")
        return []

    def _reannunciate(self) -> None:
        """Back from shelved / out of service: an active condition needs an acknowledgement."""
        self.state = UNACK if self.condition_active else NORMAL

    def _emit(self, event: str, source_s: float, now_s: float, by: str = "",
              force: bool = False) -> list[dict]:
        hidden = (self.out_of_service or self.shelved_until is not None) and not by
        chatter = self.chattering and event in ("raise", "clear", "update") and not force
        if hidden or chatter:
            self.suppressed += 1
            return []
        body = {"event_id": f"{self.alarm_id}@{round(source_s * 1000)}:{event}",
                "alarm_id": self.alarm_id, "event": event, "state": self.effective_state,
                "priority": self.priority, "condition_active": self.condition_active,
                "chattering": self.chattering, "source_ts": iso_ms(source_s),
                "processed_at": iso_ms(now_s)}
        if by:
            body["by"] = by
        return [(self.context or {}) | body]


def _context(record: dict) -> dict:
    keys = ("model", "version", "quantization", "ts", "score", "threshold", "contributions",
            "source", "camera", "nok_rate", "limit", "window_parts", "advisory", "drift")
    return {k: record[k] for k in keys if k in record}
