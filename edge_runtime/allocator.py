"""glibc's malloc in a long-running daemon: free memory handed back after bursts.

Why: the daemon's Python objects and malloc's bytes in use stay flat over a million messages,
but each burst (a backlog of inputs, a full window of publishes awaiting PUBACK, 64 KiB socket
reads in paho's thread) leaves free memory in glibc's arenas that glibc keeps for later: holes
in the middle of a heap are never returned by ``free``. So the RSS rose by megabytes in steps,
one each time a burst reached a new high-water mark somewhere (bench/HISTORY.md, "daemon
RSS"). ``malloc_trim(0)`` returns the free pages of every arena to the kernel; the worker
calls it when it goes idle after work, and at least every minute while it never does; each
call took 0.45–1.83 ms in the daemon on the bench.

Elsewhere than glibc (musl, macOS) nothing is done.

Python's cyclic collector is the other half: every tenth young collection scans the middle
generation and about every hundredth the whole heap, start-up's objects included (modules,
bundles, the config: tens of thousands, never garbage). :func:`freeze_startup` takes them out of its
reach once the daemon is built, so a full collection scans only what the work made since.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import time
from collections.abc import Callable
from typing import Any

IDLE_TRIM_S = 10.0  # idle after work: trim, at most this often
MAX_TRIM_S = 60.0  # busy without a pause: trim anyway this often


def freeze_startup() -> None:
    """Collect start-up's garbage, then freeze the survivors (``gc.freeze``): the cyclic
    collector no longer scans them (reference counting still frees them). Called once, by the
    process entry points (``procedge run``, a worker process) after the daemon is built."""
    gc.collect()
    gc.freeze()


def glibc() -> Any | None:
    """The C library if it is glibc (it has ``malloc_trim``), else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


class Trimmer:
    """When to hand free heap memory back: the worker calls :meth:`after_batch` after every
    batch (``idle``: it waited for input and none came)."""

    def __init__(self, trim: Callable[[], Any] | None = ..., clock: Callable[[], float] =
                 time.monotonic, idle_s: float = IDLE_TRIM_S, max_s: float = MAX_TRIM_S):
        if trim is ...:
            libc = glibc()
            trim = (lambda: libc.malloc_trim(0)) if libc is not None else None
        self._trim, self._clock = trim, clock
        self.idle_s, self.max_s = idle_s, max_s
        self._last = clock()
        self._worked = False  # a batch with input since the last trim
        self.trims = 0

    def after_batch(self, idle: bool) -> bool:
        """Trim now if due; returns whether it did."""
        if self._trim is None:
            return False
        if not idle:
            self._worked = True
        since = self._clock() - self._last
        if not (since >= self.max_s or (idle and self._worked and since >= self.idle_s)):
            return False
        self._trim()
        self._last, self._worked = self._clock(), False
        self.trims += 1
        return True
