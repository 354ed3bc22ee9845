"""``procedge`` command line. Workstation commands import TensorFlow lazily, so ``procedge run``
works on a gateway that has only the ``[edge]`` extra, and a config error is reported (naming
the file and the field) before TensorFlow loads.

Exit codes: 0 ok, 1 runtime failure (a bundle that does not verify, an unreachable broker, a
failed training), 2 usage or config error."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from edge_runtime.config import LOG_LEVELS
from edge_runtime.contract import AUTO_ORDER, MODE_NAMES, SHIPPED_TASKS
from edge_runtime.validation import ConfigError
from procedge import tune_cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _cmd_train(args) -> None:
    from training.config import check_train_config, load_train_config

    config = load_train_config(args.config)
    check_train_config(config, args.config)  # all before TensorFlow loads
    if args.output_dir:
        config.output_dir = args.output_dir
    if args.strict:
        config.data.strict = True
    config.fit.resume = args.resume
    from training.train import train

    run_dir = train(config)
    metrics = json.loads((run_dir / "training.json").read_text())["metrics"]["keras"]
    if args.json:
        _print_json({"ok": True, "name": config.name, "run_dir": str(run_dir),
                     "metrics": metrics})
        return
    print(f"{config.name}: {run_dir}  " + "  ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    from edge_runtime.bundle import RunRecord
    from training.budget import summary

    print(summary(config.name, RunRecord.load(run_dir).training))


def _cmd_pretrain(args) -> None:
    from edge_runtime.validation import read_yaml, validate
    from training.images.backbone_config import PretrainConfig

    config = validate(PretrainConfig, read_yaml(args.config, "pretrain config"), args.config,
                      "pretrain config")  # before TensorFlow loads
    from training.images.pretrain import pretrain

    path = pretrain(config)
    record = json.loads(Path(f"{path}.json").read_text())
    print(f"{config.name}: {path}  pretext_accuracy={record['pretext_accuracy']:.4f}  "
          f"epochs={record['epochs']}  fit_seconds={record['fit_seconds']}")


def _print_json(body: dict) -> None:
    print(json.dumps(body, default=str))


def _cmd_convert(args) -> None:
    from converters.build import ConvertOptions, build, summary_lines
    from converters.parity import Budgets

    candidates = AUTO_ORDER if args.mode == "auto" else (args.mode,)
    if args.candidates:
        candidates = tuple(args.candidates.split(","))
    given = {t.budget_key: getattr(args, f"budget_{t.name}") for t in SHIPPED_TASKS}
    options = ConvertOptions(
        candidates=candidates, budgets=Budgets(**{k: v for k, v in given.items() if v is not None}),
        budget=args.budget, int8_io=args.int8_io, sign_key=args.sign_key, route=args.route,
        qat=args.qat, prune=args.prune, allow_offline=args.allow_offline, batch=args.batch)
    for run_dir in args.run_dirs:
        if not (run_dir / "training.json").is_file():
            raise ConfigError(f"{run_dir}: not a run directory of `procedge train` "
                              "(no training.json)")
        _refuse_workstation_only(run_dir)
    built = []
    for run_dir in args.run_dirs:
        bundle, report = build(run_dir, args.out, options)
        edge = bundle.manifest.metrics["edge"]
        built.append({"name": bundle.manifest.name, "bundle": str(bundle.root),
                      "quantization": bundle.manifest.quantization, "edge": edge,
                      "report": report})
        if args.json:
            continue
        print("\n".join(f"  {line}" for line in summary_lines(report)))
        print(f"{bundle.manifest.name}: {bundle.root} ({bundle.manifest.quantization})  "
              + "  ".join(f"edge {k}={v:.4g}" for k, v in edge.items()))
    if args.json:
        _print_json({"ok": True, "bundles": built})


def _refuse_workstation_only(run_dir: Path) -> None:
    """A run of a task that never ships (``generative``) is refused before TensorFlow loads."""
    from edge_runtime.contract import task_spec

    task = json.loads((run_dir / "training.json").read_text()).get("task", "")
    try:
        ships = task_spec(task).ships
    except KeyError:
        return  # the converter names the problem
    if not ships:
        raise ConfigError(f"{run_dir}: a {task} run is a workstation job and is not converted "
                          f"for a gateway; use `procedge generate {run_dir}` to write its "
                          "synthetic windows")


def _cmd_generate(args) -> None:
    from training.synthetic import FORMATS, class_indices, generate, write

    meta_path = args.run_dir / "generative.json"
    if not meta_path.is_file():
        raise ConfigError(f"{args.run_dir}: not a run directory of a generative model (no "
                          "generative.json; train one with task: generative)")
    if json.loads(meta_path.read_text()).get("kind") == "image":
        return _generate_images(args, json.loads(meta_path.read_text()))
    if args.out.suffix not in FORMATS:
        raise ConfigError(f"--out {args.out}: write .csv or .parquet")
    if args.n < 1:
        raise ConfigError(f"--n {args.n}: at least one window")
    try:
        class_indices(json.loads(meta_path.read_text()), 1, args.condition)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    frame, info = generate(args.run_dir, args.n, args.condition, args.seed)  # TF from here
    side = write(frame, info, args.out)
    if args.json:
        _print_json({"ok": True, "out": str(args.out), "metadata": str(side)} | info)
        return
    counts = ", ".join(f"{k}: {v}" for k, v in info["classes"].items())
    print(f"wrote {info['windows']} synthetic windows ({counts}) of {info['window']} rows to "
          f"{args.out}; metadata (synthetic: true) in {side}")


def _generate_images(args, meta: dict) -> None:
    """An image generator's run: ``--out`` is a folder of PNGs (and synthetic.json)."""
    from training.synthetic import class_indices

    if args.out.suffix in (".csv", ".parquet") or args.out.is_file():
        raise ConfigError(f"--out {args.out}: an image run writes PNGs into a folder")
    if args.n < 1:
        raise ConfigError(f"--n {args.n}: at least one image")
    try:
        class_indices(meta, 1, args.condition)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    from training.images.generative_task import write_synthetic  # TF from here

    info = write_synthetic(args.run_dir, args.n, args.condition, args.seed, args.out)
    if args.json:
        _print_json({"ok": True, "out": str(args.out)} | {k: v for k, v in info.items()
                                                           if k != "files"})
        return
    counts = ", ".join(f"{k}: {v}" for k, v in info["classes"].items())
    print(f"wrote {info['images']} synthetic {info['size']}x{info['size']} images ({counts}) "
          f"to {args.out}; metadata (synthetic: true) in {args.out / 'synthetic.json'}")


