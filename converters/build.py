"""Run directory → verified bundle: convert the candidate modes, measure each through the LiteRT
interpreter (task metric and latency per window), ship the best one that passes the parity gate.

The bundle carries the evidence: ``parity.json`` (the shipped model vs Keras), and
``conversion.json`` / ``conversion.md`` (every candidate, the choice and why).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.latency import window_latency_ms
from converters.ops import input_batch
from converters.optimize import run_tfmot
from converters.parity import Budgets, check_parity, keras_reference
from converters.tflite import DEFAULT_BATCH, ConversionError, check_builtin_ops, convert_many
from edge_runtime.bundle import MODEL_FILE, Bundle, Manifest, RunRecord, sign_bundle, write_bundle
from edge_runtime.contract import AUTO_ORDER, CALIBRATED_MODES, task_spec
from training.calibration import load_sampling
from training.progress import progress
from training.registry import get_family

LATENCY_SLACK = 0.10  # a smaller model may be up to 10 % slower than the fastest and still win
# … or this much slower in absolute terms: below it two modes differ by timer noise (tiny
# models run in microseconds, and their order flips from run to run), so the smallest ships.
# Kept small: a mode several times slower than the fastest should not win on it (a tiny
# int8 BiLSTM at 0.05 ms beside float at 0.015 ms does not)
LATENCY_FLOOR_MS = 0.01


@dataclass(frozen=True)
class ConvertOptions:
    """Everything ``procedge convert`` decides besides the run and the output folder."""

    candidates: tuple[str, ...] = AUTO_ORDER  # modes to measure; one mode = that mode only
    budgets: Budgets | None = None  # per task; default: edge_runtime.contract.TASKS
    budget: float | None = None  # overrides the run's own task budget
    int8_io: bool = False  # int8/int16x8 with integer input and output
    sign_key: Path | None = None  # Ed25519 private key (PEM): sign the bundle
    version: str | None = None  # default: a short hash of the trained weights
    route: str = "auto"  # recurrent layers: auto, keras, fused or unroll
    keras_path: Path | None = None  # convert this model instead of the run's model.keras
    latency_slack: float = LATENCY_SLACK
    qat: bool = False  # the int8 candidate from quantization-aware fine-tuning
    prune: float | None = None  # prune to this sparsity first, then convert
    allow_offline: bool = False  # bundle an offline-only family (e.g. bilstm)
    batch: str = DEFAULT_BATCH  # "one" (fixed batch of one) or "dynamic"


def build(run_dir: Path, out_dir: Path, options: ConvertOptions | None = None
          ) -> tuple[Bundle, dict]:
    """Convert every candidate, measure, choose, and write ``out_dir/<name>-<mode>``.
    Raises :class:`ConversionError` (and writes nothing) when no candidate passes.
    ``batch``: "one" (default: a fixed batch of one, fewer operators and bytes) or "dynamic",
    for models without recurrent layers; the file's actual batch is recorded per candidate.
    ``prune``: prune to that sparsity first, then convert the pruned model; ``qat``: the int8
    candidate comes from quantization-aware fine-tuning instead of post-training quantization."""
    import keras

    o = options or ConvertOptions()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    original = run_dir / "model.keras"  # the float model every candidate is judged against
    keras_path = Path(o.keras_path or original)
    record = RunRecord.load(run_dir)
    refuse_offline_only(record, o.allow_offline)
    refuse_workstation_only(record)
    rep_path = run_dir / "representative.npz"
    staging = Path(tempfile.mkdtemp(prefix=f"{record.name}-", dir=_ensure(out_dir)))
    try:
        optimized = {}
        if o.prune:
            optimized["prune"] = run_tfmot(keras_path, rep_path, staging / "tfmot",
                                           sparsity=o.prune)
            keras_path = Path(optimized["prune"].pop("path"))
        ptq = tuple(m for m in o.candidates if not (o.qat and m == "int8"))
        infos = convert_many(keras_path, staging / "candidates", ptq, rep_path, o.int8_io,
                             o.route, batch=o.batch)
        if o.qat and "int8" in o.candidates:
            info = optimized["qat"] = run_tfmot(keras_path, rep_path, staging / "candidates",
                                                qat=True)
            info["path"] = str(staging / "candidates" / "int8.tflite")
            info["ops"] = check_builtin_ops(Path(info["path"]))
            info["batch"] = input_batch(Path(info["path"]))
            infos = {"int8": info} | infos
        version = o.version or _version(keras_path)
        shutil.rmtree(staging / "tfmot", ignore_errors=True)  # the pruned model is not shipped
        heldout = dict(np.load(run_dir / "heldout.npz"))
        model = keras.models.load_model(original, compile=False, safe_mode=False)
        reference = keras_reference(model, heldout)
        budgets = (o.budgets or Budgets()).with_task_budget(record.task, o.budget)
        rows = [_measure(info, model, heldout, reference, record, budgets)
                for info in progress(infos.values(), f"{record.name}: measuring candidates",
                                     total=len(infos), unit="mode")]
        choice, why = choose(rows, o.latency_slack)
        report = {"run_dir": str(run_dir),
                  "keras_model": f"{original} pruned" if o.prune else str(keras_path),
                  "budgets": dict(budgets), "int8_io": o.int8_io, "batch": o.batch,
                  "representative": {"sha256": _fingerprint(rep_path),
                                     **load_sampling(rep_path)},
                  "optimization": optimized, "candidates": rows,
                  "choice": choice, "why": why}
        if choice is None:
            raise ConversionError(f"no mode passed the parity gate for {record.name}; "
                                  "nothing shipped:\n" + markdown_table(rows))
        row = next(r for r in rows if r["mode"] == choice)
        shutil.move(row["path"], staging / MODEL_FILE)
        for r in rows:
            r.pop("path", None)
        shutil.rmtree(staging / "candidates")
        (staging / "parity.json").write_text(json.dumps(row["parity"], indent=2) + "\n")
        (staging / "conversion.json").write_text(json.dumps(report, indent=2) + "\n")
        (staging / "conversion.md").write_text(render_markdown(record.name, report))
        metrics = {"training": record.metrics["keras"], "keras": row["parity"]["keras"],
                   "edge": row["parity"]["edge"]}
        quantized = choice in CALIBRATED_MODES
        manifest = Manifest(**record.model_dump(exclude={"metrics"}), version=version,
                            quantization=choice, batch=row["batch"], metrics=metrics,
                            representative_sha256=_fingerprint(rep_path) if quantized else "",
                            representative_sampling=load_sampling(rep_path) if quantized else {})
        write_bundle(staging, manifest)
        if o.sign_key is not None:
            sign_bundle(staging, o.sign_key)
        final = out_dir / f"{record.name}-{choice}"
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        return Bundle.load(final), report
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _measure(info: dict, model, heldout, reference, record: RunRecord,
             budgets: Budgets) -> dict:
    """One candidate's row: size, ops, parity against float, latency per window."""
    row = {"mode": info["mode"], "route": info.get("route"), "batch": info.get("batch"),
           "passed": False}
    if "error" in info:
        return row | {"reasons": [info["error"]]}
    path = Path(info["path"])
    parity = check_parity(model, path, heldout, record, budgets=budgets, reference=reference)
    latency = window_latency_ms(path, heldout["x"][0])
    return row | {
        "passed": parity.passed, "reasons": parity.reasons, "bytes": path.stat().st_size,
        "edge_p50_ms": latency["p50_ms"], "edge_p99_ms": latency["p99_ms"],
        "ops": info["ops"], "failed_routes": info.get("failed_routes", []),
        "parity": parity.as_dict(), "path": str(path),
    } | {k: info[k] for k in ("int8_granularity", "int8_rel_error") if k in info}


