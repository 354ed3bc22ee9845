"""``procedge tune CONFIG``: the subcommand's arguments and body (training/tune.py does the
search). The config and its ``tune`` section are checked before TensorFlow loads."""

from __future__ import annotations

import json
from pathlib import Path

from edge_runtime.validation import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="search a model's hyper-parameters (KerasTuner) on the "
                       "validation split; write the best config")
    p.add_argument("config", type=Path, help="training config with a `tune:` section")
    p.add_argument("--out", type=Path, help="where the best config, trials table and plot "
                   "go (default <output_dir>/tune/<name>)")
    p.add_argument("--resume", action="store_true", help="continue the search kept in "
                   "<out>/kt (default: start afresh)")
    p.add_argument("--workers", type=int, default=1, help="distributed chief "
                   "(KERASTUNER_TUNER_ID=chief): workers to wait for before it stops")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)


def run(args) -> None:
    from training.config import check_train_config, load_train_config
    from training.tune_cluster import role
    from training.tune_config import check_tune_space

    config = load_train_config(args.config)
    if config.tune is None:
        raise ConfigError(f"{args.config}: invalid training config\n  tune: no `tune:` "
                          "section (the search space and algorithm; docs/soft_sensors.md)")
    check_train_config(config, args.config)

    def fail(field: str, message: str) -> None:
        raise ConfigError(f"{args.config}: invalid training config\n  {field}: {message}")

    check_tune_space(config, fail)
    if args.workers < 1:
        fail("--workers", f"at least 1, got {args.workers}")
    where = role()  # a partial KERASTUNER_* setting is an error here, before TensorFlow
    out = args.out or Path(config.output_dir) / "tune" / config.name
    from training.tune import tune  # TensorFlow loads here

    result = tune(config, args.config, out, resume=args.resume, workers=args.workers)
    if result is None:
        print(f"{where}: trials done; the chief writes the results")
        return
    body = {"ok": True, "best_config": str(result.best_config), "trials_csv":
            str(result.table_csv), "trials_json": str(result.table_json),
            "plot": str(result.plot), "best": result.best}
    if args.json:
        print(json.dumps(body, default=str))
        return
    best = result.best
    from training.tune_report import score_column

    score = score_column(config)
    print(f"{config.name}: best trial {best['trial']} {score}={best[score]:.4g} "
          f"(val_loss={best['val_loss']:.4g})\n  best config: {result.best_config}\n  "
          f"trials: {result.table_csv}  plot: {result.plot}")
