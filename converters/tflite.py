"""Keras → LiteRT flatbuffers, builtin ops only, conversions in a child process that stays
between conversions (one TensorFlow start per parent process)."""

from __future__ import annotations

import atexit
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from converters.ops import input_batch, model_ops, non_builtin_ops
from converters.worker import BATCHES, DEFAULT_BATCH, DONE, SERVE
from edge_runtime.contract import MODE_NAMES


class ConversionError(RuntimeError):
    """The model cannot be shipped in this mode; the message says why."""


def convert_many(keras_path: Path, out_dir: Path, modes: tuple[str, ...],
                 representative: Path | None = None, int8_io: bool = False,
                 route: str = "auto", timeout_s: float = 900,
                 batch: str = DEFAULT_BATCH) -> dict[str, dict]:
    """Convert ``modes`` in one child process (one TensorFlow start-up); a mode the child
    did not finish (crash, timeout) is retried alone, so one crash costs only its own mode.
    ``batch``: "one" (fixed batch of one) or "dynamic", for the keras route; recurrent
    routes keep theirs. Returns mode → worker info with ``path``, ``ops`` and ``batch`` (read
    from the file), or with ``error``."""
    bad = [m for m in modes if m not in MODE_NAMES]
    if bad:
        raise ConversionError(f"unknown mode(s) {bad}; choose from {MODE_NAMES}")
    if batch not in BATCHES:
        raise ConversionError(f"unknown batch {batch!r}; choose from {BATCHES}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    options = (representative, int8_io, timeout_s, batch)
    results = _run_worker(keras_path, out_dir, modes, route, *options)
    for mode in modes:
        if mode not in results and len(modes) > 1:
            results |= _run_worker(keras_path, out_dir, (mode,), route, *options)
        if "killed by" in results.get(mode, {}).get("error", "") and route == "auto":
            # A crash on the preferred route (a recurrent loop in int8): the unrolled twin.
            retry = _run_worker(keras_path, out_dir, (mode,), "unroll", *options)
            if "error" not in retry[mode]:
                results[mode] = retry[mode] | {"failed_routes": [results[mode]["error"]]}
    for mode, info in results.items():
        path = out_dir / f"{mode}.tflite"
        if "error" not in info:
            info["path"] = str(path)
            info["ops"] = model_ops(path)
            info["batch"] = input_batch(path)
            flex = non_builtin_ops(path)
            if flex:
                info["error"] = f"needs non-builtin ops {flex}: the gateway cannot run them"
    return {m: results[m] for m in modes}


def convert(keras_path: Path, out_path: Path, mode: str, representative: Path | None = None,
            int8_io: bool = False, timeout_s: float = 900, route: str = "auto",
            batch: str = DEFAULT_BATCH) -> dict:
    """Convert one mode to ``out_path``; raise :class:`ConversionError` naming what failed."""
    work = Path(tempfile.mkdtemp(prefix="procedge-convert-"))
    try:
        info = convert_many(keras_path, work, (mode,), representative, int8_io, route,
                            timeout_s, batch)[mode]
        if "error" in info:
            raise ConversionError(f"{mode} conversion of {keras_path} failed: {info['error']}")
        shutil.move(info["path"], out_path)
        info["path"] = str(out_path)
        return info
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_builtin_ops(tflite_path: Path) -> list[str]:
    """Every op must be a LiteRT builtin: a Flex or custom op would fail on the gateway."""
    bad = non_builtin_ops(tflite_path)
    if bad:
        raise ConversionError(f"{tflite_path} needs non-builtin ops {bad}: not shippable")
    return model_ops(tflite_path)


def _run_worker(keras_path, out_dir, modes, route, representative, int8_io, timeout_s, batch):
    argv = [str(keras_path), str(out_dir), ",".join(modes)]
    if representative is not None:
        argv.append(str(representative))
    if int8_io:
        argv.append("--int8-io")
    argv += ["--route", route, "--batch", batch]
    stdout, stderr, code = CONVERTER.run(argv, timeout_s)
    results = {}
    for line in stdout:
        if line.startswith("{"):
            info = json.loads(line)
            results[info["mode"]] = info
    missing = [m for m in modes if m not in results]
    if missing and len(modes) == 1:
        reason = ("timed out" if code is None else
                  f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}")
        tail = " | ".join(stderr.strip().splitlines()[-4:])
        results[modes[0]] = {"mode": modes[0], "error": f"converter process {reason}: {tail}"}
    return results


class ConverterProcess:
    """The converter child (``python -m converters.worker --serve``), kept between
    conversions: TensorFlow starts once per parent process instead of once per conversion
    (about 6 s of CPU each). A crash or a timeout ends it, that conversion reports what it
    finished (the caller retries the rest alone, as before), and the next conversion starts a
    fresh child; so does every :attr:`max_jobs`-th, which bounds the converter's memory growth.
    The child's environment is the parent's when it starts."""

    def __init__(self, max_jobs: int = 16):
        self.max_jobs = max_jobs
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr_path: Path | None = None
        self._jobs = 0
        self._lock = threading.Lock()

    def run(self, argv: list[str], timeout_s: float) -> tuple[list[str], str, int | None]:
        """One conversion: its stdout lines, its stderr, and 0 when it finished, the child's
        exit code when it died (negative: the signal), None when it timed out."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is not None:
                self.stop()  # died between conversions: this one gets a fresh child
            if self._proc is None:
                self._start()
            start = self._stderr_path.stat().st_size
            try:
                self._proc.stdin.write(json.dumps(argv) + "\n")
                self._proc.stdin.flush()
            except OSError:  # died just now: _collect reads its end and exit code
                pass
            lines, code = self._collect(time.monotonic() + timeout_s)
            with self._stderr_path.open(errors="replace") as err:
                err.seek(start)
                stderr = err.read()
            if code != 0 or self._jobs >= self.max_jobs:
                self.stop()
            return lines, stderr, code

    def _collect(self, deadline: float) -> tuple[list[str], int | None]:
        lines = []
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return lines, None
            if line is None:  # the child's stdout closed: it died
                return lines, self._proc.wait()
            if line.strip() == DONE:
                self._jobs += 1
                return lines, 0
            lines.append(line)

    def _start(self) -> None:
        fd, name = tempfile.mkstemp(prefix="procedge-converter-", suffix=".log")
        os.close(fd)
        self._stderr_path = Path(name)
        env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": import_root()}
        with self._stderr_path.open("ab") as err:  # O_APPEND: the child writes at the end
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "converters.worker", SERVE], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        self._lines = queue.Queue()
        threading.Thread(target=_read_lines, args=(self._proc.stdout, self._lines),
                         daemon=True).start()
        self._jobs = 0

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
        if self._stderr_path is not None:
            self._stderr_path.unlink(missing_ok=True)
            self._stderr_path = None


def _read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


CONVERTER = ConverterProcess()
atexit.register(CONVERTER.stop)


def import_root() -> str:
    root = str(Path(__file__).resolve().parent.parent)
    return os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
