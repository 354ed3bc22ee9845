"""Progress bars: drawn on a terminal, silent when stderr is not one (logs, CI, pipes)."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import numpy as np

from tests.daemon_support import ROOT
from training.progress import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_only_on_a_terminal():
    quiet, tty = io.StringIO(), Terminal()
    assert list(progress(range(5), "work", stream=quiet)) == list(range(5))
    assert quiet.getvalue() == ""
    assert list(progress(range(5), "work", stream=tty)) == list(range(5))
    assert "work:" in tty.getvalue() and "/5 [" in tty.getvalue()


def test_epoch_bar_of_a_fit_only_on_a_terminal(monkeypatch):
    import keras

    from training.budget import EpochBar

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    x = np.zeros((8, 3), "float32")
    quiet, tty = io.StringIO(), Terminal()
    for stream in (quiet, tty):
        monkeypatch.setattr(sys, "stderr", stream)  # tqdm's default file, read at start
        model.fit(x, x[:, :1], epochs=3, verbose=0, callbacks=[EpochBar("tiny fit")])
    monkeypatch.undo()
    assert quiet.getvalue() == ""
    assert "tiny fit:" in tty.getvalue() and "/3 [" in tty.getvalue()


def replay(csv: Path, port: int, stderr) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "procedge", "replay", str(csv), "--port",
                           str(port), "--uns", "t/s/a/l"], stdout=subprocess.PIPE,
                          stderr=stderr, env=env, cwd=ROOT, timeout=120)


def test_replay_output_has_no_bar_off_a_terminal(broker, tmp_path: Path):
    """`procedge replay` with stderr to a pipe: only its summary line, no bar; with stderr on
    a pseudo-terminal the bar is drawn (so the first check is not vacuous)."""
    rows = ["timestamp,level,temperature"] + [
        f"2026-11-22T10:{i // 60:02d}:{i % 60:02d}Z,{1 + i * 0.01:.2f},{20 + i * 0.1:.1f}"
        for i in range(600)]
    csv = tmp_path / "export.csv"
    csv.write_text("\n".join(rows) + "\n")
    piped = replay(csv, broker.port, subprocess.PIPE)
    assert piped.returncode == 0, piped.stderr
    assert b"replayed 1200 samples of 2 tags" in piped.stdout
    assert b"publishing" not in piped.stderr and b"\r" not in piped.stderr, piped.stderr[-300:]
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 0x0 else
    seen: list[bytes] = []

    def read_terminal() -> None:  # while the child runs: a pty's buffer is small
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # every writer closed its end
                return
            if not chunk:
                return
            seen.append(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        on_tty = replay(csv, broker.port, follower)
    finally:
        os.close(follower)
    reader.join(timeout=10)
    os.close(leader)
    assert on_tty.returncode == 0
    drawn = b"".join(seen)
    assert b"publishing:" in drawn and b"row" in drawn, drawn[-300:]
