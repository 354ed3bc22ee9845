"""Run directory → verified bundle: convert, prove parity, seal with hashes."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from converters.parity import check_parity
from converters.tflite import ConversionError, convert
from edge_runtime.bundle import MODEL_FILE, Bundle, Manifest, ThresholdSpec, write_bundle


def build_bundle(run_dir: Path, out_dir: Path, mode: str = "int8", version: str | None = None,
                 budget: float | None = None) -> Bundle:
    """Convert ``run_dir``'s model in ``mode``; ship it only if the parity gate passes."""
    import keras

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    draft = json.loads((run_dir / "training.json").read_text())
    staging = Path(tempfile.mkdtemp(prefix=f"{draft['name']}-", dir=_ensure(out_dir)))
    try:
        convert(run_dir / "model.keras", staging / MODEL_FILE, mode,
                representative=run_dir / "representative.npz")
        heldout = dict(np.load(run_dir / "heldout.npz"))
        model = keras.models.load_model(run_dir / "model.keras", compile=False)
        spec = ThresholdSpec(**draft["thresholds"]) if draft.get("thresholds") else None
        if draft["task"] == "image":
            from converters.image_parity import check_image_parity

            report = check_image_parity(model, staging / MODEL_FILE, heldout, draft["image"],
                                        budget)
        else:
            report = check_parity(model, staging / MODEL_FILE, heldout, draft["task"], spec,
                                  budget)
        (staging / "parity.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n")
        if not report.passed:
            raise ConversionError(f"{mode} fails the parity gate: {'; '.join(report.reasons)}")
        metrics = {"training": draft.pop("metrics")["keras"], "keras": report.keras,
                   "edge": report.edge}
        manifest = Manifest(**draft, version=version or _version(run_dir), quantization=mode,
                            metrics=metrics)
        write_bundle(staging, manifest)
        final = out_dir / f"{draft['name']}-{mode}"
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        return Bundle.load(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _version(run_dir: Path) -> str:
    """Version = short hash of the trained weights, so a retrained model is a new version."""
    from edge_runtime.bundle import sha256_file

    return sha256_file(run_dir / "model.keras")[:12]


# Smallest first; the first mode that passes the parity gate ships.
AUTO_ORDER = ("int8", "int16x8", "dynamic", "fp16", "fp32")


def build_auto(run_dir: Path, out_dir: Path, candidates: tuple[str, ...] = AUTO_ORDER,
               budget: float | None = None) -> tuple[Bundle, list[str]]:
    """Try each mode in order; return the first bundle that passes and a line per attempt."""
    attempts: list[str] = []
    for mode in candidates:
        try:
            bundle = build_bundle(run_dir, out_dir, mode, budget=budget)
        except ConversionError as exc:
            attempts.append(f"{mode}: rejected — {str(exc).splitlines()[0]}")
            continue
        attempts.append(f"{mode}: passed the parity gate — shipped")
        return bundle, attempts
    raise ConversionError("no mode passed the parity gate:\n  " + "\n  ".join(attempts))
