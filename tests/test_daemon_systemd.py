"""systemd ``Type=notify``: READY=1 once subscribed, WATCHDOG=1 while the worker threads live,
STOPPING=1 on SIGTERM — datagrams on the socket named by $NOTIFY_SOCKET (sd_notify(3))."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from procedge.broker import free_port
from tests.daemon_support import ROOT, edge_config, healthy, write_config


def _listener() -> tuple[socket.socket, str]:
    folder = tempfile.mkdtemp(prefix="sdn-")  # AF_UNIX paths: at most 107 bytes
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    return sock, path


def _receive(sock: socket.socket, until, timeout_s: float) -> list[str]:
    """Datagrams (one notification each, lines = fields) until ``until(received)``."""
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    while not until(got) and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return got


def _fields(got: list[str]) -> list[str]:
    return [f for message in got for f in message.splitlines()]


def test_procedge_run_notifies_systemd_ready_watchdog_and_stopping(tmp_path: Path, broker,
                                                                   bundles):
    port = free_port()
    conf = write_config(tmp_path / "edge.yaml",
                        edge_config(tmp_path, broker.port, bundles, metrics_port=port))
    sock, path = _listener()
    env = os.environ | {"PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": path,
                        "WATCHDOG_USEC": "400000", "WATCHDOG_PID": ""}
    log = (tmp_path / "daemon.log").open("wb")
    daemon = subprocess.Popen([sys.executable, "-m", "procedge", "run", "--config", str(conf)],
                              stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        got = _receive(sock, lambda g: "READY=1" in _fields(g), 120)
        assert "READY=1" in _fields(got), (got, (tmp_path / "daemon.log").read_text()[-2000:])
        assert healthy(port)  # ready means connected and subscribed, threads alive
        # pinged at half WatchdogSec (0.2 s): at least 5 in 2 s
        t0 = time.monotonic()
        pings = _receive(sock, lambda g: _fields(g).count("WATCHDOG=1") >= 5, 10)
        assert _fields(pings).count("WATCHDOG=1") >= 5 and time.monotonic() - t0 < 2.5
        daemon.send_signal(signal.SIGTERM)
        tail = _receive(sock, lambda g: "STOPPING=1" in _fields(g), 30)
        assert "STOPPING=1" in _fields(tail)
        assert daemon.wait(timeout=45) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        sock.close()
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def test_watchdog_pings_stop_when_the_worker_dies():
    """A dead worker thread must let systemd's watchdog restart the daemon."""
    from edge_runtime.systemd import Notifier

    sock, path = _listener()
    try:
        alive, ready, stop = threading.Event(), threading.Event(), threading.Event()
        alive.set()
        notifier = Notifier(path, watchdog_s=0.2)
        thread = notifier.start(ready=ready.is_set, alive=alive.is_set, stop=stop)
        early = _receive(sock, lambda g: _fields(g).count("WATCHDOG=1") >= 2, 5)
        assert "READY=1" not in _fields(early)  # not before the daemon says so
        ready.set()
        assert "READY=1" in _fields(_receive(sock, lambda g: "READY=1" in _fields(g), 5))
        alive.clear()
        time.sleep(0.3)  # a ping decided just before the "death" may still be on its way
        sock.settimeout(0.05)
        while True:  # drain what was sent before the worker "died"
            try:
                sock.recv(4096)
            except TimeoutError:
                break
        assert _receive(sock, lambda g: False, 0.6) == []  # three periods: silence
        stop.set()
        thread.join(timeout=5)
        assert not thread.is_alive()
    finally:
        sock.close()
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def test_notify_socket_environment():
    from edge_runtime.systemd import Notifier

    assert Notifier.from_env({}).address is None
    assert Notifier.from_env({}).send("READY=1") is False  # no systemd: nothing, no error
    mine = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000"}
    assert Notifier.from_env(mine).watchdog_s == 30.0
    assert Notifier.from_env(mine | {"WATCHDOG_PID": str(os.getpid())}).watchdog_s == 30.0
    assert Notifier.from_env(mine | {"WATCHDOG_PID": "1"}).watchdog_s is None  # not for us
    assert Notifier.from_env({"NOTIFY_SOCKET": "/run/x"}).watchdog_s is None
    # abstract namespace: "@name" is "\0name"
    name = f"procedge-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        assert Notifier.from_env({"NOTIFY_SOCKET": "@" + name}).send("READY=1", "STATUS=up")
        sock.settimeout(5)
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"
    finally:
        sock.close()
