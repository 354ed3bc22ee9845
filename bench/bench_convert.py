"""Benchmark: every registered model family × quantization mode, measured in one run.

For each family (whatever ``training.registry`` holds at run time), at the sizes procedge's
evaluations train (``PROFILES``: TEP 52 tags and SKAB 8 tags for anomaly families, ETTh1 for
forecasters), a model with random trained-like weights is saved and converted in every mode
(one child process per family and size); then, on this machine: model size (and how much of it
is constant data vs fixed graph overhead), single-window LiteRT latency (median, p99; 1 and 2
threads), batch throughput, and the same window through Keras ``predict`` and a
``tf.function``. Latency and size do not depend on training; accuracy is the parity gate's job.
``--batch one,dynamic`` converts each model both ways (the keras route's fixed batch of one,
the default, and a dynamic batch) and adds a table comparing them: bytes, operators, the
single-window latency of the two files timed in alternation, and batch throughput (a batch-1
model loops over the windows: what an evaluation pays).

Usage: python bench/bench_convert.py [--families a,b] [--profiles tep,skab,etth1,etth1_336,toy]
       [--modes fp32,int8] [--batch one|dynamic|one,dynamic] [--out PATH]
Writes bench/results/convert.json (one row per family × profile × batch × mode) and prints the
tables (the main ones for the first batch given).
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

from converters.footprint import footprint  # noqa: E402
from converters.latency import batch_throughput, window_latency_ms  # noqa: E402
from converters.tflite import DEFAULT_BATCH, convert_many  # noqa: E402
from edge_runtime.contract import CALIBRATED_MODES, MODE_NAMES  # noqa: E402
from edge_runtime.interpreter import EdgeModel  # noqa: E402

# Model sizes as procedge's evaluations train them (their CLI defaults): TEP 52 tags and SKAB
# 8 tags for anomaly families, ETTh1 (7 columns, all forecast) for forecasters — with the
# look-back L=96, H=24 setting of the ETT literature rather than the eval's 336/96, so that the
# unrolled recurrent families stay convertible within a `make bench`. "toy" is the 24×5 shape
# of earlier runs, kept to show how the fixed graph overhead dominates a tiny model.
PROFILES = {
    "tep": {"task": "anomaly", "window": 10, "features": 52},
    "skab": {"task": "anomaly", "window": 30, "features": 8},
    "etth1": {"task": "forecast", "window": 96, "features": 7, "horizon": 24, "targets": 7},
    "toy": {"task": None, "window": 24, "features": 5, "horizon": 6, "targets": 2},
    # ETTh1 at `procedge eval ett`'s own L=336 → H=96 (too long for the unrolled recurrent ones).
    "etth1_336": {"task": "forecast", "window": 336, "features": 7, "horizon": 96, "targets": 7},
}
DEFAULT_PROFILES = ("tep", "skab", "etth1")


def build_model(family, profile: dict):
    """``family`` with its builder's defaults at the profile's shape, as it is shipped (a VAE
    ships its deterministic decoder(mean) path, as ``procedge train`` saves it)."""
    from training.autoencoders import edge_model

    L, F = profile["window"], profile["features"]
    if family.task == "forecast":
        T = profile["targets"]
        return family.build(L, F, profile["horizon"], T, target_columns=list(range(F))[-T:])
    return edge_model(family.build(L, F))


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


def randomize(model, rng) -> None:
    """Trained-like weights: untrained builders leave biases (and e.g. the TCN head) at zero,
    which the converter folds away, so a file of an untrained model is not a real one's size."""
    for w in model.trainable_weights:
        w.assign(rng.normal(scale=0.05, size=tuple(w.shape)).astype(np.float32))


