"""``procedge eval generative --root PATH``: how close the generative families' windows come to
held-apart real TEP windows (Tennessee Eastman, Braatz training files).

Protocol (fixed before any run; the ``_te`` test files are never read):

* classes: normal operation (``d00.dat``, stored 52×500, transposed on load) and the fault
  runs ``--faults`` (default IDV 1, 2 and 4: ``dXX.dat``, 480 rows each, faulty throughout);
* each class's rows split in time: the first ``--train-share`` (70 %) to train the generators
  and the TRTR forecaster, the rest held apart; windows of ``--window`` rows (stride 1) inside
  each part, so no held-apart window shares a row with a training one;
* the scaler (per tag) is fitted on the training rows of every class;
* each family (``--families``: cvae, wgan_gp) is trained on the training windows of every
  class, conditioned on the class, for ``--steps`` steps, seed ``--seed``; it then generates as
  many windows of each class as that class has training windows;
* scores (:mod:`training.generative_quality`), each against the held-apart windows: the
  discriminative score |acc − 0.5| (all classes, and normal alone), TSTR/TRTR next-step MAE
  (all classes, and normal alone), MMD² (all, normal), coverage per class;
* ``--hold`` (off by default, so that runs 1–3 reproduce): after the fit, each generator learns
  from the training windows which tags are sampled and held and at what cadence
  (:mod:`training.sample_hold`) and holds its generated windows of those tags alike;
* a reference row ``real_train`` puts the real training windows where the synthetic ones go:
  what the scores read for real data of the same process at another time.

Writes ``pca_<family>.png`` and ``samples_<family>.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras
import numpy as np

from edge_runtime.scaling import StandardScaler
from evaluation import common
from evaluation.tep import _load as load_rows
from training import generative_plots as plots
from training import generative_quality as quality
from training.registry import get_family
from training.tasks.generative import windows


def load_classes(root: Path, faults: list[int]) -> tuple[list[np.ndarray], list[str]]:
    """Rows of normal operation, then of each fault run."""
    rows = [load_rows(root / "d00.dat")]
    rows += [load_rows(root / f"d{k:02d}.dat") for k in faults]
    return rows, ["normal"] + [f"IDV{k}" for k in faults]


def split(rows: list[np.ndarray], share: float, window: int):
    """Training and held-apart windows (x, class index) of every class, and the scaler."""
    cuts = [int(len(r) * share) for r in rows]
    scaler = StandardScaler.fit(np.concatenate([r[:c] for r, c in zip(rows, cuts,
                                                                      strict=True)]))
    parts = {"train": [], "test": []}
    for k, (r, c) in enumerate(zip(rows, cuts, strict=True)):
        for name, block in (("train", r[:c]), ("test", r[c:])):
            scaled = scaler.transform(block)
            parts[name].append(windows(scaled, np.full(len(block), float(k)), window, 1))
    join = {n: (np.concatenate([x for x, _ in p]), np.concatenate([c for _, c in p]))
            for n, p in parts.items()}
    return join["train"], join["test"], scaler


def scores(fake, fake_c, train, test, seed: int, epochs: int) -> dict:
    """Every score of one synthetic set against the held-apart windows."""
    (x, c), (tx, tc) = train, test
    row = {"discriminative": quality.discriminative_score(tx, fake, seed, epochs),
           "discriminative_normal": quality.discriminative_score(tx[tc == 0],
                                                                 fake[fake_c == 0], seed,
                                                                 epochs),
           "mmd2": quality.mmd2(tx, fake, seed=seed),
           "mmd2_normal": quality.mmd2(tx[tc == 0], fake[fake_c == 0], seed=seed)}
    row |= quality.predictive_scores(x, fake, tx, seed, epochs)
    normal = quality.predictive_scores(x[c == 0], fake[fake_c == 0], tx[tc == 0], seed, epochs)
    row |= {f"{k}_normal": v for k, v in normal.items()}
    step = tx.shape[1]
    cover = quality.class_coverage(tx[::step], tc[::step], fake, fake_c)
    row |= {f"coverage_{k}": v for k, v in cover.items()}
    row["coverage_min"] = float(min(cover.values()))
    return row


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="procedge eval generative",
                                description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True, help="folder with d00.dat, d01.dat …")
    p.add_argument("--faults", type=int, nargs="*", default=[1, 2, 4])
    p.add_argument("--families", nargs="+", default=["cvae", "wgan_gp"])
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--train-share", type=float, default=0.7)
    p.add_argument("--steps", type=int, nargs="+", default=[3000, 1500],
                   help="optimizer steps per family (one value: all)")
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--filters", type=int, default=64)
    p.add_argument("--score-epochs", type=int, default=20, help="epochs of the classifier "
                   "and the forecasters that score")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hold", action=argparse.BooleanOptionalAction, default=False,
                   help="hold generated values of the tags the training windows show sampled "
                   "and held (training/sample_hold.py)")
    p.add_argument("--out", type=Path, default=Path("artifacts/eval/generative"))
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    steps = dict(zip(args.families, args.steps * len(args.families)
                     if len(args.steps) == 1 else args.steps, strict=True))
    start = time.time()
    rows_by_class, names = load_classes(args.root, args.faults)
    train, test, scaler = split(rows_by_class, args.train_share, args.window)
    args.out.mkdir(parents=True, exist_ok=True)
    counts = np.bincount(train[1], minlength=len(names))
    print(f"TEP generative: classes {names}, training windows {counts.tolist()}, "
          f"held-apart windows {np.bincount(test[1], minlength=len(names)).tolist()}")
    results = [{"model": "real_train", "variant": "numpy", "mode": "float32", "steps": 0,
                "train_s": 0.0} | scores(train[0], train[1], train, test, args.seed,
                                         args.score_epochs)]
    for name in args.families:
        keras.utils.set_random_seed(args.seed)
        model = get_family(name, "generative").build(args.window, train[0].shape[2],
                                                     len(names), latent_dim=args.latent,
                                                     filters=args.filters)
        t0 = time.time()
        model.fit(train[0], train[1], steps[name], 64, args.seed, {}, desc=name)
        seconds = time.time() - t0
        if args.hold:
            held = model.learn_sampling(train[0])
            print(f"{name}: held tags (1-based: steps) "
                  f"{ {int(i) + 1: int(held[i]) for i in np.flatnonzero(held > 1)} }")
        fake_c = np.repeat(np.arange(len(names)), counts)
        fake = model.sample(fake_c, seed=args.seed)
        row = {"model": name, "variant": "keras", "mode": "float32", "steps": steps[name],
               "train_s": seconds}
        results.append(row | scores(fake, fake_c, train, test, args.seed, args.score_epochs))
        plots.pca_plot(test[0], test[1], fake, fake_c, names, args.out / f"pca_{name}.png",
                       f"TEP: held-apart windows vs {name}")
        inverse = scaler.inverse
        plots.sample_grid(inverse(test[0]), test[1], inverse(fake), fake_c,
                          [f"x{i + 1}" for i in range(train[0].shape[2])], names,
                          args.out / f"samples_{name}.png")
        plots.loss_curves(model.history, args.out / f"losses_{name}.png", f"TEP {name}")
    print(f"TEP generative ({time.time() - start:.0f} s wall):")
    common.print_table(results, ["steps", "train_s", "discriminative", "discriminative_normal",
                                 "tstr_mae", "trtr_mae", "tstr_over_trtr",
                                 "tstr_over_trtr_normal", "mmd2", "mmd2_normal",
                                 "coverage_min"]
                       + [f"coverage_{k}" for k in range(len(names))])
    common.write_json(args.json, results, vars(args) | {"classes": names,
                                                        "wall_s": time.time() - start})
