"""``procedge eval generative-augment --root PATH``: does adding CVAE windows of a rare fault
help a TEP fault classifier when that fault's real windows are scarce?

Protocol (pre-registered in bench/HISTORY.md, 2026-12-03, before the first run; the ``_te``
test files are never read):

* the windows of :mod:`evaluation.generative`: normal (``d00.dat``) and the fault runs
  ``--faults`` (IDV 1, 2, 4), each class split in time 70/30, windows of 16 rows (stride 1)
  inside each part, the scaler on the training rows of every class;
* per rare class ``--rare`` (each fault in turn): its training windows cut to ``--fraction``
  (10 %) — the first round(fraction · n) of one fixed permutation (seed 0), or with ``--cut
  first`` the earliest in time — every window of the other classes kept; one ``cvae`` (the
  quality protocol's settings, seed 0) trained on that cut set only, which then generates
  as many windows of the rare class as it has at 100 % (sampling seed 0);
* arms (``--arms``), each a 1-D convolutional classifier (``--width``, ``--epochs``, no
  class weights, the last epoch kept) for each seed ``--seeds``: ``cut`` (the cut set),
  ``cut+syn`` (the cut set and the synthetic windows) and ``full`` (the rare class at 100 %:
  the reference of what was lost); ``cut+dup`` (not in the default) adds copies of the kept
  real windows instead of synthetic ones, as many: the control for class balance alone;
* scores on every held-apart window (all classes, never cut): accuracy over all classes,
  the rare class's recall, precision and F1, and the macro F1.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from evaluation import common
from evaluation.generative import load_classes, split

ARMS = ("cut", "cut+syn", "full", "cut+dup")
METRICS = ("accuracy", "rare_recall", "rare_precision", "rare_f1", "macro_f1")


def cut(classes: np.ndarray, rare: int, fraction: float, how: str = "random") -> np.ndarray:
    """Indices kept: every window of the other classes, and round(fraction · n) (at least
    one) of ``rare``'s: ``random`` the first of one fixed permutation (seed 0), so every seed
    and arm sees the same scarce windows; ``first`` the earliest in time (windows are in time
    order within a class): the fault seen only for a short while after its onset."""
    idx = np.flatnonzero(classes == rare)
    if how == "random":
        idx = np.random.default_rng(0).permutation(idx)
    elif how != "first":
        raise ValueError(f"cut {how!r}: random or first")
    keep = idx[:max(1, round(fraction * len(idx)))]
    return np.sort(np.concatenate([np.flatnonzero(classes != rare), keep]))


def scores(truth: np.ndarray, pred: np.ndarray, rare: int, n_classes: int) -> dict[str, float]:
    """Accuracy, the rare class's recall / precision / F1, and the macro F1 (a class never
    predicted has precision 0)."""
    def f1(k: int) -> tuple[float, float, float]:
        tp = float(np.sum((pred == k) & (truth == k)))
        recall = tp / max(np.sum(truth == k), 1)
        precision = tp / max(np.sum(pred == k), 1)
        return recall, precision, 2 * tp / max(np.sum(truth == k) + np.sum(pred == k), 1)

    recall, precision, rare_f1 = f1(rare)
    return {"accuracy": float(np.mean(pred == truth)), "rare_recall": float(recall),
            "rare_precision": float(precision), "rare_f1": float(rare_f1),
            "macro_f1": float(np.mean([f1(k)[2] for k in range(n_classes)]))}


def classify(x: np.ndarray, c: np.ndarray, test_x: np.ndarray, n_classes: int, seed: int,
             epochs: int, width: int) -> np.ndarray:
    """Class predicted for each ``test_x`` window by a small 1-D convolutional classifier
    (two convolutions over time, global average pooling, softmax) trained on (x, c)."""
    import keras

    from training.keras_compile import compile_for_fit

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(x.shape[1:]),
                              keras.layers.Conv1D(width, 5, padding="same", activation="relu"),
                              keras.layers.Conv1D(width, 5, padding="same", activation="relu"),
                              keras.layers.GlobalAveragePooling1D(),
                              keras.layers.Dense(n_classes, activation="softmax")])
    compile_for_fit(model, keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(x.astype(np.float32), c, epochs=epochs, batch_size=64, verbose=0, shuffle=True)
    return np.asarray(model(test_x.astype(np.float32), training=False)).argmax(axis=1)


def synthetic(x: np.ndarray, c: np.ndarray, rare: int, n: int, n_classes: int, args
              ) -> tuple[np.ndarray, float]:
    """``n`` CVAE windows of ``rare`` from a CVAE trained on (x, c) only, and its fit time."""
    import keras

    from training.registry import get_family

    keras.utils.set_random_seed(0)
    model = get_family("cvae", "generative").build(x.shape[1], x.shape[2], n_classes,
                                                   latent_dim=args.latent,
                                                   filters=args.filters)
    t0 = time.time()
    model.fit(x, c, args.steps, 64, 0, {}, desc=f"cvae (rare {rare})")
    return model.sample(np.full(n, rare), seed=0), time.time() - t0


def arms(x: np.ndarray, c: np.ndarray, keep: np.ndarray, rare: int, names: list[str],
         args) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], float]:
    """Each arm's training windows and classes (``args.arms``), and the CVAE's fit time (0
    without a ``cut+syn`` arm). ``cut+dup`` adds as many windows as ``cut+syn`` does, but
    copies of the kept real ones (cycled): class balance without new content."""
    full_n = int(np.sum(c == rare))
    extra_c = np.full(full_n, rare)
    data, gen_s = {"cut": (x[keep], c[keep]), "full": (x, c)}, 0.0
    if "cut+syn" in args.arms:
        syn, gen_s = synthetic(x[keep], c[keep], rare, full_n, len(names), args)
        data["cut+syn"] = (np.concatenate([x[keep], syn]), np.concatenate([c[keep], extra_c]))
    if "cut+dup" in args.arms:
        kept = keep[c[keep] == rare]
        dup = x[np.resize(kept, full_n)]
        data["cut+dup"] = (np.concatenate([x[keep], dup]), np.concatenate([c[keep], extra_c]))
    return data, gen_s


def study(args, train, test, names: list[str]) -> list[dict]:
    """Every (rare class, arm, seed) cell; a seed's arms run together."""
    (x, c), (tx, tc) = train, test
    rows = []
    for rare in (names.index(f"IDV{k}") for k in args.rare):
        keep = cut(c, rare, args.fraction, args.cut)
        data, gen_s = arms(x, c, keep, rare, names, args)
        for seed in args.seeds:
            for arm in args.arms:
                ax, ac = data[arm]
                pred = classify(ax, ac, tx, len(names), seed, args.epochs, args.width)
                n_rare = int(np.sum(ac == rare))
                real = n_rare if arm == "full" else int(np.sum(c[keep] == rare))
                rows.append({"model": names[rare], "variant": arm, "mode": "float32",
                             "seed": seed, "real_rare": real, "added_rare": n_rare - real,
                             "generator_s": gen_s} | scores(tc, pred, rare, len(names)))
                print(f"study: {rows[-1]}", flush=True)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean, min and max over seeds per (rare class = ``model``, arm = ``variant``), in the
    order run."""
    out = []
    for key in dict.fromkeys((r["model"], r["variant"]) for r in rows):
        cell = [r for r in rows if (r["model"], r["variant"]) == key]
        row = {"model": key[0], "variant": key[1], "mode": "float32", "seeds": len(cell)}
        for metric in METRICS:
            v = np.array([r[metric] for r in cell])
            row |= {metric: float(v.mean()), f"{metric}_min": float(v.min()),
                    f"{metric}_max": float(v.max())}
        out.append(row)
    return out


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="procedge eval generative-augment",
                                description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True, help="folder with d00.dat, d01.dat …")
    p.add_argument("--faults", type=int, nargs="*", default=[1, 2, 4])
    p.add_argument("--rare", type=int, nargs="+", default=None,
                   help="faults cut in turn (default: every fault in --faults)")
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--cut", choices=["random", "first"], default="random",
                   help="which of the rare class's windows are kept: a fixed random share, or "
                   "the earliest in time")
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--train-share", type=float, default=0.7)
    p.add_argument("--steps", type=int, default=3000, help="CVAE optimizer steps")
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--filters", type=int, default=64)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS[:3]),
                   help="cut+dup: the kept real windows of the rare class copied up to the "
                   "synthetic count (class balance without new content)")
    p.add_argument("--epochs", type=int, default=30, help="classifier epochs")
    p.add_argument("--width", type=int, default=32, help="classifier convolution filters")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    args.rare = args.faults if args.rare is None else args.rare
    if not set(args.rare) <= set(args.faults):
        p.error(f"--rare {args.rare}: each must be one of --faults {args.faults}")
    start = time.time()
    names = ["normal"] + [f"IDV{k}" for k in args.faults]
    train, test, _ = split(load_classes(args.root, args.faults)[0], args.train_share,
                           args.window)
    print(f"TEP augmentation: classes {names}, training windows "
          f"{np.bincount(train[1], minlength=len(names)).tolist()}, held-apart windows "
          f"{np.bincount(test[1], minlength=len(names)).tolist()}", flush=True)
    rows = study(args, train, test, names)
    summary = summarise(rows)
    print(f"TEP augmentation study ({time.time() - start:.0f} s wall; mean over seeds):")
    common.print_table(summary, ["seeds"] + [f"{m}{end}" for m in METRICS
                                             for end in ("", "_min", "_max")])
    common.write_json(args.json, rows, {k: str(v) if isinstance(v, Path) else v
                                        for k, v in vars(args).items()}
                      | {"classes": names, "summary": summary,
                         "wall_s": time.time() - start})