def paired_latency_ms(paths: list[Path], window: np.ndarray, repeats: int = 400
                      ) -> list[float]:
    """Median ms per single-window ``predict`` of each file, the files called in alternation
    (one window each in turn), so that load on a shared machine hits them alike."""
    models = [EdgeModel(p) for p in paths]
    x = np.asarray(window, np.float32)[None]
    times: list[list[float]] = [[] for _ in models]
    for i in range(repeats + 10):
        for model, kept in zip(models, times, strict=True):
            start = time.perf_counter()
            model.predict(x)
            if i >= 10:  # warm-up
                kept.append(time.perf_counter() - start)
    return [float(np.median(t) * 1e3) for t in times]


def bench_family(family, profile_name: str, modes: tuple[str, ...], work: Path,
                 rng, batches: tuple[str, ...] = (DEFAULT_BATCH,)) -> list[dict]:
    profile = PROFILES[profile_name]
    model = build_model(family, profile)
    randomize(model, rng)
    tag = f"{family.name}-{profile_name}"
    keras_path = work / f"{tag}.keras"
    model.save(keras_path)
    shape = tuple(model.inputs[0].shape[1:])
    windows = rng.normal(size=(256, *shape)).astype(np.float32)
    np.savez(work / f"{tag}-rep.npz", x=windows[:128])
    predict_ms, tf_function_ms = keras_latency_ms(model, windows[0], repeats=20)
    rows = []
    for batch in batches:
        rows += measure_files(family, profile_name, model, keras_path, work / f"{tag}-rep.npz",
                              windows, modes, batch, work / f"{tag}-{batch}",
                              predict_ms, tf_function_ms)
    if len(batches) > 1:
        compare_batches(rows, batches, windows[0])
    return rows


def measure_files(family, profile_name, model, keras_path, rep, windows, modes, batch, out,
                  predict_ms, tf_function_ms) -> list[dict]:
    """Convert with ``batch`` and measure every mode's file."""
    shape = tuple(model.inputs[0].shape[1:])
    infos = convert_many(keras_path, out, modes, rep, batch=batch)
    rows = []
    for mode, info in infos.items():
        row = {"family": family.name, "task": family.task, "profile": profile_name,
               "batch": batch, "kind": model_kind(model),
               "shape": list(shape), "params": int(model.count_params()), "mode": mode,
               "keras_bytes": keras_path.stat().st_size, "keras_predict_p50_ms": predict_ms,
               "tf_function_p50_ms": tf_function_ms}
        if "error" in info:
            rows.append(row | {"error": info["error"][:300]})
            continue
        path = Path(info["path"])
        size = footprint(path)
        one = window_latency_ms(path, windows[0], threads=1)
        two = window_latency_ms(path, windows[0], threads=2)
        rows.append(row | {
            "route": info["route"], "bytes": path.stat().st_size, "path": str(path),
            "file_batch": info["batch"], "operators": size.operators,
            "int8_granularity": info.get("int8_granularity", "-"),  # of the convolutions
            "weight_bytes": size.weight_bytes, "overhead_bytes": size.overhead_bytes,
            "quantization_bytes": size.quantization_bytes,
            "float_constants": size.float_constants,
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
            r["weights_over_fp32"] = r["weight_bytes"] / fp32["weight_bytes"]
            r["latency_over_fp32"] = r["edge_p50_ms"] / fp32["edge_p50_ms"]
    return rows


def compare_batches(rows: list[dict], batches: tuple[str, ...], window: np.ndarray) -> None:
    """Time the files of the same mode in alternation (``paired_{batch}_p50_ms`` on each
    row) while they are all still on disk."""
    by_mode: dict[str, list[dict]] = {}
    for r in rows:
        if "path" in r:
            by_mode.setdefault(r["mode"], []).append(r)
    for same in by_mode.values():
        if len(same) < len(batches):
            continue
        medians = paired_latency_ms([Path(r["path"]) for r in same], window)
        for r in same:
            r |= {f"paired_{o['batch']}_p50_ms": m for o, m in zip(same, medians, strict=True)}


def table(rows: list[dict]) -> str:
    head = ("| family | profile | mode | route | bytes | ×fp32 | edge p50 ms | p99 | 2 thr p50 "
            "| 2 thr p99 | batch win/s | predict ms | tf.function ms | predict/edge | tf.fn/edge "
            "| .keras bytes |")
    lines = [head, "|" + "---|" * 16]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['family']} | {r.get('profile', '-')} | {r['mode']} | failed: "
                         f"{r['error'][:80]} |")
            continue
        lines.append(
            f"| {r['family']} | {r['profile']} | {r['mode']} | {r['route']} | {r['bytes']:,} | "
            f"{r.get('bytes_over_fp32', 0):.2f} | {r['edge_p50_ms']:.4f} | {r['edge_p99_ms']:.4f}"
            f" | {r['edge_2t_p50_ms']:.4f} | {r['edge_2t_p99_ms']:.4f} | "
            f"{r['batch_windows_per_s']:,.0f} | {r['keras_predict_p50_ms']:.1f} | "
            f"{r['tf_function_p50_ms']:.3f} | {r['predict_over_edge']:,.0f}× | "
            f"{r['tf_function_over_edge']:.1f}× | {r['keras_bytes']:,} |")
    return "\n".join(lines)