def choose(rows: list[dict], latency_slack: float = LATENCY_SLACK,
           floor_ms: float = LATENCY_FLOOR_MS) -> tuple[str | None, str]:
    """Among passing candidates: the smallest whose median latency is within ``latency_slack``
    (or ``floor_ms``, whichever is more) of the fastest — by measurement, since int8 is slower
    than float for some models; the floor keeps timer noise from choosing between tiny ones."""
    passing = [r for r in rows if r["passed"]]
    if not passing:
        return None, "no candidate stayed within the budget"
    fastest = min(r["edge_p50_ms"] for r in passing)
    allowed = max(fastest * (1 + latency_slack), fastest + floor_ms)
    quick = [r for r in passing if r["edge_p50_ms"] <= allowed]
    best = min(quick, key=lambda r: (r["bytes"], r["edge_p50_ms"]))
    slower = [r["mode"] for r in passing if r not in quick]
    why = (f"{best['mode']}: {best['bytes']} bytes, {_ms(best['edge_p50_ms'])} ms/window; "
           f"smallest of the passing modes within {latency_slack:.0%} or {floor_ms:g} ms of "
           f"the fastest ({_ms(fastest)} ms)")
    if slower:
        why += f"; passing but slower: {', '.join(slower)}"
    return best["mode"], why


