"""``procedge`` command line. Workstation commands import TensorFlow lazily, so ``procedge run``
works on a gateway that has only the ``[edge]`` extra."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from edge_runtime.contract import AUTO_ORDER, MODE_NAMES, TASKS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _cmd_train(args) -> None:
    from training.config import load_train_config
    from training.train import train

    config = load_train_config(args.config)
    if args.output_dir:
        config.output_dir = args.output_dir
    config.fit.resume = args.resume
    run_dir = train(config)
    metrics = json.loads((run_dir / "training.json").read_text())["metrics"]["keras"]
    print(f"{config.name}: {run_dir}  " + "  ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    from edge_runtime.bundle import RunRecord
    from training.budget import summary

    print(summary(config.name, RunRecord.load(run_dir).training))


def _cmd_convert(args) -> None:
    from converters.build import ConvertOptions, build, summary_lines
    from converters.parity import Budgets

    candidates = AUTO_ORDER if args.mode == "auto" else (args.mode,)
    if args.candidates:
        candidates = tuple(args.candidates.split(","))
    given = {t.budget_key: getattr(args, f"budget_{t.name}") for t in TASKS}
    options = ConvertOptions(
        candidates=candidates, budgets=Budgets(**{k: v for k, v in given.items() if v is not None}),
        budget=args.budget, int8_io=args.int8_io, sign_key=args.sign_key, route=args.route,
        qat=args.qat, prune=args.prune, allow_offline=args.allow_offline, batch=args.batch)
    for run_dir in args.run_dirs:
        bundle, report = build(run_dir, args.out, options)
        print("\n".join(f"  {line}" for line in summary_lines(report)))
        edge = bundle.manifest.metrics["edge"]
        print(f"{bundle.manifest.name}: {bundle.root} ({bundle.manifest.quantization})  "
              + "  ".join(f"edge {k}={v:.4g}" for k, v in edge.items()))


def _cmd_run(args) -> None:
    from edge_runtime.daemon import run

    run(args.config)


def _cmd_verify(args) -> None:
    from edge_runtime.bundle import Bundle

    bundle = Bundle.load(args.bundle, args.public_key)
    bundle.release()  # a zip's temporary folder: only the manifest is used from here
    m = bundle.manifest
    print(f"OK {m.name} v{m.version} {m.task}/{m.family} {m.quantization}, "
          f"{len(m.files)} file(s) verified")


def _cmd_simulate(args) -> None:
    import time

    from procedge.feeds import connect, publish_rows
    from training.simulator import simulate

    faults = [_parse_fault(f) for f in args.fault]
    start = time.time() if args.start == "now" else float(args.start)
    start -= start % args.period
    run = simulate(args.steps, args.period, seed=args.seed, start_epoch_s=start, faults=faults)
    client = connect(args.host, args.port, "procedge-simulator")
    sent = publish_rows(client, args.topic, args.uns, run.tag_names, run.timestamps, run.values,
                        speed=args.speed)
    client.disconnect()
    print(f"published {sent} samples of {len(run.tag_names)} tags"
          + (f" with faults {[f.kind + ':' + f.tag for f in faults]}" if faults else ""))


def _parse_fault(text: str):
    from training.simulator import Fault

    try:
        kind, tag, start_s, magnitude = text.split(":")
        return Fault(kind, tag, float(start_s), float(magnitude))
    except ValueError as exc:
        raise SystemExit(f"--fault {text!r}: expected KIND:TAG:START_S:MAGNITUDE") from exc


def _cmd_replay(args) -> None:
    from procedge.feeds import connect, publish_rows
    from training.historian import epoch_seconds, read_export

    frame = read_export(Path(args.csv), args.timestamp_column)
    tags = [c for c in frame.columns if c != args.timestamp_column]
    client = connect(args.host, args.port, "procedge-replay")
    sent = publish_rows(client, args.topic, args.uns, tags,
                        epoch_seconds(frame[args.timestamp_column]),
                        frame[tags].to_numpy(dtype=float), speed=args.speed)
    client.disconnect()
    print(f"replayed {sent} samples of {len(tags)} tags from {args.csv}")


def _cmd_demo(args) -> None:
    from procedge.demo import main as demo

    demo(workdir=args.workdir, allow_fallback=not args.require_mosquitto)


def _budget_text(task) -> str:
    return ("increase, relative" if task.budget_kind == "relative"
            else "drop, in points as a fraction")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="procedge", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML training config")
    p.add_argument("config", type=Path)
    p.add_argument("--output-dir", type=Path, help="override output_dir of the config")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last checkpoint (<run>/backup)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("convert", help="convert trained runs to verified LiteRT bundles")
    p.add_argument("run_dirs", nargs="+", type=Path, help="run directories from `train`")
    p.add_argument("--mode", default="auto", choices=["auto", *MODE_NAMES],
                   help="quantization; auto = smallest mode that passes the parity gate")
    p.add_argument("--out", type=Path, default=Path("artifacts/bundles"))
    p.add_argument("--budget", type=float, help="parity budget of the run's own task metric ("
                   + "; ".join(f"{t.name}: {t.parity_metric} {_budget_text(t)}, default "
                               f"{t.budget:g}" for t in TASKS) + ")")
    for t in TASKS:
        p.add_argument(f"--{t.budget_flag}", dest=f"budget_{t.name}", type=float,
                       help=f"{t.name} budget: {t.parity_metric} {_budget_text(t)}")
    p.add_argument("--candidates", help="auto: comma-separated modes to measure "
                   f"(default {','.join(AUTO_ORDER)})")
    p.add_argument("--int8-io", action="store_true", help="int8/int16x8 with integer I/O")
    p.add_argument("--route", default="auto", choices=["auto", "keras", "fused", "unroll"],
                   help="recurrent layers: auto = fused LSTM via tf-keras, else unroll")
    p.add_argument("--batch", default="one", choices=["one", "dynamic"],
                   help="input batch of models without recurrent layers: one = fixed batch of "
                   "one (smaller, fewer ops; the edge runs one window per invoke), dynamic")
    p.add_argument("--sign-key", type=Path, help="Ed25519 private key (PEM) to sign bundles")
    p.add_argument("--allow-offline", action="store_true",
                   help="bundle an offline-only family (e.g. bilstm) for offline evaluation")
    p.add_argument("--qat", action="store_true", help="quantization-aware fine-tuning first "
                   "(tf-keras + tensorflow-model-optimization; dense and conv families)")
    p.add_argument("--prune", type=float, metavar="SPARSITY",
                   help="magnitude pruning to SPARSITY (0-1) before conversion")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("run", help="run the edge daemon")
    p.add_argument("--config", required=True, type=Path, help="edge YAML config")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("verify", help="verify a bundle's hashes and manifest")
    p.add_argument("bundle", type=Path)
    p.add_argument("--public-key", type=Path, help="also require a valid Ed25519 signature")
    p.set_defaults(func=_cmd_verify)

    for name, func, text in (("simulate", _cmd_simulate, "publish simulated plant data"),
                             ("replay", _cmd_replay, "publish a historian CSV at N× real time")):
        p = sub.add_parser(name, help=text)
        if name == "replay":
            p.add_argument("csv", type=Path)
            p.add_argument("--timestamp-column", default="timestamp")
        else:
            p.add_argument("--steps", type=int, default=720)
            p.add_argument("--period", type=float, default=5.0, help="seconds per sample")
            p.add_argument("--seed", type=int, default=7)
            p.add_argument("--start", default="now", help="'now' or epoch seconds")
            p.add_argument("--fault", action="append", default=[],
                           help="KIND:TAG:START_S:MAGNITUDE, KIND in drift|step|stuck")
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=1883)
        p.add_argument("--uns", default="procedge/site/area/line1")
        p.add_argument("--topic", default="{uns}/raw/{tag}")
        p.add_argument("--speed", type=float, default=0.0, help="N× real time; 0 = max")
        p.set_defaults(func=func)

    p = sub.add_parser("eval", help="evaluate on a public benchmark with its protocol")
    p.add_argument("benchmark", choices=sorted(EVALS))
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of that benchmark")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("demo", help="train, convert, run the daemon on a simulated fault")
    p.add_argument("--workdir", type=Path, default=Path("artifacts/demo"))
    p.add_argument("--require-mosquitto", action="store_true")
    p.set_defaults(func=_cmd_demo)
    return parser


# benchmark name → module with ``main(argv)``; each prints a table and can write --json.
EVALS: dict[str, str] = {
    "ett": "evaluation.ett",
    "skab": "evaluation.skab",
    "tep": "evaluation.tep",
    "images": "evaluation.images",
}


def _cmd_eval(args) -> None:
    import importlib

    importlib.import_module(EVALS[args.benchmark]).main(args.rest)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"procedge {args.command}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