def _cmd_run(args) -> None:
    from edge_runtime.daemon import run

    run(args.config, log_level=_cli_log_level(args), log_format=args.log_format)


def _cmd_verify(args) -> None:
    from edge_runtime.bundle import Bundle

    if not args.bundle.exists():
        raise ConfigError(f"{args.bundle}: no such bundle (a bundle directory or .zip)")
    if args.public_key is not None and not args.public_key.is_file():
        raise ConfigError(f"--public-key {args.public_key}: no such file")
    bundle = Bundle.load(args.bundle, args.public_key)
    bundle.release()  # a zip's temporary folder: only the manifest is used from here
    m = bundle.manifest
    if args.json:
        _print_json({"ok": True, "bundle": str(args.bundle), "name": m.name,
                     "version": m.version, "task": m.task, "family": m.family,
                     "quantization": m.quantization, "files": len(m.files),
                     "signed": args.public_key is not None})
        return
    print(f"OK {m.name} v{m.version} {m.task}/{m.family} {m.quantization}, "
          f"{len(m.files)} file(s) verified")


def _mqtt_of(args):
    """The ``mqtt:`` section of ``--config EDGE.yaml`` (TLS, credentials), or None."""
    if args.config is None:
        return None
    from edge_runtime.config import load_edge_config

    mqtt = load_edge_config(args.config).mqtt
    if args.host is not None:
        mqtt.host = args.host
    if args.port is not None:
        mqtt.port = args.port
    return mqtt


def _connect(args, client_id: str):
    from procedge.feeds import connect

    mqtt = _mqtt_of(args)
    if mqtt is not None:
        return connect(mqtt.host, mqtt.port, client_id, mqtt)
    return connect(args.host or "127.0.0.1", args.port or 1883, client_id)