def markdown_table(rows: list[dict]) -> str:
    lines = ["| mode | route | batch | passed | bytes | edge p50 ms | edge p99 ms "
             "| metric keras → edge | reasons |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r.get("parity", {})
        metric = ", ".join(f"{k} {p['keras'][k]:.4g}→{v:.4g}" for k, v in p.get("edge", {}).items()
                           if k in p.get("keras", {}))
        route = r.get("route") or "-"
        if "int8_granularity" in r:  # of the convolutions
            route += f", conv {r['int8_granularity']}"
        lines.append(f"| {r['mode']} | {route} | {r.get('batch') or '-'} | "
                     f"{'yes' if r['passed'] else 'no'}"
                     f" | {r.get('bytes', '-')} | {_fmt(r.get('edge_p50_ms'))} | "
                     f"{_fmt(r.get('edge_p99_ms'))} | {metric} | {'; '.join(r['reasons'])} |")
    return "\n".join(lines)


def render_markdown(name: str, report: dict) -> str:
    budgets = ", ".join(f"{k}={v}" for k, v in report["budgets"].items())
    table = markdown_table(report["candidates"])
    rep = report.get("representative", {})
    sampling = (f"\n\nCalibration windows: {rep['total']} ({rep['method']}; {rep['modes']} "
                f"mode(s), training windows per mode {rep['mode_windows']}, drawn "
                f"{rep['mode_sampled']}; {rep['extreme_windows']} extreme windows, also "
                f"×{rep['headroom']})" if "method" in rep else "")
    return (f"# Conversion of {name}\n\nBudgets: {budgets}{sampling}\n\n{table}"
            f"\n\n**Choice: {report['choice']}** — {report['why']}\n")


def _fmt(value) -> str:
    return "-" if value is None else _ms(value)


def _ms(value: float) -> str:
    """Milliseconds to three decimals, or three significant digits below 0.1 ms, so two
    microsecond-scale latencies that decided a choice do not print alike."""
    return f"{value:.3g}" if value < 0.1 else f"{value:.3f}"


def _fingerprint(npz: Path) -> str:
    """SHA-256 of the calibration windows' values (not of the zip, which holds timestamps)."""
    x = np.ascontiguousarray(np.load(npz)["x"], dtype=np.float32)
    return hashlib.sha256(str(x.shape).encode() + x.tobytes()).hexdigest()


class OfflineOnlyError(ValueError):
    """The family needs data a live window does not have; not for deployment."""


def refuse_offline_only(record: RunRecord, allow_offline: bool) -> None:
    """A family marked offline-only (e.g. BiLSTM) is not bundled unless the user insists."""
    family = record.family
    try:
        offline = get_family(family, record.task).offline_only
    except (KeyError, ValueError):  # unknown, or registered under another task only
        return
    if offline and not allow_offline:
        raise OfflineOnlyError(
            f"model family {family!r} is offline-only (it reads each window backwards, which "
            f"a live {record.task.replace('_', ' ')} cannot do): refused for deployment; pass "
            "allow_offline=True to build it for offline evaluation")


def refuse_workstation_only(record: RunRecord) -> None:
    """A task that never ships (``generative``: synthetic windows for the workstation) has
    no edge model to convert."""
    if not task_spec(record.task).ships:
        raise ValueError(f"{record.name}: a {record.task} run is a workstation job, not "
                         "converted for a gateway (`procedge generate` writes its windows)")


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _version(keras_path: Path) -> str:
    """Version = short hash of the trained weights, so a retrained model is a new version."""
    from edge_runtime.bundle import sha256_file

    return sha256_file(keras_path)[:12]


def build_bundle(run_dir: Path, out_dir: Path, mode: str = "int8", **options) -> Bundle:
    """One fixed mode; shipped only if it passes the parity gate. ``options``: the fields of
    :class:`ConvertOptions`."""
    return build(run_dir, out_dir, ConvertOptions(candidates=(mode,), **options))[0]


def build_auto(run_dir: Path, out_dir: Path, candidates: tuple[str, ...] = AUTO_ORDER,
               **options) -> tuple[Bundle, list[str]]:
    """Measure every candidate; return the chosen bundle and one line per candidate."""
    bundle, report = build(run_dir, out_dir, ConvertOptions(candidates=candidates, **options))
    return bundle, summary_lines(report)


def summary_lines(report: dict) -> list[str]:
    lines = []
    for r in report["candidates"]:
        if r["passed"]:
            state = "passed" + (" — shipped" if r["mode"] == report["choice"] else "")
            lines.append(f"{r['mode']}: {state} ({r['bytes']} B, {_ms(r['edge_p50_ms'])} ms, "
                         f"route {r['route']})")
        else:
            lines.append(f"{r['mode']}: rejected — {'; '.join(r['reasons'])}")
    return lines + [f"choice: {report['why']}"]
