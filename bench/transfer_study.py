"""From scratch vs transferred on the magnetic tiles (6 classes) at 10 %, 25 % and 100 % of
the training images, 3 seeds: the study of docs/images.md (Transfer learning).

Protocol (fixed in bench/HISTORY.md before the run): one stratified validation split (20 %,
seed 0) of the training folder, the same for every cell; the transfer backbone pretrained by
``procedge pretrain``'s rotation pretext on the training part only (never the validation
images); per cell a stratified subset of the training part (seed s), the same MobileNetV2
(alpha 0.35, 64 px) trained through the image trainer from scratch or from the pretrained
weights (stage 1 frozen, stage 2 top layers); the same budget in images seen for both arms.
Cells run in the order 10 %, 25 %, 100 % (both arms, seeds 0–2), so a time limit cuts the
largest fractions first; each finished cell is appended to ``--out`` (JSON lines) at once.

    nice -n 10 timeout 2700 python -m bench.transfer_study --out bench/results/transfer.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edge_runtime.bundle import ImageSpec
from training.images import data as imdata
from training.images.backbone_config import BackboneConfig, PretrainConfig
from training.images.pretrain import pretrain
from training.images.train import ImageTrainConfig, Split, train_image_model

FRACTIONS = (0.10, 0.25, 1.00)
SEEDS = (0, 1, 2)
BACKBONE = {"name": "mobilenet_v2", "alpha": 0.35}


def _subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A stratified ``fraction`` of every class (at least one image of each)."""
    if fraction >= 1:
        return np.arange(len(labels))
    rng = np.random.default_rng(1000 + seed)
    pick = [rng.permutation(np.flatnonzero(labels == c))[: max(1, round(fraction * np.sum(
        labels == c)))] for c in np.unique(labels)]
    return np.sort(np.concatenate(pick))


def _cell(args, spec, train: Split, val: Split, fraction: float, seed: int, arm: str,
          weights: Path) -> dict:
    idx = _subset(train.labels, fraction, seed)
    part = Split(train.x[idx], train.labels[idx], train.masks[idx])
    epochs = max(1, round(args.images_seen / len(idx)))
    common = {"name": f"{arm}_{int(fraction * 100)}_{seed}", "family": "transfer",
              "batch_size": args.batch_size, "seed": seed, "output_dir": args.work / "runs",
              "schedule": "cosine", "patience": epochs}
    if arm == "scratch":
        config = ImageTrainConfig(**common, model={"backbone": BACKBONE}, epochs=epochs,
                                  learning_rate=args.learning_rate)
    else:
        stage1 = max(1, epochs // 2)
        config = ImageTrainConfig(
            **common, model={"backbone": {**BACKBONE, "weights": str(weights)}},
            epochs=stage1, learning_rate=args.learning_rate,
            fine_tune={"layers": args.fine_tune_layers, "epochs": max(1, epochs - stage1),
                       "learning_rate": args.learning_rate / 10})
    start = time.monotonic()
    run = train_image_model(config, spec, part, val, val, "study")
    record = json.loads((run / "training.json").read_text())
    m = record["metrics"]["keras"]
    return {"fraction": fraction, "seed": seed, "arm": arm, "train_images": len(idx),
            "epochs": record["training"]["epochs"], "best_epoch": record["training"]["best_epoch"],
            "accuracy_6class": m["accuracy"],
            "balanced_accuracy_class": m["balanced_accuracy_class"], "auroc": m["auroc"],
            "minutes": round((time.monotonic() - start) / 60, 2)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=None, help="default $PROCEDGE_DATA/magnetic_tile")
    p.add_argument("--out", type=Path, default=Path("bench/results/transfer.jsonl"))
    p.add_argument("--work", type=Path, default=Path("artifacts/transfer_study"))
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--images-seen", type=int, default=3456, help="budget per run, both arms")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--fine-tune-layers", type=int, default=30)
    p.add_argument("--pretrain-epochs", type=int, default=4)
    p.add_argument("--fractions", default=",".join(map(str, FRACTIONS)))
    args = p.parse_args(argv)
    import os

    root = args.root or Path(os.environ["PROCEDGE_DATA"]) / "magnetic_tile"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    weights = args.work / "backbone_rotation.weights.h5"
    start = time.monotonic()
    if not weights.is_file():
        pretrain(PretrainConfig(
            name="study_rotation", backbone=BackboneConfig(**BACKBONE),
            source={"root": root, "val_fraction": 0.2, "split_seed": 0}, size=args.size,
            epochs=args.pretrain_epochs, batch_size=32, learning_rate=2e-3, out=weights))
    pre = json.loads(Path(f"{weights}.json").read_text())
    with args.out.open("a") as f:
        f.write(json.dumps({"pretrain": pre, "minutes": round((time.monotonic() - start) / 60,
                                                              2)}) + "\n")
    everything = imdata.scan(root, split="train")
    tr, va = imdata.stratified_split(everything.labels, 0.2, 0)
    spec = ImageSpec(kind="classifier", height=args.size, width=args.size,
                     class_names=everything.class_names,
                     ok_class=imdata.ok_class(everything.class_names))
    spec, train, val, _ = imdata.load_splits(spec, everything.subset(tr), everything.subset(va),
                                             everything.subset(va), False)
    for fraction in (float(f) for f in args.fractions.split(",")):
        for seed in SEEDS:
            for arm in ("scratch", "transfer"):
                row = _cell(args, spec, train, val, fraction, seed, arm, weights)
                print(json.dumps(row), flush=True)
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
