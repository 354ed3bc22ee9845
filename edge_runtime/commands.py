"""Operator commands on ``<cmd>/alarm/<verb>`` (ack, shelve, …), ``<cmd>/model/load`` and
``<cmd>/model/rebaseline`` (commissioning again after maintenance).

Every command gets a reply on the reply topic, accepted or refused with a reason; identities
not in ``commands.allowed`` are refused. Without ``commands.require_signature`` the identity is
what the sender wrote (``by``), so the broker's ACL on ``cmd/#`` is the only real gate; with it,
a command must carry a valid Ed25519 signature of that operator, a fresh ``ts`` and an unused
``nonce`` (:mod:`edge_runtime.command_signing`).
Handled in the worker, first of all inputs, after the batch's windows so far have run: a
command sees the alarms as of its arrival.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from edge_runtime.alarms import COMMANDS, Alarm
from edge_runtime.command_signing import CommandAuthError, CommandVerifier
from edge_runtime.config import CommandConfig
from edge_runtime.inputs import Inbound, InputSource
from edge_runtime.logs import audit
from edge_runtime.outbox import PRIO_STATUS, Message
from edge_runtime.routing import Router, json_message

MAX_COMMAND_BYTES = 4096
KNOWN_COMMANDS = frozenset({"model/load", "model/rebaseline",
                            *(f"alarm/{verb}" for verb in COMMANDS)})
#: ``rebaseline(body, by, out, changed) -> (accepted, reason)``
Rebaseline = Callable[[dict, str, list[Message], set[str]], tuple[bool, str]]


class Commands(InputSource):
    def __init__(self, config: CommandConfig, router: Router,
                 flush: Callable[[list[Message], set[str]], None],
                 load_bundle: Callable[[Path, str], tuple[bool, str]],
                 rebaseline: Rebaseline | None = None):
        """``flush`` runs the windows completed so far; ``load_bundle(path, source)`` queues a
        bundle for the reload thread and says at once ``(accepted, reason)``;
        ``rebaseline`` restarts a model's commissioning (the daemon's)."""
        self.config = config
        self.router = router
        self.flush = flush
        self.load_bundle = load_bundle
        self.rebaseline = rebaseline
        self.prefix = router.topics.get("cmd") + "/"
        self.verifier = (CommandVerifier(config.operator_keys, config.max_clock_skew_s,
                                         config.max_nonces)
                         if config.require_signature else None)

    def subscriptions(self) -> list[tuple[str, int]]:
        return [(self.prefix + "#", 1)]  # never shared: commands address this gateway

    def claims(self, topic: str) -> bool:
        return topic.startswith(self.prefix)

    def handle(self, item: Inbound, out: list[Message], changed: set[str]) -> None:
        """``cmd/alarm/<verb>`` or ``cmd/model/load``; every command gets a reply."""
        self.flush(out, changed)  # a command sees the alarms as of its arrival
        verb_path = item.topic[len(self.prefix):]
        try:
            body = json.loads(item.payload) if len(item.payload) <= MAX_COMMAND_BYTES else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        if not isinstance(body, dict):
            body = {}
        by = item.by or str(body.get("by", ""))
        try:
            if self.verifier is not None:  # the identity is the verified one, never the claim
                by = self.verifier.check(body, time.time())
            accepted, reason = self._apply(verb_path, body, by, out, changed)
        except CommandAuthError as exc:
            self.router.metrics.command_auth_failures.labels(reason=exc.code).inc()
            accepted, reason = False, str(exc)
        known = verb_path in KNOWN_COMMANDS  # a label per unknown topic would grow forever
        self.router.metrics.commands.labels(command=verb_path if known else "unknown",
                                            result="accepted" if accepted else "refused").inc()
        reply = {"request_id": str(body.get("request_id", ""))[:100], "command": verb_path[:100],
                 "accepted": accepted, "reason": reason, "by": by[:100]}
        out.append(json_message(self.router.topics.get("reply"), reply, PRIO_STATUS))
        audit.info("command %s by %r: %s (%s)", verb_path[:100], by[:100],
                 "accepted" if accepted else "refused", reason)

    def _apply(self, verb_path: str, body: dict, by: str, out: list[Message],
               changed: set[str]) -> tuple[bool, str]:
        if by not in self.config.allowed:
            return False, "identity not allowed to command this gateway"
        kind, _, verb = verb_path.partition("/")
        if kind == "model" and verb == "load":
            path = body.get("path")
            if not isinstance(path, str):
                return False, "model/load needs a 'path'"
            return self.load_bundle(Path(path), f"command by {by}")  # queued, coalesced or busy
        if kind == "model" and verb == "rebaseline":
            if self.rebaseline is None:
                return False, "no model of this gateway is commissioned"
            return self.rebaseline(body, by, out, changed)
        if kind != "alarm" or verb not in COMMANDS:
            return False, f"unknown command {verb_path!r}"
        alarm: Alarm | None = self.router.alarms.get(str(body.get("alarm_id", "")))
        if alarm is None:
            return False, "unknown alarm_id"
        duration = body.get("duration_s")
        if duration is not None and (isinstance(duration, bool)
                                     or not isinstance(duration, int | float)):
            return False, "duration_s must be a number"
        accepted, reason, events = alarm.command(verb, by, time.time(), duration)
        if accepted:
            changed.add(alarm.alarm_id)
            out.extend(self.router.alarm_messages(alarm, events))
        return accepted, reason
