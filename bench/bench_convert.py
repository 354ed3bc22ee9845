"""Benchmark: every registered model family × quantization mode, measured in one run.

For each family (whatever ``training.registry`` holds at run time) a small untrained model is
built, saved and converted in every mode (one child process per family); then, on this machine:
bundle model size, single-window LiteRT latency (median, p99; 1 and 2 threads), batch
throughput, and the same window through Keras ``predict`` and a ``tf.function``.
Latency and size do not depend on training; accuracy is the parity gate's job, not this one's.

Usage: python bench/bench_convert.py [--families a,b] [--modes fp32,int8] [--out PATH]
Writes bench/results/convert.json (one row per family × mode) and prints a table.
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

from converters.latency import batch_throughput, window_latency_ms  # noqa: E402
from converters.tflite import MODES, convert_many  # noqa: E402

WINDOW, FEATURES, HORIZON, TARGETS = 24, 5, 6, 2


def build_model(family):
    """A small instance of ``family`` with the builder's defaults."""
    if family.task == "forecast":
        return family.build(WINDOW, FEATURES, HORIZON, TARGETS, target_columns=[0, 1])
    return family.build(WINDOW, FEATURES)


def keras_latency_ms(model, window: np.ndarray, repeats: int) -> tuple[float, float]:
    """Median ms per single window: ``model.predict`` and the model under ``tf.function``."""
    import tensorflow as tf

    x = window[None]
    model.predict(x, verbose=0)
    predict = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(x, verbose=0)
        predict.append(time.perf_counter() - start)
    fn = tf.function(lambda t: model(t, training=False))
    tx = tf.constant(x)
    for _ in range(5):
        fn(tx)
    traced = []
    for _ in range(repeats * 10):
        start = time.perf_counter()
        np.asarray(fn(tx))
        traced.append(time.perf_counter() - start)
    return float(np.median(predict) * 1e3), float(np.median(traced) * 1e3)


def bench_family(family, modes: tuple[str, ...], work: Path, rng) -> list[dict]:
    model = build_model(family)
    keras_path = work / f"{family.name}.keras"
    model.save(keras_path)
    shape = tuple(model.inputs[0].shape[1:])
    windows = rng.normal(size=(256, *shape)).astype(np.float32)
    np.savez(work / f"{family.name}-rep.npz", x=windows[:128])
    predict_ms, tf_function_ms = keras_latency_ms(model, windows[0], repeats=20)
    infos = convert_many(keras_path, work / family.name, modes, work / f"{family.name}-rep.npz")
    rows = []
    for mode, info in infos.items():
        row = {"family": family.name, "task": family.task, "mode": mode,
               "keras_bytes": keras_path.stat().st_size, "keras_predict_p50_ms": predict_ms,
               "tf_function_p50_ms": tf_function_ms}
        if "error" in info:
            rows.append(row | {"error": info["error"][:300]})
            continue
        path = Path(info["path"])
        one = window_latency_ms(path, windows[0], threads=1)
        two = window_latency_ms(path, windows[0], threads=2)
        rows.append(row | {
            "route": info["route"], "bytes": path.stat().st_size,
            "edge_p50_ms": one["p50_ms"], "edge_p99_ms": one["p99_ms"],
            "edge_2t_p50_ms": two["p50_ms"], "edge_2t_p99_ms": two["p99_ms"],
            "batch_windows_per_s": batch_throughput(path, windows),
            "predict_over_edge": predict_ms / one["p50_ms"],
            "tf_function_over_edge": tf_function_ms / one["p50_ms"],
        })
    fp32 = next((r for r in rows if r["mode"] == "fp32" and "bytes" in r), None)
    for r in rows:
        if fp32 and "bytes" in r:
            r["bytes_over_fp32"] = r["bytes"] / fp32["bytes"]
            r["latency_over_fp32"] = r["edge_p50_ms"] / fp32["edge_p50_ms"]
    return rows


def table(rows: list[dict]) -> str:
    head = ("| family | mode | route | bytes | ×fp32 | edge p50 ms | p99 | 2 thr p50 | batch win/s "
            "| predict ms | tf.function ms | predict/edge | tf.fn/edge | .keras bytes |")
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['family']} | {r['mode']} | failed: {r['error'][:80]} |")
            continue
        lines.append(
            f"| {r['family']} | {r['mode']} | {r['route']} | {r['bytes']} | "
            f"{r.get('bytes_over_fp32', 0):.2f} | {r['edge_p50_ms']:.4f} | {r['edge_p99_ms']:.4f}"
            f" | {r['edge_2t_p50_ms']:.4f} | {r['batch_windows_per_s']:.0f} | "
            f"{r['keras_predict_p50_ms']:.1f} | {r['tf_function_p50_ms']:.3f} | "
            f"{r['predict_over_edge']:.0f}× | {r['tf_function_over_edge']:.1f}× | "
            f"{r['keras_bytes']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import keras

    from training.registry import families

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", help="comma-separated names (default: all registered)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/convert.json")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    chosen = [f for f in families()
              if not args.families or f.name in args.families.split(",")]
    rng = np.random.default_rng(0)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as work:
        for family in chosen:
            try:
                rows += bench_family(family, tuple(args.modes.split(",")), Path(work), rng)
            except Exception as exc:  # a family this bench cannot build is reported, not fatal
                rows.append({"family": family.name, "mode": "-", "error": f"{exc}"[:300]})
            print(f"  {family.name}: done", file=sys.stderr, flush=True)
    slower = [f"{r['family']} {r['mode']} ({r['latency_over_fp32']:.2f}× fp32)" for r in rows
              if r.get("latency_over_fp32", 0) > 1.0 and r["mode"] in ("int8", "int16x8")]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": os.uname().machine, "cpus": os.cpu_count(),
                                    "window": [WINDOW, FEATURES], "rows": rows,
                                    "int8_or_16x8_slower_than_fp32": slower}, indent=2) + "\n")
    print(table(rows))
    print("\nquantized slower than fp32: " + (", ".join(slower) or "none"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
