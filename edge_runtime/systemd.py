"""systemd's service notification protocol (sd_notify(3)), in a few lines and no dependency.

Under a ``Type=notify`` unit systemd names a datagram socket in ``$NOTIFY_SOCKET``; the daemon
sends ``READY=1`` once it is connected and subscribed, ``WATCHDOG=1`` every half
``WatchdogSec`` while its worker threads are alive (a hung or dead worker stops the pings and
systemd restarts the service), and ``STOPPING=1`` on SIGTERM. Without ``$NOTIFY_SOCKET`` (a
daemon started by hand, in a container, by a ``Type=simple`` unit) nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("procedge.edge")


class Notifier:
    def __init__(self, address: str | None, watchdog_s: float | None = None):
        self.address = address
        self.watchdog_s = watchdog_s
        self._warned = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """``$NOTIFY_SOCKET``; the watchdog period from ``$WATCHDOG_USEC`` when
        ``$WATCHDOG_PID`` is unset or this process (sd_watchdog_enabled(3))."""
        usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        watchdog = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and mine else None
        return cls(environ.get("NOTIFY_SOCKET") or None, watchdog)

    def send(self, *fields: str) -> bool:
        """One notification (``"READY=1"``, ``"STATUS=..."``); False when there is no socket
        or it cannot be reached (logged once: systemd then handles the unit by its timeouts)."""
        if not self.address:
            return False
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(fields).encode(), address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("systemd notification to %s failed: %s", self.address, exc)
            return False
        return True

    def start(self, ready: Callable[[], bool], alive: Callable[[], bool],
              stop: threading.Event) -> threading.Thread | None:
        """A thread that sends READY=1 once ``ready()`` and WATCHDOG=1 while ``alive()``, until
        ``stop`` is set; None without ``$NOTIFY_SOCKET``."""
        if not self.address:
            return None
        thread = threading.Thread(target=self._loop, args=(ready, alive, stop),
                                  name="procedge-sdnotify", daemon=True)
        thread.start()
        return thread

    def _loop(self, ready: Callable[[], bool], alive: Callable[[], bool],
              stop: threading.Event) -> None:
        period = self.watchdog_s / 2 if self.watchdog_s else None
        tick = min(period or 0.25, 0.25)
        is_ready, last_ping = False, float("-inf")
        while not stop.is_set():
            if not is_ready and ready():
                is_ready = self.send("READY=1", "STATUS=connected and subscribed")
            now = time.monotonic()
            if period is not None and now - last_ping >= period and alive():
                self.send("WATCHDOG=1")
                last_ping = now
            stop.wait(tick)