def batch_table(rows: list[dict], batches: tuple[str, ...]) -> str:
    """Per family × profile × mode: the first batch given vs the second (bytes, operators,
    single-window p50 timed in alternation, batch throughput over the 256 windows)."""
    a, b = batches[:2]
    lines = [f"| family | profile | mode | bytes {b} | bytes {a} | {a}/{b} | ops {b} → {a} | "
             f"p50 ms {b} | p50 ms {a} | {a}/{b} p50 | batch win/s {b} | batch win/s {a} |",
             "|" + "---|" * 12]
    keyed = {(r["family"], r["profile"], r["mode"], r["batch"]): r for r in rows
             if "bytes" in r}
    for (family, profile, mode, batch), one in keyed.items():
        other = keyed.get((family, profile, mode, b))
        if batch != a or other is None or f"paired_{a}_p50_ms" not in one:
            continue
        pa, pb = one[f"paired_{a}_p50_ms"], one[f"paired_{b}_p50_ms"]
        lines.append(
            f"| {family} | {profile} | {mode} | {other['bytes']:,} | {one['bytes']:,} | "
            f"{one['bytes'] / other['bytes']:.3f} | {other['operators']} → {one['operators']} | "
            f"{pb:.4f} | {pa:.4f} | {pa / pb:.2f} | {other['batch_windows_per_s']:,.0f} | "
            f"{one['batch_windows_per_s']:,.0f} |")
    return "\n".join(lines)


def size_table(rows: list[dict]) -> tuple[str, list[str]]:
    """int8 vs fp32 per family × profile: whole file, constants only, the fixed overhead
    (file minus constant data: graph, quantization parameters) and whether the int8
    convolutions kept one scale per channel (``converters.worker.int8_granularity``)."""
    lines = ["| family | profile | kind | params | fp32 bytes | int8 bytes | int8/fp32 "
             "| int8/fp32 weights only | overhead fp32 | overhead int8 | int8 conv scales "
             "| ≤ 30 % |",
             "|" + "---|" * 12]
    misses = []
    by_key = {(r["family"], r.get("profile"), r["mode"]): r for r in rows if "bytes" in r}
    for (family, profile, mode), int8 in by_key.items():
        fp32 = by_key.get((family, profile, "fp32"))
        if mode != "int8" or fp32 is None:
            continue
        goal = int8["kind"] == "dense/conv"
        met = int8["bytes_over_fp32"] <= 0.30
        if goal and not met:
            misses.append(f"{family}/{profile} {int8['bytes_over_fp32']:.2%}")
        lines.append(
            f"| {family} | {profile} | {int8['kind']} | {int8['params']:,} | {fp32['bytes']:,} | "
            f"{int8['bytes']:,} | {int8['bytes_over_fp32']:.2%} | "
            f"{int8['weights_over_fp32']:.1%} | {fp32['overhead_bytes']:,} | "
            f"{int8['overhead_bytes']:,} | {int8['int8_granularity']} | "
            f"{('yes' if met else 'no') if goal else '-'} |")
    return "\n".join(lines), misses


