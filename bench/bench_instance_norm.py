"""Which ``model.norm`` (none / subtract_last / revin) by default? Validation splits only.

Series: each of ETTh1's variables as its own univariate series (features S, that column as
input and target), and the plant simulator (every tag in, every tag forecast). For each series,
family and norm: fit on the training rows (early stopping on the validation rows, as every
fit here), score MSE on the validation windows. Only rows before the end of the validation
split are read: the ETT test months are never loaded (the protocol's borders, 12/4 months);
the simulator's rows after its validation split are never windowed.

The choice rule (fixed before running): per family, the norm with the best mean rank over the
series (1 = lowest validation MSE on that series); ties broken by the mean ratio to ``none``.

Usage: python bench/bench_instance_norm.py [--families dlinear,informer] [--input-len 96]
       [--horizon 24] [--epochs 3] [--stride 4] [--ett-columns HUFL,MULL,OT]
Prints a table; writes bench/results/instance_norm.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

NORMS = ("none", "subtract_last", "revin")
# Small settings so a family trains on every series in minutes on two cores.
MODEL_ARGS = {"dlinear": {}, "informer": {"d_model": 32, "heads": 2, "d_ff": 64}}


def ett_series(csv: Path, window: int, horizon: int, stride: int,
               columns: list[str] | None = None):
    """(name, train pairs, val pairs) per ETTh1 column (all, or ``columns``), univariate;
    test rows never read."""
    import pandas as pd

    from edge_runtime.scaling import StandardScaler
    from edge_runtime.windowing import forecast_pairs
    from evaluation.ett import HOURLY_BORDERS

    train_end, val_end, _ = HOURLY_BORDERS
    frame = pd.read_csv(csv, nrows=val_end).drop(columns=["date"])  # no test row is read
    for column in columns or list(frame.columns):
        values = frame[[column]].to_numpy(np.float64)
        scaled = StandardScaler.fit(values[:train_end]).transform(values)
        x, y = forecast_pairs(scaled[:train_end], window, horizon, [0])
        vx, vy = forecast_pairs(scaled[train_end - window:val_end], window, horizon, [0])
        yield f"ETTh1:{column}", (x[::stride], y[::stride]), (vx, vy)


def simulator_series(window: int, horizon: int, stride: int, steps: int = 6000):
    """The plant simulator, every tag in and out; windows of train and validation only."""
    from edge_runtime.windowing import forecast_pairs
    from training.config import TrainConfig
    from training.series import SeriesData

    config = TrainConfig.model_validate({
        "name": "norm_bench", "task": "forecast", "family": "dlinear",
        "data": {"source": "simulator", "simulator": {"steps": steps, "seed": 0}},
        "window": {"length": window}, "horizon": horizon})
    data = SeriesData.load(config)
    cols = list(range(len(data.grid.tags)))
    x, y = forecast_pairs(data.scaled[data.splits.train], window, horizon, cols)
    vx, vy = forecast_pairs(data.scaled[data.splits.val], window, horizon, cols)
    yield "simulator", (x[::stride], y[::stride]), (vx, vy)


def val_mse(family: str, norm: str, train, val, horizon: int, epochs: int) -> float:
    import keras

    from training.config import TrainConfig
    from training.registry import get_family
    from training.series import fit_model

    (x, y), (vx, vy) = train, val
    features, targets = x.shape[-1], y.shape[-1]
    kw = MODEL_ARGS[family] | {"norm": norm}
    config = TrainConfig.model_validate({
        "name": "norm_bench", "task": "forecast", "family": family, "model": kw,
        "window": {"length": x.shape[1]}, "horizon": horizon,
        "fit": {"epochs": epochs, "patience": 2, "batch_size": 32, "tensorboard": False,
                "learning_rate": 0.005 if family == "dlinear" else 0.001}})
    keras.utils.set_random_seed(0)
    build = get_family(family, "forecast").build
    with tempfile.TemporaryDirectory() as run_dir:
        model, _ = fit_model(lambda: build(x.shape[1], features, horizon, targets, **kw),
                             config, x, y, vx, vy, Path(run_dir))
    return float(np.mean((model.predict(vx, verbose=0, batch_size=256) - vy) ** 2))


def choose(rows: list[dict], family: str) -> tuple[str, dict]:
    """The norm with the best mean rank over the series (ties: mean ratio to none)."""
    series = sorted({r["series"] for r in rows if r["family"] == family})
    ranks, ratios = {n: [] for n in NORMS}, {n: [] for n in NORMS}
    for name in series:
        mse = {r["norm"]: r["val_mse"] for r in rows
               if r["family"] == family and r["series"] == name}
        for rank, norm in enumerate(sorted(mse, key=mse.get), start=1):
            ranks[norm].append(rank)
            ratios[norm].append(mse[norm] / mse["none"])
    summary = {n: {"mean_rank": float(np.mean(ranks[n])), "mean_ratio_to_none":
                   float(np.mean(ratios[n]))} for n in NORMS}
    best = min(NORMS, key=lambda n: (summary[n]["mean_rank"], summary[n]["mean_ratio_to_none"]))
    return best, summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", default="dlinear,informer")
    p.add_argument("--input-len", type=int, default=96)
    p.add_argument("--horizon", type=int, default=24)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--stride", type=int, default=4, help="every n-th training window")
    p.add_argument("--ett-columns", help="comma-separated ETTh1 columns (default: all 7)")
    p.add_argument("--csv", type=Path, default=Path(os.environ.get("PROCEDGE_DATA", ""))
                   / "ett" / "ETTh1.csv")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "instance_norm.json")
    args = p.parse_args(argv)
    L, H = args.input_len, args.horizon
    columns = args.ett_columns.split(",") if args.ett_columns else None
    series = [*ett_series(args.csv, L, H, args.stride, columns),
              *simulator_series(L, H, args.stride)]
    rows, start = [], time.perf_counter()
    for family in args.families.split(","):
        for name, train, val in series:
            for norm in NORMS:
                t0 = time.perf_counter()
                mse = val_mse(family, norm, train, val, H, args.epochs)
                rows.append({"family": family, "series": name, "norm": norm, "val_mse": mse,
                             "seconds": round(time.perf_counter() - t0, 1)})
                print(f"{family:<10}{name:<16}{norm:<15}{mse:>9.4f}{rows[-1]['seconds']:>8}s",
                      flush=True)
    choices = {f: choose(rows, f) for f in args.families.split(",")}
    print(f"\n{'family':<10}{'norm':<15}{'mean rank':>10}{'MSE/none':>10}")
    for family, (best, summary) in choices.items():
        for norm in NORMS:
            s = summary[norm]
            print(f"{family:<10}{norm:<15}{s['mean_rank']:>10.2f}"
                  f"{s['mean_ratio_to_none']:>10.3f}{'  <- chosen' if norm == best else ''}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "settings": {"input_len": L, "horizon": H, "epochs": args.epochs,
                     "stride": args.stride, "model_args": MODEL_ARGS,
                     "series": [name for name, _, _ in series]},
        "rows": rows, "choice": {f: c[0] for f, c in choices.items()},
        "summary": {f: c[1] for f, c in choices.items()},
        "seconds": round(time.perf_counter() - start, 1)}, indent=2))
    print(f"wall {time.perf_counter() - start:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
