"""Group commit: make the worker's committed batches durable, then acknowledge their inputs.

Why a thread of its own: an input may be acknowledged to the broker (which then forgets it)
only once the results it led to are on disk, and with ``outbox.synchronous: FULL`` that takes
an fsync (0.5–4 ms on a gateway's disk). Waiting for it in the worker delayed every sample that
arrived meanwhile. The worker now commits, lets the sender publish, hands the batch's inputs
over and goes on; here one fsync covers every batch queued while the previous one ran, and the
inputs are acknowledged in the order they were processed.

Bounded without a limit of its own: unacknowledged inputs count against the broker's in-flight
window for the daemon (``max_inflight_messages``), so a stalled disk stops new deliveries
instead of growing this queue.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from edge_runtime.outbox import Outbox

log = logging.getLogger(__name__)


class InputAcker:
    def __init__(self, outboxes: Sequence[Outbox], ack: Callable[[list[Any]], None]):
        """``ack`` acknowledges inputs, in order: those of every batch that one sync covered."""
        self.outboxes = list(outboxes)
        self._ack = ack
        self._batches: queue.SimpleQueue[list[Any] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="procedge-acker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, inputs: list[Any]) -> None:
        """Acknowledge ``inputs`` once every commit made before this call is durable."""
        self._batches.put(inputs)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Acknowledge what was submitted, then end."""
        self._batches.put(None)
        self._thread.join(timeout=timeout_s)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while True:
            batches = [self._batches.get()]
            while not self._batches.empty():
                batches.append(self._batches.get())
            try:
                for outbox in self.outboxes:
                    outbox.sync()  # one fsync for all of them
                self._ack([item for inputs in batches if inputs for item in inputs])
            except Exception:  # an input left unacknowledged is redelivered: never fatal
                log.exception("could not acknowledge %d batch(es)", len(batches))
            if None in batches:
                return
