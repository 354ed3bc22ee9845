"""What `procedge tune` writes: the best config, the trials table and its plot.

``<name>.tuned.yaml``: the original config file's mapping with the best trial's values put
where they go and the ``tune`` section removed (``data.path`` made absolute, since the file
may live elsewhere), so `procedge train` takes it unchanged. ``trials.csv`` / ``trials.json``:
one row per trial (values, val_loss, val_rmse — val_accuracy for a classifier —, epochs run,
seconds, status). ``trials.png``: the validation RMSE (a classifier's cross-entropy) by trial
(and the best so far), and against each searched value.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from edge_runtime.validation import read_yaml
from training.config import TrainConfig

METRICS = ("val_loss", "epochs", "seconds")  # every trial's; plus its score_column


def score_column(config: TrainConfig) -> str:
    """The score shown beside ``val_loss``: ``val_rmse`` (the target's unit), or a
    classifier's ``val_accuracy`` (at the epoch of the best val_loss)."""
    return "val_accuracy" if config.soft_sensor.kind == "classification" else "val_rmse"


@dataclass
class TuneResult:
    best_config: Path
    table_csv: Path
    table_json: Path
    plot: Path
    best: dict  # the best trial's row


def trial_rows(oracle, score: str = "val_rmse") -> list[dict]:
    """One row per trial in start order: id, status, searched values, budget, metrics
    (:data:`METRICS` and ``score``)."""
    rows = []
    for trial_id in oracle.start_order:
        trial = oracle.trials[trial_id]
        values = trial.hyperparameters.values
        row = {"trial": trial_id, "status": str(trial.status)}
        row |= {k: v for k, v in values.items() if not k.startswith("tuner/")}
        if "tuner/epochs" in values:
            row["budget_epochs"] = values["tuner/epochs"]
        for name in (*METRICS[:1], score, *METRICS[1:]):
            found = trial.metrics.exists(name)
            row[name] = trial.metrics.get_best_value(name) if found else math.nan
        rows.append(row)
    return rows


def write_results(oracle, config: TrainConfig, config_path: Path, out: Path,
                  epochs: int) -> TuneResult:
    from training.tune import trial_config

    out.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(oracle, score_column(config))
    done = [r for r in rows if math.isfinite(r["val_loss"])]
    if not done:
        raise RuntimeError(f"no trial finished ({len(rows)} started); see the messages above")
    best = min(done, key=lambda r: r["val_loss"])
    names = list(config.tune.space)
    best_values = {k: best[k] for k in names if k in best}
    tuned = trial_config(config, best_values)
    if "budget_epochs" in best:  # Hyperband: the epochs the winner was scored with
        tuned.fit.epochs = max(tuned.fit.epochs, int(best["budget_epochs"]))
    best_path = out / f"{config.name}.tuned.yaml"
    write_config(config_path, tuned, best_values, best, len(rows), best_path)
    table_csv, table_json = out / "trials.csv", out / "trials.json"
    write_table(rows, table_csv)
    table_json.write_text(json.dumps(
        {"config": str(config_path), "algorithm": config.tune.algorithm,
         "objective": config.tune.objective, "seed": config.tune.seed,
         "epochs_per_trial": epochs, "max_trials": config.tune.max_trials,
         "best": best, "best_config": str(best_path), "trials": rows}, indent=2, default=str))
    plot = out / "trials.png"
    plot_trials(rows, names, config, plot)
    return TuneResult(best_path, table_csv, table_json, plot, best)


def write_config(config_path: Path, tuned: TrainConfig, values: dict, best: dict,
                 trials: int, path: Path) -> None:
    """The original YAML with only the searched values changed and ``tune`` removed."""
    raw = read_yaml(Path(config_path), "training config")
    raw.pop("tune", None)
    fit = raw.setdefault("fit", {})
    if "learning_rate" in values:
        fit["learning_rate"] = tuned.fit.learning_rate
    if "batch_size" in values:
        fit["batch_size"] = tuned.fit.batch_size
    if "budget_epochs" in best:
        fit["epochs"] = tuned.fit.epochs
    if "window" in values:
        raw.setdefault("window", {})["length"] = tuned.window.length
    raw["model"] = _plain(tuned.model)
    if tuned.data.path is not None:
        raw["data"]["path"] = str(tuned.data.path)
    if tuned.data.batch is not None and tuned.data.batch.targets is not None:
        raw["data"]["batch"]["targets"] = str(tuned.data.batch.targets)
    score = score_column(tuned)
    head = (f"# procedge tune {config_path}: the best of {trials} trials "
            f"(val_loss {best['val_loss']:.5g}, {score} {best[score]:.5g}, on the "
            f"validation split)\n# searched: {values}\n")
    path.write_text(head + yaml.safe_dump(raw, sort_keys=False))


def _plain(value):
    """YAML-safe: tuples as lists, numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


def write_table(rows: list[dict], path: Path) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)


def plot_trials(rows: list[dict], names: list[str], config: TrainConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = config.soft_sensor.kind == "classification"  # minimised, as the search does
    scores = [r["val_loss" if classes else "val_rmse"] for r in rows]
    from matplotlib.ticker import NullFormatter

    panels = 1 + len(names)
    cols = min(panels, 3)
    rows_n = math.ceil(panels / cols)
    fig, grid = plt.subplots(rows_n, cols, figsize=(3.8 * cols, 3.0 * rows_n), squeeze=False)
    axes = grid.ravel()
    for ax in axes[panels:]:
        ax.set_visible(False)
    ax = axes[0]
    ax.plot(range(len(rows)), scores, "o", label="trial")
    best, so_far = math.inf, []
    for s in scores:
        best = min(best, s) if math.isfinite(s) else best
        so_far.append(best)
    ax.step(range(len(rows)), so_far, where="post", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation cross-entropy" if classes else
                  f"validation RMSE ({config.soft_sensor.target})")
    ax.legend(fontsize=7)
    for ax, name in zip(axes[1:panels], names, strict=True):
        xs = [r.get(name) for r in rows]
        ax.plot([str(x) if isinstance(x, str) else x for x in xs], scores, "o")
        if config.tune.space[name].sampling == "log":
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(name)
    fig.suptitle(f"{config.name}: {config.tune.algorithm}, {len(rows)} trials", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
