"""Keras → LiteRT flatbuffers, builtin ops only, conversions in a child process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from converters.ops import input_batch, model_ops, non_builtin_ops
from converters.worker import BATCHES, DEFAULT_BATCH
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
    cmd = [sys.executable, "-m", "converters.worker", str(keras_path), str(out_dir),
           ",".join(modes)]
    if representative is not None:
        cmd.append(str(representative))
    if int8_io:
        cmd.append("--int8-io")
    cmd += ["--route", route, "--batch", batch]
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": import_root()}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        stdout, stderr, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        stdout, stderr, code = _text(exc.stdout), _text(exc.stderr), None
    results = {}
    for line in stdout.splitlines():
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


def _text(data) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def import_root() -> str:
    root = str(Path(__file__).resolve().parent.parent)
    return os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