def _cmd_simulate(args) -> None:
    if args.batches:
        return _export_batches(args)
    if args.plant == "batch_reactor":
        return _simulate_batch_reactor(args)
    import time

    from procedge.feeds import publish_rows
    from training.simulator import simulate

    faults = [_parse_fault(f) for f in args.fault]
    start = time.time() if args.start == "now" else float(args.start)
    start -= start % args.period
    run = simulate(args.steps, args.period, seed=args.seed, start_epoch_s=start, faults=faults)
    client = _connect(args, "procedge-simulator")
    sent = publish_rows(client, args.topic, args.uns, run.tag_names, run.timestamps, run.values,
                        speed=args.speed)
    client.disconnect()
    print(f"published {sent} samples of {len(run.tag_names)} tags"
          + (f" with faults {[f.kind + ':' + f.tag for f in faults]}" if faults else ""))


def _export_batches(args) -> None:
    """``--batches N --out FILE.csv``: a historian export of N jacketed-reactor batches."""
    from training.control.batch_export import simulate_batches

    if not args.out:
        raise ConfigError("--batches needs --out FILE.csv (where the export is written)")
    frame = simulate_batches(args.batches, seed=args.seed, recipe_columns=args.recipe_columns)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"wrote {args.batches} batches ({len(frame)} rows) to {args.out}")


def _simulate_batch_reactor(args) -> None:
    """The batch reactor as a plant on MQTT, closed loop with the gateway's set-points."""
    from procedge.plant import StaleTag, run_batch

    try:
        stale = tuple(StaleTag.parse(s) for s in args.stale)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    from training.control.envs import make_env

    env = make_env(args.env, seed=args.seed)
    tag = env.unwrapped.action_spec.name
    write_topic = (args.write_topic or "{uns}/setpoint/{tag}").format(uns=args.uns, tag=tag)
    client = _connect(args, "procedge-plant")
    try:
        start = None if args.start == "now" else float(args.start)
        result = run_batch(client, env, args.uns, write_topic, args.speed or 1.0, args.seed,
                           stale, raw_topic=args.topic, start_s=start)
    finally:
        client.loop_stop()
        client.disconnect()
    print(f"yield {result.yield_:.4f}")


def _parse_fault(text: str):
    from training.simulator import Fault

    try:
        kind, tag, start_s, magnitude = text.split(":")
        return Fault(kind, tag, float(start_s), float(magnitude))
    except ValueError as exc:
        raise ConfigError(f"--fault {text!r}: expected KIND:TAG:START_S:MAGNITUDE") from exc


