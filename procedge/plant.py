"""``procedge simulate --plant batch_reactor``: a batch reactor on MQTT, the plant side of a
closed loop through the broker (docs/control_edge.md).

Every control period it publishes the environment's ``measured_tags()`` (noise and dead time
included) as ``{"v", "ts"}`` on the UNS raw topics the daemon reads, waits (within the
period) for a set-point on the write topic, applies it — or, when none came in time, keeps
the set-point it has, as a real controller would — and steps the environment. At the end it
prints the batch's yield. ``--speed N`` runs N× faster than real time (a period lasts
``period_s / N`` of wall time); ``--stale TAG:FROM:TO`` stops publishing a tag for steps
FROM..TO-1 (a sensor that went silent: the gateway's watchdog must hold or fall back).

A batch's stamps start at ``--start`` (default now); faster than real time they run ahead of
the clock, so a second batch against the same gateway must start after the first one's last
stamp (printed at the end): the gateway refuses samples older than what it has decided.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import paho.mqtt.client as mqtt

from edge_runtime.payloads import iso_ms, parse_timestamp


@dataclass(frozen=True)
class StaleTag:
    tag: str
    first: int
    stop: int

    @classmethod
    def parse(cls, text: str) -> StaleTag:
        try:
            tag, first, stop = text.split(":")
            return cls(tag, int(first), int(stop))
        except ValueError as exc:
            raise ValueError(f"--stale {text!r}: expected TAG:FROM_STEP:TO_STEP") from exc


@dataclass
class BatchResult:
    steps: int
    yield_: float
    setpoints_received: int  # steps whose set-point came in time
    held: int  # steps that kept the previous set-point
    stamps: list[float] = field(default_factory=list)


class SetpointInbox:
    """The set-points written to the plant, by the period they are stamped for (paho's thread
    writes them). A set-point counts only for its own period: one stamped for another (a
    previous batch, a watchdog ahead of the plant's clock) is never applied."""

    KEEP = 1000  # periods remembered

    def __init__(self):
        self._cond = threading.Condition()
        self._by_stamp: dict[int, float] = {}
        self.rejected = 0

    def on_message(self, client, userdata, message) -> None:
        try:
            body = json.loads(message.payload)
            value, stamp = float(body["v"]), parse_timestamp(body["ts"])
        except (ValueError, KeyError, TypeError):
            self.rejected += 1
            return
        with self._cond:
            self._by_stamp[round(stamp * 1000)] = value
            if len(self._by_stamp) > self.KEEP:
                del self._by_stamp[min(self._by_stamp)]
            self._cond.notify_all()

    def wait_for(self, stamp: float, timeout_s: float) -> float | None:
        """The set-point for period ``stamp``, or None after ``timeout_s``."""
        key = round(stamp * 1000)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while key not in self._by_stamp:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self._by_stamp[key]


def run_batch(client: mqtt.Client, env, uns: str, write_topic: str, speed: float,
              seed: int | None = None, stale: tuple[StaleTag, ...] = (),
              raw_topic: str = "{uns}/raw/{tag}", start_s: float | None = None,
              log=print) -> BatchResult:
    """One batch of ``env`` (a Gymnasium environment of training.control.envs) driven by the
    set-points arriving on ``write_topic``; ``client`` is connected."""
    inbox = SetpointInbox()
    subscribed = threading.Event()
    client.on_message = inbox.on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.subscribe(write_topic, qos=1)
    if not subscribed.wait(10):
        raise RuntimeError(f"no SUBACK for {write_topic} within 10 s")
    u = env.unwrapped
    period, spec = float(u.period_s), u.action_spec
    wall_period = period / speed
    start = time.time() if start_s is None else start_s
    start -= start % period
    env.reset(seed=seed)
    setpoint = spec.to_setpoint(0.0)  # what the plant holds before the first write
    result = BatchResult(0, float("nan"), 0, 0)
    info: dict = {}
    done, k = False, 0
    begin = time.monotonic()
    while not done:
        stamp = start + k * period
        silent = {s.tag for s in stale if s.first <= k < s.stop}
        for tag, value in u.measured_tags().items():
            if tag not in silent:
                client.publish(raw_topic.format(uns=uns, tag=tag),
                               json.dumps({"v": round(float(value), 6), "ts": iso_ms(stamp)}),
                               qos=1)
        end = begin + (k + 1) * wall_period
        got = inbox.wait_for(stamp, max(end - time.monotonic(), 0.0))
        if got is None:
            result.held += 1
        else:
            setpoint, result.setpoints_received = got, result.setpoints_received + 1
        result.stamps.append(stamp)
        action = min(max(float(spec.to_action(setpoint)), -1.0), 1.0)
        _, _, terminated, truncated, info = env.step(np.array([action], dtype=np.float32))
        done = terminated or truncated
        k += 1
        if time.monotonic() < end:
            time.sleep(end - time.monotonic())
    result.steps = k
    result.yield_ = float(info.get("yield", info.get("x2", float("nan"))))
    log(f"batch done: {k} steps, yield {result.yield_:.4f}, set-points received "
        f"{result.setpoints_received}, held {result.held}; stamps {iso_ms(result.stamps[0])} "
        f"to {iso_ms(result.stamps[-1])}")
    return result
