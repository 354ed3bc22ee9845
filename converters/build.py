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
                 budget: float | None = None, allow_offline: bool = False) -> Bundle:
    """Convert ``run_dir``'s model in ``mode``; ship it only if the parity gate passes."""
    import keras

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    draft = json.loads((run_dir / "training.json").read_text())
    refuse_offline_only(draft, allow_offline)
    staging = Path(tempfile.mkdtemp(prefix=f"{draft['name']}-", dir=_ensure(out_dir)))
    try:
        convert(run_dir / "model.keras", staging / MODEL_FILE, mode,
                representative=run_dir / "representative.npz")
        heldout = dict(np.load(run_dir / "heldout.npz"))
        model = keras.models.load_model(run_dir / "model.keras", compile=False)
        spec = ThresholdSpec(**draft["thresholds"]) if draft.get("thresholds") else None
        report = check_parity(model, staging / MODEL_FILE, heldout, draft["task"], spec, budget)
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


class OfflineOnlyError(ValueError):
    """The family needs data a live window does not have; not for deployment."""


def refuse_offline_only(draft: dict, allow_offline: bool) -> None:
    """A family marked offline-only (e.g. BiLSTM) is not bundled unless the user insists."""
    from training.registry import get_family

    family = draft.get("family", "")
    try:
        offline = get_family(family).offline_only
    except KeyError:
        return
    if offline and not allow_offline:
        raise OfflineOnlyError(
            f"model family {family!r} is offline-only (it reads each window backwards, which "
            "a live forecast cannot do): refused for deployment; pass allow_offline=True to "
            "build it for offline evaluation")


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
               budget: float | None = None, allow_offline: bool = False
               ) -> tuple[Bundle, list[str]]:
    """Try each mode in order; return the first bundle that passes and a line per attempt."""
    refuse_offline_only(json.loads((Path(run_dir) / "training.json").read_text()), allow_offline)
    attempts: list[str] = []
    for mode in candidates:
        try:
            bundle = build_bundle(run_dir, out_dir, mode, budget=budget,
                                  allow_offline=allow_offline)
        except ConversionError as exc:
            attempts.append(f"{mode}: rejected — {str(exc).splitlines()[0]}")
            continue
        attempts.append(f"{mode}: passed the parity gate — shipped")
        return bundle, attempts
    raise ConversionError("no mode passed the parity gate:\n  " + "\n  ".join(attempts))
