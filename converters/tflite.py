"""Keras → LiteRT flatbuffer, builtin ops only, each conversion in a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from edge_runtime.interpreter import EdgeModel

MODES = ("fp32", "fp16", "dynamic", "int8", "int16x8")


class ConversionError(RuntimeError):
    """The model cannot be shipped in this mode; the message says why."""


def convert(keras_path: Path, out_path: Path, mode: str, representative: Path | None = None,
            int8_io: bool = False, timeout_s: float = 600) -> Path:
    """Convert in a child process, then refuse the result unless every op is builtin."""
    if mode not in MODES:
        raise ConversionError(f"unknown mode {mode!r}; choose from {MODES}")
    cmd = [sys.executable, "-m", "converters.worker", str(keras_path), str(out_path), mode]
    if representative is not None:
        cmd.append(str(representative))
    if int8_io:
        cmd.append("--int8-io")
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": _import_root()}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    if proc.returncode != 0:
        reason = (f"killed by {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
                  else f"exit {proc.returncode}")
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise ConversionError(f"{mode} conversion of {keras_path} failed ({reason}):\n{tail}")
    check_builtin_ops(out_path)
    return out_path


def check_builtin_ops(tflite_path: Path) -> set[str]:
    """Every op must be a LiteRT builtin: a Flex or custom op would fail on the gateway."""
    try:
        names = EdgeModel(tflite_path).op_names()
    except (RuntimeError, ValueError) as exc:  # the interpreter refuses unresolved ops
        raise ConversionError(f"{tflite_path} does not load in LiteRT: {exc}") from exc
    bad = sorted(n for n in names if n.startswith("Flex") or n == "CUSTOM" or n.startswith("tf."))
    if bad:
        raise ConversionError(f"{tflite_path} needs non-builtin ops {bad}: not shippable")
    return names


def _import_root() -> str:
    root = str(Path(__file__).resolve().parent.parent)
    return os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
