"""glibc malloc arenas capped before the daemon's threads start (edge_runtime/allocator.py)."""

from __future__ import annotations

import platform
from unittest import mock

import pytest

from edge_runtime import allocator
from edge_runtime.daemon import EdgeDaemon


class FakeLibc:
    def __init__(self, result: int = 1):
        self.calls: list[tuple[int, int]] = []
        self.result = result

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.result


def test_caps_the_arenas_at_two():
    libc = FakeLibc()
    assert allocator.limit_arenas(environ={}, libc=libc) is True
    assert libc.calls == [(allocator.M_ARENA_MAX, 2)]


def test_the_operators_malloc_arena_max_wins():
    libc = FakeLibc()
    assert allocator.limit_arenas(environ={"MALLOC_ARENA_MAX": "4"}, libc=libc) is False
    assert libc.calls == []


def test_not_glibc_or_refused_is_no_error():
    assert allocator.limit_arenas(environ={}, libc=None) is False
    refused = FakeLibc(result=0)
    assert allocator.limit_arenas(environ={}, libc=refused) is False
    assert refused.calls == [(allocator.M_ARENA_MAX, 2)]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_is_found_here():
    assert allocator._glibc() is not None


def test_the_daemon_caps_the_arenas_before_any_thread_starts():
    order: list[str] = []
    daemon = mock.MagicMock()
    daemon.session.connect.side_effect = lambda: order.append("connect")
    daemon.acker.start.side_effect = lambda: order.append("acker")
    daemon.metrics.serve.side_effect = lambda *a, **k: order.append("http")
    with mock.patch("edge_runtime.daemon.limit_arenas",
                    side_effect=lambda: order.append("arenas")):
        EdgeDaemon.start(daemon)
    assert order[0] == "arenas" and {"connect", "acker", "http"} <= set(order)
