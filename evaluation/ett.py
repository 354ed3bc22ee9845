"""``procedge eval ett``: forecasting on ETT with the published protocol, float and edge.

The protocol (``$PROCEDGE_DATA/ett/README.md``, pinned from the Informer / DLinear / PatchTST
loaders): rows split 8640 / 2880 / 2880 for hourly files, ×4 for 15-minute files (detected from
the timestamps); validation and test start ``L`` rows early; a StandardScaler fitted on the
train rows only; stride-1 windows; MSE and MAE on the scaled values over every test window,
horizon step and predicted channel. Persistence is scored in the same run and must reproduce
the published Repeat baseline (ETTh1, H=96: 1.294 / 0.713) or the command fails.

Each model is trained on the train rows (early stopping on the validation rows), converted
with the same bundle builder the gateway gets (the parity gate uses validation windows, so the
test rows choose nothing), and the bundle is run on the test windows through the LiteRT
interpreter.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from edge_runtime.bundle import (
    InputSpec,
    OutputSpec,
    RunRecord,
    TagSpec,
    TrainingInfo,
    check_quantile_levels,
)
from edge_runtime.calendar import selection_names
from edge_runtime.conformal import apply_offsets
from edge_runtime.contract import MODE_NAMES
from edge_runtime.scaling import StandardScaler
from edge_runtime.windowing import forecast_pairs
from evaluation.results import write_results
from training.config import MEDIAN_LOSSES
from training.covariates import covariate_windows
from training.metrics import forecast_metrics, regression_metrics
from training.progress import progress

HOURLY_BORDERS = (8640, 11520, 14400)  # 12 / 4 / 4 months of 30 days, in rows
# Published Repeat baseline (DLinear paper: 1.295 / 0.713; the data README measures 1.294).
PROTOCOL_CHECKS = {("ETTh1", 96, "M"): (1.294, 0.713)}
CHECK_TOL = 0.0015
BASELINES = ("persistence", "seasonal_naive")
# Fit settings per family on ETT; DLinear's are the paper's (lr 0.005, batch 32).
FIT_DEFAULTS = {
    "linear": {"learning_rate": 0.005, "batch_size": 32},
    "dlinear": {"learning_rate": 0.005, "batch_size": 32},
}
FIT_BASE = {"epochs": 10, "patience": 3, "learning_rate": 0.001, "batch_size": 64}


class ProtocolError(RuntimeError):
    """The harness does not reproduce the published baseline: split or scaling is wrong."""


@dataclass
class EttFile:
    name: str  # file stem, e.g. ETTh1
    columns: list[str]
    values: np.ndarray  # (N, C) float64, every column but the timestamp
    period_s: float
    borders: tuple[int, int, int]  # train end, val end, test end (rows)
    times: np.ndarray | None = None  # (N,) epoch seconds (the naive stamps read as UTC)


@dataclass
class Prepared:
    columns: list[str]  # model inputs
    targets: list[str]
    target_columns: list[int]
    scaler: StandardScaler
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    train_sha256: str


def load_ett(path: Path) -> EttFile:
    """Read an ETT-format CSV; hourly vs 15-minute from the median timestamp step."""
    frame = pd.read_csv(path)
    stamps = pd.to_datetime(frame.pop("date"))
    step = float(stamps.diff().dt.total_seconds().median())
    factor = {3600.0: 1, 900.0: 4}.get(step)
    if factor is None:
        raise ValueError(f"{path}: sampling step {step:.0f} s is neither 1 h nor 15 min")
    borders = tuple(b * factor for b in HOURLY_BORDERS)
    if len(frame) < borders[-1]:
        raise ValueError(f"{path}: {len(frame)} rows, the protocol needs {borders[-1]}")
    times = (stamps - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy(np.float64)
    return EttFile(Path(path).stem, list(frame.columns), frame.to_numpy(np.float64), step,
                   borders, times)


def prepare(data: EttFile, features: str, target: str, window: int, horizon: int,
            known_future: list[str] | None = None) -> Prepared:
    """Scale on train rows only; cut stride-1 windows for each part (val/test L rows early).
    With ``known_future`` (calendar features) the inputs are the (L + H, F + K) windows of
    ``edge_runtime/calendar.py``; :func:`past_windows` gives back the plain ones."""
    if target not in data.columns:
        raise ValueError(f"target {target!r} not in {data.columns}")
    columns = [target] if features == "S" else list(data.columns)
    targets = [target] if features in ("S", "MS") else list(columns)
    values = data.values[:, [data.columns.index(c) for c in columns]]
    train_end, val_end, test_end = data.borders
    scaler = StandardScaler.fit(values[:train_end])
    scaled = scaler.transform(values)
    cols = [columns.index(t) for t in targets]
    parts = [(0, train_end), (train_end - window, val_end), (val_end - window, test_end)]
    if known_future:
        pairs = [covariate_windows(scaled[a:b], data.times[a:b], window, horizon, cols,
                                   list(known_future), data.period_s)[1:] for a, b in parts]
    else:
        pairs = [forecast_pairs(scaled[a:b], window, horizon, cols) for a, b in parts]
    digest = hashlib.sha256(np.ascontiguousarray(values[:train_end]).tobytes()).hexdigest()
    return Prepared(columns, targets, cols, scaler, *pairs, train_sha256=digest)


def past_windows(x: np.ndarray, window: int, features: int) -> np.ndarray:
    """The (N, L, F) windows of model inputs that may carry known-future rows and columns."""
    return x[:, :window, :features]


def persistence(x: np.ndarray, cols: list[int], horizon: int) -> np.ndarray:
    """Repeat the last observed value ("Repeat" in the DLinear paper)."""
    return np.repeat(x[:, -1:, cols], horizon, axis=1)


def seasonal_naive(x: np.ndarray, cols: list[int], horizon: int, period: int) -> np.ndarray:
    """Repeat the last full season: step h takes the value ``period`` steps before it."""
    if x.shape[1] < period:
        raise ValueError(f"seasonal_naive needs input length >= period {period}")
    idx = x.shape[1] - period + (np.arange(horizon) % period)
    return x[:, idx][:, :, cols]


def check_protocol(dataset: str, horizon: int, features: str, mse: float, mae: float) -> str:
    """Persistence depends only on H (not L): compare with the published figure, fail loudly."""
    expected = PROTOCOL_CHECKS.get((dataset, horizon, features))
    if expected is None:
        return "no published persistence figure for this setting: not checked"
    if abs(mse - expected[0]) > CHECK_TOL or abs(mae - expected[1]) > CHECK_TOL:
        raise ProtocolError(
            f"persistence gives MSE {mse:.4f} / MAE {mae:.4f} on {dataset} H={horizon} "
            f"{features}, published {expected[0]} / {expected[1]}: the split or scaling drifted")
    return f"persistence matches the published {expected[0]} / {expected[1]}"


# ------------------------------------------------------------------------- one model, trained


def train_model(family: str, prep: Prepared, window: int, horizon: int, period_s: float,
                run_dir: Path, fit: dict, model_kw: dict, name: str) -> tuple:
    """Train on train windows, early-stop on validation windows; write a run directory that
    ``converters.build`` reads (validation windows as the parity set). Returns (model,
    seconds, the run record's training section)."""
    import keras

    from training.calibration import save_representative
    from training.config import TrainConfig
    from training.conformal import fit_offsets
    from training.registry import get_family
    from training.series import fit_model

    config = TrainConfig.model_validate({
        "name": name, "task": "forecast", "family": family, "model": model_kw,
        "window": {"period_s": period_s, "length": window, "max_gap_s": period_s},
        "horizon": horizon, "targets": prep.targets, "fit": fit, "output_dir": str(run_dir),
    })
    keras.utils.set_random_seed(config.fit.seed)
    builder = get_family(family, "forecast")
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model, info = fit_model(lambda: builder.build(window, len(prep.columns), horizon,
                                            len(prep.targets),
                                            target_columns=prep.target_columns, **model_kw),
                      config, *prep.train, *prep.val, run_dir)
    seconds = time.perf_counter() - start
    val_x, val_y = prep.val
    levels = quantile_levels(model_kw)
    val_pred = model.predict(val_x, verbose=0, batch_size=256)
    val_metrics = forecast_metrics(val_y, val_pred, levels)
    offsets = fit_offsets(val_y, val_pred, levels).tolist() if levels else []
    np.savez_compressed(run_dir / "heldout.npz", x=val_x, y=val_y)
    save_representative(run_dir, prep.train[0], config.fit.seed)
    RunRecord(
        name=name, task="forecast", family=family,
        input=InputSpec(tags=[TagSpec(name=c) for c in prep.columns], period_s=period_s,
                        window=window, stride=1, max_gap_s=period_s,
                        known_future=list(model_kw.get("known_future") or [])),
        scaler=prep.scaler.to_spec(),
        output=OutputSpec(horizon=horizon, targets=prep.targets, quantiles=levels,
                          conformal=offsets),
        training_data_sha256=prep.train_sha256,
        metrics={"keras": {f"val_{k}": v for k, v in val_metrics.items()}}, training=info,
    ).save(run_dir)
    return model, seconds, info


def edge_predict(run_dir: Path, out_dir: Path, mode: str, x: np.ndarray):
    """Build the bundle (auto: smallest mode passing the parity gate on validation windows)
    and run ``x`` through the LiteRT interpreter. Returns (predictions, mode, attempts)."""
    from converters.build import build_auto, build_bundle
    from edge_runtime.interpreter import EdgeModel
    from edge_runtime.tasks.forecast import forecast_outputs

    if mode == "auto":  # offline evaluation: offline-only families (bilstm) are allowed here
        bundle, attempts = build_auto(run_dir, out_dir, allow_offline=True)
    else:
        bundle = build_bundle(run_dir, out_dir, mode, allow_offline=True)
        attempts = [f"{mode}: passed the parity gate"]
    pred = forecast_outputs(EdgeModel(bundle.model_path).predict(x))[0]
    return pred, bundle.manifest.quantization, attempts


# ------------------------------------------------------------------------------------- CLI


def default_csv() -> Path:
    root = os.environ.get("PROCEDGE_DATA")
    base = Path(root) if root else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return base / "ett" / "ETTh1.csv"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="procedge eval ett", description=__doc__.splitlines()[0])
    p.add_argument("--csv", type=Path, help="ETT-format CSV (default $PROCEDGE_DATA/ett/ETTh1.csv)")
    p.add_argument("--horizon", type=int, default=96, help="forecast steps H")
    p.add_argument("--input-len", type=int, default=336, help="look-back window L")
    p.add_argument("--features", choices=["M", "S", "MS"], default="M")
    p.add_argument("--target", default="OT", help="target column for S / MS")
    p.add_argument("--model", action="append", default=[],
                   help="forecast family to train (repeatable); none = baselines only")
    p.add_argument("--model-args", type=json.loads, default={},
                   help='JSON keyword arguments for the family builder, e.g. \'{"kernel": 25}\'')
    p.add_argument("--mode", default="auto",
                   choices=["auto", "none", *MODE_NAMES],
                   help="edge conversion; none = Keras only")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--patience", type=int)
    p.add_argument("--lr-decay", type=float,
                   help="multiply the learning rate by this after every epoch (fit.lr_decay; "
                        "0.5 = the Informer repository's schedule); default: on plateau")
    p.add_argument("--median-loss", choices=MEDIAN_LOSSES,
                   help="quantile models: the 0.5 level's loss (fit.median_loss; mse: that "
                        "head forecasts the mean); default pinball")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("artifacts/eval/ett"),
                   help="run directories and bundles go here")
    p.add_argument("--max-minutes", type=float,
                   help="wall-clock limit per model (default none: epochs only); a model it "
                        "stops is reported truncated")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted fit from its checkpoint under --out")
    p.add_argument("--json", type=Path,
                   help='write {"results": [...], "settings": {...}} here')
    return p


