"""QAT and pruning vs post-training int8 on ETTh1, published 12/4/4-month split.

Trains one forecaster exactly as ``procedge eval ett`` does (``evaluation.ett``:
train rows only for scaling and fitting, validation windows for early stopping), then builds
four edge variants of it and runs each on the test months through the LiteRT interpreter:
float (fp32), post-training int8, QAT int8 (``--qat``), pruned to ``--sparsity`` then int8
(``--prune``). The parity gate's verdict is computed as ``procedge convert`` does, on the
validation windows (edge MSE within +2 % of the float model's).

Usage: python bench/bench_tfmot_ett.py [--family tcn] [--input-len 96] [--horizon 24]
       [--features MS] [--epochs 10] [--model-args '{"filters": 16}'] [--sparsity 0.5]
Prints a table; writes bench/results/tfmot_ett.json.
"""

from __future__ import annotations

import argparse
import gzip
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

GATE = 0.02  # the default forecast budget: edge MSE within +2 % of float


def main(argv: list[str] | None = None) -> None:
    from converters.optimize import run_tfmot
    from converters.tflite import convert
    from edge_runtime.interpreter import EdgeModel
    from evaluation import ett

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default="tcn")
    p.add_argument("--input-len", type=int, default=96)
    p.add_argument("--horizon", type=int, default=24)
    p.add_argument("--features", default="MS", choices=["M", "S", "MS"])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--model-args", type=json.loads, default={"filters": 16})
    p.add_argument("--sparsity", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/tfmot_ett.json")
    args = p.parse_args(argv)

    data = ett.load_ett(ett.default_csv())
    L, H = args.input_len, args.horizon
    prep = ett.prepare(data, args.features, "OT", L, H)
    fit = ett.FIT_BASE | {"epochs": args.epochs, "seed": args.seed}
    with tempfile.TemporaryDirectory(prefix="tfmot-ett-") as work:
        run = Path(work) / "run"
        start = time.perf_counter()
        model, _ = ett.train_model(args.family, prep, L, H, data.period_s, run, fit,
                                   args.model_args, f"ett_{args.family}")
        train_s = time.perf_counter() - start
        keras_path, rep = run / "model.keras", run / "representative.npz"
        paths = {"float (fp32)": convert(keras_path, Path(work) / "fp32.tflite", "fp32")["path"],
                 "post-training int8": convert(keras_path, Path(work) / "ptq.tflite", "int8",
                                               rep)["path"]}
        info = run_tfmot(keras_path, rep, Path(work) / "qat", qat=True)
        paths["QAT int8"] = str(Path(work) / "qat" / "int8.tflite")
        pruned = run_tfmot(keras_path, rep, Path(work) / "prune", sparsity=args.sparsity)
        paths[f"pruned {args.sparsity:.0%} → int8"] = convert(
            Path(pruned["path"]), Path(work) / "pruned.tflite", "int8", rep)["path"]
        keras_mse = {part: _mse(model.predict(x, verbose=0, batch_size=256), y)
                     for part, (x, y) in (("val", prep.val), ("test", prep.test))}
        rows = []
        for name, path in paths.items():
            edge = EdgeModel(path)
            val, test = (_mse(edge.predict(x)[0], y) for x, y in (prep.val, prep.test))
            data_bytes = Path(path).read_bytes()
            rows.append({"variant": name, "test_mse": test, "val_mse": val,
                         "test_vs_float": test / keras_mse["test"] - 1,
                         "passes_gate": val <= keras_mse["val"] * (1 + GATE),
                         "bytes": len(data_bytes), "gzip_bytes": len(gzip.compress(data_bytes))})
    result = {"dataset": data.name, "split_rows": list(data.borders), "family": args.family,
              "model_args": args.model_args, "input_len": L, "horizon": H,
              "features": args.features, "epochs": args.epochs, "train_seconds": train_s,
              "test_windows": len(prep.test[0]), "keras_mse": keras_mse,
              "qat": {k: v for k, v in info.items() if k != "path"},
              "prune": {k: v for k, v in pruned.items() if k != "path"}, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{data.name} {args.features} L={L} H={H} {args.family} {args.model_args}, "
          f"{args.epochs} epochs ({train_s:.0f} s); float Keras test MSE "
          f"{keras_mse['test']:.5f}, val MSE {keras_mse['val']:.5f}")
    print("| variant | test MSE (edge) | vs float | val MSE | passes +2 % gate | bytes "
          "| gzip bytes |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['test_mse']:.5f} | {r['test_vs_float']:+.1%} | "
              f"{r['val_mse']:.5f} | {'yes' if r['passes_gate'] else 'no'} | {r['bytes']:,} | "
              f"{r['gzip_bytes']:,} |")
    print(f"wrote {args.out}")


def _mse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((np.asarray(pred) - y) ** 2))


if __name__ == "__main__":
    main()
