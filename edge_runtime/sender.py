"""Outbox → broker: publish rows in order, a bounded number in flight, delete on PUBACK.

paho's 16-bit packet ids allow about 65k unacknowledged QoS 1 publishes; beyond, publish()
fails with "queue full" even with an unlimited queue, so the window is bounded (``max_inflight``)
and every ``rc`` is checked. PUBACK ids come from paho's network thread through a queue; the
in-flight map is touched under one lock, by this thread or by the worker's :meth:`publish_now`
(the worker publishes the rows it just committed itself: a hand-off to this thread was one
more wait for the GIL on every alarm's path). A publish queued while offline stays with paho, which
sends it after the reconnect (``wait_for_publish()`` would raise for it: never used here).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from edge_runtime.config import OutboxConfig
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.mqtt_client import BufferedClient
from edge_runtime.outbox import Outbox

log = logging.getLogger("procedge.edge")


class OutboxSender:
    def __init__(self, client: BufferedClient, outbox: Outbox, config: OutboxConfig,
                 metrics: DaemonMetrics):
        self.client, self.outbox, self.config, self.metrics = client, outbox, config, metrics
        self.wake = threading.Event()  # set when rows or PUBACKs wait
        self._rows_ready = threading.Event()  # set when new rows wait: publish them at once
        self.done = threading.Event()  # set to end the thread
        self._acks: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self._inflight: dict[int, tuple[int, float]] = {}  # mid -> (outbox row, sent at)
        self._last_sent_row = 0
        self._lock = threading.Lock()  # the in-flight map and the send position
        self._thread = threading.Thread(target=self._run, name="procedge-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self.done.set()
        self._thread.join(timeout=timeout_s)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def notify_rows(self) -> None:
        """New rows are committed: publish them now (an alarm's latency runs through here)."""
        self._rows_ready.set()
        self.wake.set()

    def publish_now(self) -> None:
        """(worker) Publish the rows just committed, from the calling thread; when this
        sender's thread is busy with the window, it publishes them instead."""
        if not self._lock.acquire(blocking=False):
            self.notify_rows()
            return
        try:
            if self.client.is_connected():
                self._fill_window(self.config.late_after_s)
        except Exception:
            log.exception("sender error")
        finally:
            self._lock.release()

    def on_publish(self, client, userdata, mid, reason_code=None, properties=None) -> None:
        """paho callback (network thread): hand the id over, nothing else."""
        self._acks.put((mid, reason_code))
        if not self.wake.is_set():  # Event.set takes a Condition: skip it when already set
            self.wake.set()

    def _run(self) -> None:
        late_after = self.config.late_after_s
        while not self.done.is_set():
            self.wake.wait(timeout=0.2)
            if not self._rows_ready.is_set():
                time.sleep(0.001)  # only PUBACKs woke us: let a burst gather into one delete
            self._rows_ready.clear()
            self.wake.clear()
            try:
                with self._lock:
                    self._settle_acks()
                    if self.client.is_connected():
                        self._resend_stale()
                        self._fill_window(late_after)
                self.metrics.outbox_inflight.set(len(self._inflight))
            except Exception:
                log.exception("sender error")
                time.sleep(0.5)

    def _settle_acks(self) -> None:
        done = []
        while True:
            try:
                mid, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            entry = self._inflight.pop(mid, None)
            if entry is None:
                continue  # a status publish, not an outbox row
            if reason is not None and getattr(reason, "is_failure", False):
                log.error("broker refused a publish (%s); dropping it", reason)
                self.metrics.rejected.labels(reason="publish_refused").inc()
            done.append(entry[0])
        if done:
            self.outbox.remove(done)
            self.metrics.acked.inc(len(done))

    def _resend_stale(self) -> None:
        """A publish without PUBACK for too long (lost session): send it again, same id."""
        limit = time.monotonic() - self.config.resend_after_s
        stale = [mid for mid, (_, sent) in self._inflight.items() if sent < limit]
        if stale:
            rows = [self._inflight.pop(mid)[0] for mid in stale]
            self._last_sent_row = min(self._last_sent_row, min(rows) - 1)
            log.warning("%d publish(es) unacknowledged for %.0f s: sending again", len(stale),
                        self.config.resend_after_s)

    def _fill_window(self, late_after: float) -> None:
        room = self.config.max_inflight - len(self._inflight)
        if room <= 0:
            return
        sending = {row for row, _ in self._inflight.values()}
        now = time.time()
        with self.client.one_wakeup():  # paho's thread wakes once, for all of them
            for msg in self.outbox.peek(self._last_sent_row, room):
                if msg.row in sending:
                    self._last_sent_row = msg.row
                    continue
                info = self.client.publish(msg.topic, msg.for_sending(now, late_after),
                                           qos=msg.qos, retain=msg.retain)
                if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                    log.warning("publish not queued (%s); will retry",
                                mqtt.error_string(info.rc))
                    return  # keep order: retry from this row later
                self._inflight[info.mid] = (msg.row, time.monotonic())
                self._last_sent_row = msg.row
                if info.rc == mqtt.MQTT_ERR_NO_CONN:
                    return  # paho keeps it and sends it after the reconnect