def _fit_settings(family: str, args) -> dict:
    fit = FIT_BASE | FIT_DEFAULTS.get(family, {}) | {"seed": args.seed, "resume": args.resume,
                                                     "max_minutes": args.max_minutes}
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size,
                 "learning_rate": args.lr, "patience": args.patience,
                 "lr_decay": args.lr_decay, "median_loss": args.median_loss}
    return fit | {k: v for k, v in overrides.items() if v is not None}


def _row(model: str, variant: str, mode: str, metrics: dict, windows: int) -> dict:
    """One result row; a quantile model's MSE/MAE are on P50, plus its interval coverage."""
    row = {"model": model, "variant": variant, "mode": mode, "mse": metrics["mse"],
           "mae": metrics["mae"], "windows": windows}
    return row | {k: metrics[k] for k in ("coverage", "pinball") if k in metrics}


def run(args) -> dict:
    data = load_ett(args.csv or default_csv())
    L, H = args.input_len, args.horizon
    known = list(args.model_args.get("known_future") or [])
    prep = prepare(data, args.features, args.target, L, H, known)
    test_x, test_y = prep.test
    past = past_windows(test_x, L, len(prep.columns))
    expected_windows = data.borders[2] - data.borders[1] - H + 1
    if len(test_x) != expected_windows:
        raise ProtocolError(f"{len(test_x)} test windows, the protocol gives {expected_windows}")
    rows = []
    persist = regression_metrics(test_y, persistence(past, prep.target_columns, H))
    check = check_protocol(data.name, H, args.features, persist["mse"], persist["mae"])
    rows.append(_row("persistence", "numpy", "float64", persist, len(test_x)))
    period = int(round(86400 / data.period_s))  # one day
    if period <= L:  # one season fits in the window
        naive = seasonal_naive(past, prep.target_columns, H, period)
        rows.append(_row("seasonal_naive", "numpy", "float64",
                         regression_metrics(test_y, naive), len(test_x)))
    tag = f"{data.name}_{args.features}_L{L}_H{H}"
    timing, training = {}, {}
    levels = quantile_levels(args.model_args)
    for family in progress(args.model, "ETT models", unit="model"):
        from training.tasks.forecast import forecast_plots  # keras: only when one is trained

        run_dir = args.out / tag / family
        if not args.resume:
            shutil.rmtree(run_dir, ignore_errors=True)
        name = f"ett_{tag}_{family}".lower()
        model, seconds, info = train_model(family, prep, L, H, data.period_s, run_dir,
                                           _fit_settings(family, args), args.model_args, name)
        timing[family], training[family] = round(seconds, 1), info.model_dump()
        pred = model.predict(test_x, verbose=0, batch_size=256)
        rows.append(_row(family, "keras", "float32", forecast_metrics(test_y, pred, levels),
                         len(test_x)))
        offsets = RunRecord.load(run_dir).output.conformal
        if offsets:  # the band after split-conformal calibration on the validation windows
            rows.append(_row(family, "keras+cqr", "float32", forecast_metrics(
                test_y, apply_offsets(pred, offsets), levels), len(test_x)))
        forecast_plots(run_dir, model, family, test_x, test_y, pred, prep.targets, levels,
                       tags=selection_names(prep.columns, known))
        if args.mode != "none":
            edge, mode, attempts = edge_predict(run_dir, args.out / tag / "bundles", args.mode,
                                                test_x)
            rows.append(_row(family, "edge", mode, forecast_metrics(test_y, edge, levels),
                             len(test_x)))
            if offsets:
                rows.append(_row(family, "edge+cqr", mode, forecast_metrics(
                    test_y, apply_offsets(edge, offsets), levels), len(test_x)))
            timing[f"{family}_conversion"] = attempts
    return {"dataset": data.name, "horizon": H, "input_len": L, "features": args.features,
            "results": rows, "protocol_check": check, "train_seconds": timing,
            "training": training,
            "split_rows": list(data.borders), "period_s": data.period_s}


