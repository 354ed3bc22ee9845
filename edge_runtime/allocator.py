"""glibc's malloc in a daemon of several threads: two arenas, so the RSS stays flat.

Why: glibc gives each thread that meets a locked arena an arena of its own (up to 8 per core),
and each arena keeps the free memory of its own high-water mark. The daemon's threads (paho's
network thread, the worker, the sender, the acker, the HTTP scrapes) each allocate in bursts
(64 KiB socket reads, batches of rows, lists of messages), so after every larger backlog some
arena kept a little more: RSS crept up by megabytes over a million messages while Python's
own objects and malloc's in-use bytes stayed flat (bench/HISTORY.md, "daemon RSS"). With the
arenas capped at two, free memory is shared between the threads and reused.

``MALLOC_ARENA_MAX`` in the environment wins (glibc applied it at start; the operator chose);
elsewhere than glibc (musl, macOS) nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("procedge.edge")
M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
ARENAS = 2  # the main arena and one for every other thread (measured: flat, bench/HISTORY.md)


def _glibc() -> Any | None:
    """The C library if it is glibc (it has ``mallopt``), else None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def limit_arenas(arenas: int = ARENAS, environ: Mapping[str, str] = os.environ,
                 libc: Any | None = ...) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` (call before the daemon starts its threads:
    an arena is made when a thread first needs one). Returns whether the cap was set here;
    not when ``MALLOC_ARENA_MAX`` is set or the C library is not glibc."""
    if "MALLOC_ARENA_MAX" in environ:
        return False
    libc = _glibc() if libc is ... else libc
    if libc is None:
        return False
    if libc.mallopt(M_ARENA_MAX, arenas) != 1:  # glibc: 1 on success
        log.warning("mallopt(M_ARENA_MAX, %d) refused: RSS may creep under bursts", arenas)
        return False
    return True
