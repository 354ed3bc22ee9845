"""QAT and pruning (tensorflow-model-optimization), each run in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from converters.tflite import ConversionError, import_root


def run_tfmot(keras_path: Path, representative: Path, out_dir: Path, qat: bool = False,
              sparsity: float | None = None, timeout_s: float = 900) -> dict:
    """QAT → ``out_dir/int8.tflite``; pruning → ``out_dir/pruned.keras``. Returns the info."""
    if not qat and not sparsity:
        raise ValueError("choose qat or a sparsity")
    if sparsity is not None and not 0 < sparsity < 1:
        raise ConversionError(f"--prune {sparsity}: sparsity must be between 0 and 1")
    cmd = [sys.executable, "-m", "converters.tfmot_worker", str(keras_path), str(representative),
           str(out_dir)] + (["--qat"] if qat else ["--prune", str(sparsity)])
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": import_root(),
                        "TF_USE_LEGACY_KERAS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        what = "QAT" if qat else f"pruning to {sparsity}"
        raise ConversionError(f"{what} of {keras_path} failed (exit {proc.returncode}): {tail}")
    return json.loads(lines[-1])
