"""A classification soft sensor on the simulated tank, end to end: the grade of each lab
sample (off-spec below a conversion of 45 %, on-spec otherwise) estimated from the tank's
tags, beside the logistic-regression, last-class and majority references, converted behind
the parity gate (auto), with its explanations.

The data are those of ``configs/tank_soft_sensor.yaml`` (simulator seed 0, 20 000 rows every
10 s, a lab sample every 300 s known 300 s later with a lab error of 0.3 %), written as a
historian export whose ``grade`` column holds the class at the row where each result became
known (the stamp rounded up to the grid). The model and fit are that config's too (a GRU of
32 units on a 36-step window, time split 0.7 / 0.15 / 0.15). Everything is fixed here, before
any run:

    python bench/soft_sensor_grade.py --out artifacts/grade

prints the test metrics of the model (Keras and the shipped edge model) and of each
reference, the converter's candidates and the explanation rankings, and writes
``bench/results/soft_sensor_grade.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from training.simulator import TAGS, lab_samples, simulate, write_csv  # noqa: E402

SPEC_LIMIT = 45.0  # % conversion: below it a sample is off-spec
CLASSES = ["on-spec", "off-spec"]
STEPS, PERIOD_S, SEED = 20_000, 10.0, 0
LAB_EVERY_S, DEAD_TIME_S, LAB_NOISE = 300.0, 300.0, 0.3
ROOT = Path(__file__).resolve().parent.parent


def grade_export(path: Path) -> dict[str, int]:
    """The tank's run as a historian export with a sparse ``grade`` column; class counts."""
    import pandas as pd

    run = simulate(STEPS, PERIOD_S, seed=SEED)
    write_csv(run, path)
    stamps, values = lab_samples(run, LAB_EVERY_S, DEAD_TIME_S, LAB_NOISE, SEED)
    rows = np.ceil((stamps - run.timestamps[0]) / PERIOD_S - 1e-9).astype(int)
    keep = rows < len(run.timestamps)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    grade = np.full(len(frame), "", dtype=object)
    grade[rows[keep]] = np.where(values[keep] < SPEC_LIMIT, CLASSES[1], CLASSES[0])
    frame["grade"] = grade
    frame.to_csv(path, index=False)
    return {c: int((grade == c).sum()) for c in CLASSES}


def config(export: Path, out: Path) -> dict:
    return {
        "name": "tank_grade", "task": "soft_sensor", "family": "gru", "model": {"units": [32]},
        "data": {"source": "historian", "path": str(export), "tags": [t for t, _ in TAGS],
                 "units": dict(TAGS)},
        "window": {"period_s": PERIOD_S, "length": 36, "stride": 1, "max_gap_s": 30},
        "soft_sensor": {"target": "grade", "kind": "classification", "classes": CLASSES,
                        "dead_time_s": DEAD_TIME_S},
        "split": {"by": "time", "train": 0.7, "val": 0.15},
        "fit": {"epochs": 40, "batch_size": 32, "patience": 6, "learning_rate": 0.002,
                "clip_norm": 1.0},
        "output_dir": str(out / "runs")}


def table(trained: dict, edge: dict, quantization: str) -> list[str]:
    rows = [("gru (Keras, float)", trained, ""), (f"gru at the edge ({quantization})", edge, ""),
            ("logistic regression", trained, "logistic_"),
            ("last measured class", trained, "last_class_"),
            ("majority class", trained, "majority_")]
    lines = ["| estimate | accuracy | balanced accuracy | macro F1 |", "|---|---|---|---|"]
    for name, metrics, prefix in rows:
        cells = [metrics.get(prefix + k, math.nan) for k in ("accuracy", "balanced_accuracy",
                                                            "f1_macro")]
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "grade")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    export = args.out / "tank_grade.csv"
    counts = grade_export(export)
    raw = config(export, args.out)
    (args.out / "tank_grade.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    print(f"labels by class: {counts}", flush=True)

    from converters.build import build_auto
    from training.config import TrainConfig, check_train_config
    from training.train import train

    cfg = TrainConfig.model_validate(raw)
    check_train_config(cfg, "tank_grade.yaml")
    start = time.monotonic()
    run_dir = train(cfg)
    trained_s = time.monotonic() - start
    bundle, attempts = build_auto(run_dir, args.out / "bundles")
    m = bundle.manifest
    trained, edge = m.metrics["training"], m.metrics["edge"]
    explained = json.loads((run_dir / "explanations.json").read_text())
    lines = table(trained, edge, m.quantization)
    print("\n".join(lines))
    print(f"labels train/val/test {trained['labels_train']:.0f}/{trained['labels_val']:.0f}/"
          f"{trained['labels_test']:.0f}; logistic C {trained.get('logistic_C')}; last class "
          f"scored on {trained['last_class_n']:.0f}; edge agreement {edge['agreement']:.4f}, "
          f"prob_error {edge['prob_error']:.4f}; trained in {trained_s:.0f} s "
          f"({m.training.epochs} epochs, best {m.training.best_epoch})")
    print("\n".join(attempts))
    for key in ("ranking", "permutation_cross_entropy_increase", "permutation_accuracy_drop",
                "integrated_gradients", "predicted_windows", "integrated_gradients_by_class"):
        print(f"{key}: {explained[key]}")
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "soft_sensor_grade.json").write_text(json.dumps(
        {"counts": counts, "training": trained, "edge": edge, "quantization": m.quantization,
         "candidates": attempts, "explanations": explained, "run_dir": str(run_dir),
         "bundle": str(bundle.root), "train_seconds": trained_s}, indent=1, default=str))


if __name__ == "__main__":
    main()