def model_kind(model) -> str:
    """dense/conv, recurrent or attention: the int8 size goal is for the first."""
    names = {type(layer).__name__ for layer in model._flatten_layers()}
    if names & {"LSTM", "GRU", "SimpleRNN", "Bidirectional"}:
        return "recurrent"
    return "attention" if names & {"MultiHeadAttention", "Attention", "AdditiveAttention"} else (
        "dense/conv")


def main(argv: list[str] | None = None) -> None:
    import keras

    from training.registry import families

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", help="comma-separated names (default: all registered)")
    parser.add_argument("--profiles", default=",".join(DEFAULT_PROFILES),
                        help=f"comma-separated, of {sorted(PROFILES)}")
    parser.add_argument("--modes", default=",".join(MODE_NAMES))
    parser.add_argument("--batch", default=DEFAULT_BATCH,
                        help="keras route: one, dynamic, or one,dynamic to compare them")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/convert.json")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    benched = families("forecast") + families("anomaly")  # the families of this bench
    known = {f.name: f for f in benched}
    chosen = [known[n] for n in args.families.split(",")] if args.families else benched
    rng = np.random.default_rng(0)
    rows: list[dict] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as work:
        for profile in args.profiles.split(","):
            for family in chosen:
                if PROFILES[profile]["task"] not in (None, family.task):
                    continue
                try:
                    rows += bench_family(family, profile, tuple(args.modes.split(",")),
                                         Path(work), rng, tuple(args.batch.split(",")))
                except Exception as exc:  # a family this bench cannot build is reported
                    rows.append({"family": family.name, "profile": profile, "mode": "-",
                                 "error": f"{exc}"[:300]})
                print(f"  {family.name}/{profile}: done ({time.perf_counter() - start:.0f} s)",
                      file=sys.stderr, flush=True)
                report(rows, args, start, quiet=True)  # a long run keeps what it measured
    report(rows, args, start)


def report(rows: list[dict], args, start: float, quiet: bool = False) -> None:
    """Write the JSON (and print the tables unless ``quiet``; the main ones for the first
    batch given, then the comparison of the batches)."""
    batches = tuple(args.batch.split(","))
    main_rows = [r for r in rows if r.get("batch", batches[0]) == batches[0]]
    slower = [f"{r['family']}/{r['profile']} {r['mode']} ({r['latency_over_fp32']:.2f}× fp32)"
              for r in main_rows
              if r.get("latency_over_fp32", 0) > 1.0 and r["mode"] in CALIBRATED_MODES]
    sizes, misses = size_table(main_rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": os.uname().machine, "cpus": os.cpu_count(),
        "profiles": {p: PROFILES[p] for p in args.profiles.split(",")}, "batches": batches,
        "rows": [{k: v for k, v in r.items() if k != "path"} for r in rows],
        "int8_or_16x8_slower_than_fp32": slower, "int8_over_30pct_dense_conv": misses,
        "wall_s": time.perf_counter() - start}, indent=2) + "\n")
    if quiet:
        return
    print(f"batch: {batches[0]}\n")
    print(table(main_rows))
    if len(batches) > 1:
        print(f"\nbatch {batches[0]} vs {batches[1]} (p50: the two files timed in alternation)\n")
        print(batch_table(rows, batches))
    print("\nint8 size vs fp32 (overhead = file bytes minus constant data)\n")
    print(sizes)
    print("\nquantized slower than fp32: " + (", ".join(slower) or "none"))
    print("dense/conv int8 above 30 % of fp32: " + (", ".join(misses) or "none"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
