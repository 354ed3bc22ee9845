"""Free heap memory handed back after bursts (edge_runtime/allocator.py): when the worker trims."""

from __future__ import annotations

import platform
import queue
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from edge_runtime.allocator import Trimmer, glibc
from edge_runtime.daemon import EdgeDaemon


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def trimmer(clock: Clock) -> tuple[Trimmer, list[float]]:
    done: list[float] = []
    return Trimmer(lambda: done.append(clock.now), clock, idle_s=10, max_s=60), done


def test_trims_once_idle_after_work_at_most_every_idle_period():
    clock = Clock()
    t, done = trimmer(clock)
    clock.now = 11
    assert not t.after_batch(idle=True)  # idle, but no work since the start: nothing to give
    t.after_batch(idle=False)
    clock.now = 12
    assert t.after_batch(idle=True) and done == [12]
    t.after_batch(idle=False)
    clock.now = 15
    assert not t.after_batch(idle=True)  # 3 s after the last trim
    clock.now = 22
    assert t.after_batch(idle=True) and done == [12, 22]
    clock.now = 40
    assert not t.after_batch(idle=True)  # idle ever since: no work, no trim


def test_trims_every_max_period_while_never_idle():
    clock = Clock()
    t, done = trimmer(clock)
    for step in range(1, 200):  # a batch every second, never idle, for 199 s
        clock.now = float(step)
        t.after_batch(idle=False)
    assert done == [60, 120, 180]


def test_nothing_to_trim_without_glibc():
    t = Trimmer(None)
    assert not t.after_batch(idle=False) and not t.after_batch(idle=True)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_trim_runs_here():
    libc = glibc()
    assert libc is not None
    assert libc.malloc_trim(0) in (0, 1)  # 1: memory was released, 0: none to release


class Inbox:
    """The worker's inbox: the given items, queue.Empty for each ``...``."""

    def __init__(self, items: list) -> None:
        self.items = list(items)

    def get(self, timeout: float | None = None):
        item = self.items.pop(0)
        if item is ...:
            raise queue.Empty
        return item

    def get_nowait(self):
        if not self.items or self.items[0] is ...:
            raise queue.Empty
        return self.items.pop(0)


def test_the_worker_tells_the_trimmer_after_every_batch_whether_it_idled():
    daemon = mock.MagicMock()
    daemon.inbox = Inbox(["a message", ..., None])
    daemon._tick_s = 0.01
    EdgeDaemon._work(daemon)
    assert [c.kwargs for c in daemon._trimmer.after_batch.call_args_list] == [
        {"idle": False}, {"idle": True}]  # a batch, then a wait that timed out (and the stop)


def test_freeze_startup_takes_the_live_heap_out_of_the_collectors_scans():
    """In a fresh interpreter (freezing would reach into pytest's own heap here): after the
    daemon's imports, the survivors are frozen and a full collection no longer visits them."""
    code = ("import gc\n"
            "import edge_runtime.daemon\n"
            "from edge_runtime.allocator import freeze_startup\n"
            "before = len(gc.get_objects())\n"
            "freeze_startup()\n"
            "print(before, gc.get_freeze_count(), len(gc.get_objects()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    before, frozen, after = map(int, out.stdout.split())
    assert frozen > 0.9 * before > 10_000
    assert after < 0.01 * before