def quantile_levels(model_args: dict) -> list[float]:
    """The ``quantiles`` of the family's arguments, checked; [] for a point forecast."""
    return check_quantile_levels(list(model_args.get("quantiles") or []))


def format_table(result: dict) -> str:
    head = (f"{result['dataset']}  features={result['features']}  L={result['input_len']}  "
            f"H={result['horizon']}  period={result['period_s']:.0f}s  "
            f"split rows={result['split_rows']}")
    lines = [head, f"{'model':<16}{'variant':<10}{'mode':<10}{'MSE':>8}{'MAE':>8}{'windows':>9}"
             f"{'train_s':>9}{'coverage':>10}"]
    for r in result["results"]:
        secs = result["train_seconds"].get(r["model"]) if r["variant"] == "keras" else None
        cover = f"{r['coverage']:.4f}" if "coverage" in r else ""
        lines.append(f"{r['model']:<16}{r['variant']:<10}{r['mode']:<10}{r['mse']:>8.4f}"
                     f"{r['mae']:>8.4f}{r['windows']:>9}{'' if secs is None else secs:>9}"
                     f"{cover:>10}")
    if any("coverage" in r for r in result["results"]):
        lines.append("quantile models: MSE/MAE on P50; coverage = share of actuals inside "
                     "the outer quantiles (P10–P90: nominal 0.80)")
    lines.append(f"protocol check: {result['protocol_check']}")
    lines += [TrainingInfo(**info).summary(family)
              for family, info in result.get("training", {}).items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    result = run(args)
    print(format_table(result))
    write_results(args.json, result["results"],
                  {k: v for k, v in result.items() if k != "results"})
    return result