def _cmd_replay(args) -> None:
    from procedge.feeds import publish_rows
    from training.historian import epoch_seconds, read_export

    if not args.csv.is_file():
        raise ConfigError(f"{args.csv}: no such file")
    try:
        frame = read_export(Path(args.csv), args.timestamp_column)
    except ValueError as exc:  # e.g. no such timestamp column
        raise ConfigError(f"{exc} (--timestamp-column)") from exc
    tags = [c for c in frame.columns if c != args.timestamp_column]
    client = _connect(args, "procedge-replay")
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
    parser = argparse.ArgumentParser(prog="procedge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"procedge {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging (same as --log-level DEBUG)")
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS,
                        help="default WARNING; `run`: the config's log_level")
    parser.add_argument("--log-format", choices=["text", "json"],
                        help="default text; `run`: the config's log_format")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML training config")
    p.add_argument("config", type=Path)
    p.add_argument("--output-dir", type=Path, help="override output_dir of the config")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--strict", action="store_true",
                   help="data-quality warnings (unsorted or duplicate timestamps, bad values, "
                   "gaps, flat-lined tags, zone assumed) are errors")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last checkpoint (<run>/backup)")
    p.set_defaults(func=_cmd_train)
    tune_cli.add_parser(sub)

    p = sub.add_parser("pretrain", help="pretrain an image backbone (rotation pretext) into "
                       "a weights file for model.backbone.weights")
    p.add_argument("config", type=Path)
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser("convert", help="convert trained runs to verified LiteRT bundles")
    p.add_argument("run_dirs", nargs="+", type=Path, help="run directories from `train`")
    p.add_argument("--mode", default="auto", choices=["auto", *MODE_NAMES],
                   help="quantization; auto = smallest mode that passes the parity gate")
    p.add_argument("--out", type=Path, default=Path("artifacts/bundles"))
    p.add_argument("--budget", type=float, help="parity budget of the run's own task metric ("
                   + "; ".join(f"{t.name}: {t.parity_metric} {_budget_text(t)}, default "
                               f"{t.budget:g}" for t in SHIPPED_TASKS) + ")")
    for t in SHIPPED_TASKS:
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
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("generate", help="write synthetic windows (or images) of a generative "
                       "run")
    p.add_argument("run_dir", type=Path, help="run directory of a task: generative model")
    p.add_argument("--n", type=int, required=True, help="windows or images (of each class unless "
                   "--condition names one)")
    p.add_argument("--condition", help="a class of the run (its condition column's value)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same windows")
    p.add_argument("--out", type=Path, required=True, help="FILE.csv or FILE.parquet; "
                   "FILE.<suffix>.json beside it says synthetic: true (an image run: a "
                   "folder of PNGs with synthetic.json)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("run", help="run the edge daemon")
    p.add_argument("--config", required=True, type=Path, help="edge YAML config")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("verify", help="verify a bundle's hashes and manifest")
    p.add_argument("bundle", type=Path)
    p.add_argument("--public-key", type=Path, help="also require a valid Ed25519 signature")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
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
            p.add_argument("--plant", choices=("tank", "batch_reactor"), default="tank",
                           help="tank: publish the tank simulator's data; batch_reactor: one "
                           "batch closed loop, set-points read from --write-topic, the yield "
                           "printed (--speed 0 = real time)")
            p.add_argument("--batches", type=int, default=0, help="write a historian CSV of "
                           "N jacketed-reactor batches to --out instead (batch_id, phase, "
                           "tags, batch-end yield); nothing is published")
            p.add_argument("--out", type=Path, help="--batches: the CSV to write")
            p.add_argument("--recipe-columns", action="store_true",
                           help="--batches: add each batch's recipe (recipe_T_start, "
                                "recipe_T_end, recipe_tau_h), known at batch start, as columns")
            p.add_argument("--env", choices=("kinetics", "jacketed"), default="kinetics",
                           help="batch_reactor: the environment")
            p.add_argument("--write-topic", default="",
                           help="batch_reactor: where set-points arrive (default "
                           "{uns}/setpoint/<action tag>; the edge config's write_topic)")
            p.add_argument("--stale", action="append", default=[], metavar="TAG:FROM:TO",
                           help="batch_reactor: do not publish TAG for steps FROM..TO-1")
        p.add_argument("--config", type=Path, metavar="EDGE.yaml",
                       help="connect as the `mqtt:` section of this edge config says (host, "
                       "port, TLS, user name and password)")
        p.add_argument("--host", help="broker host (default 127.0.0.1, or --config's)")
        p.add_argument("--port", type=int, help="broker port (default 1883, or --config's)")
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
    "tep-softsensor": "evaluation.tep_softsensor",
    "images": "evaluation.images",
    "particles": "evaluation.particles",
    "reactor": "evaluation.reactor",
    "rl-classic": "evaluation.rl_classic",
    "generative": "evaluation.generative",
    "generative-images": "evaluation.image_generative",
    "generative-augment": "evaluation.generative_augment",
    "attribution": "evaluation.attribution",
}


def _cmd_eval(args) -> None:
    import importlib

    importlib.import_module(EVALS[args.benchmark]).main(args.rest)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("procedge")
    except PackageNotFoundError:  # run from a checkout that is not installed
        import tomllib

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        return tomllib.loads(pyproject.read_text())["project"]["version"]


def _cli_log_level(args) -> str | None:
    return "DEBUG" if args.verbose else args.log_level


def main(argv: list[str] | None = None) -> None:
    """Exit codes: 0 ok, 1 runtime failure, 2 usage or config error (argparse's own too)."""
    args = build_parser().parse_args(argv)
    if args.command != "run":  # the daemon sets up logging from its config and these flags
        from edge_runtime.logs import setup_logging

        setup_logging(_cli_log_level(args) or "WARNING", args.log_format or "text")
    try:
        args.func(args)
    except ConfigError as exc:
        _fail(args, exc, 2)
    except (ValueError, RuntimeError, OSError) as exc:
        _fail(args, exc, 1)


def _fail(args, exc: Exception, code: int) -> None:
    message = str(exc) if not isinstance(exc, OSError) or not exc.filename else (
        f"{exc.filename}: {exc.strerror or exc}")
    print(f"procedge {args.command}: error: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        _print_json({"ok": False, "error": message, "exit_code": code})
    raise SystemExit(code) from exc


if __name__ == "__main__":
    main()
