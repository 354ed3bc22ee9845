"""``procedge eval generative-images --root PATH``: how close the image generators' tiles come
to held-apart real magnetic tiles, and (``--study``) whether synthetic defects help the tile
classifier when real defects are scarce.

Quality protocol (fixed before any run; the data set's own test part is never read):

* the training part of ``--root`` (``split.csv``), a stratified 20 % validation split
  (seed 0, as the image tasks draw it), grey, ``--size`` pixels square;
* the *feature classifier*: ``small_cnn`` trained on the training images at that size
  (``--classifier-epochs``, seed ``--seed``); its penultimate layer gives the features;
* each family (``--families``) is trained on the training images of all six classes,
  class-balanced draws, ``--steps`` steps, seed ``--seed``, then generates one image per
  validation image, of that image's class (the same class mix);
* scores against the validation images' features (:mod:`training.images.generative_quality`):
  FD (not Inception's FID), precision and recall (k = 3), coverage per class (k = 3), and
  the copy ratio against the training images' features (generated images as near to the
  training images as unseen real ones read about 1, copies near 0); a reference row
  ``real_train`` puts real training images (drawn per class to the validation counts, seed
  0) where the generated ones go (its copy ratio is 0 by construction).

Augmentation study (``--study``; protocol in bench/HISTORY.md, 2026-12-03): per fraction
``--fractions`` of the defect images of the training split (the same stratified, nested
subsets for every seed; all defect-free images always), the study family is trained on that
subset only (seed 0), and ``small_cnn`` is trained for each seed ``--seeds`` without and with
synthetic defects (per defect class as many as the class has real at 100 %); scored on the
validation split: 6-class accuracy, OK/NOK accuracy (p(NOK) = 1 − p(MT_Free) ≥ 0.5) and their
balanced variants.

Writes samples_<family>.png, losses_<family>.png, pca_<family>.png (PCA of the validation
images' and the generated images' classifier features, by class), interpolation_<family>.png
(``image_cvae``: latent lines between two validation images per class) and the runs to
``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from training.config import CVAE_TEXTURES

SIZE = 32


def load(root: Path, size: int):
    """(spec, train, val) Splits normalised by the training images' mean and std."""
    from edge_runtime.bundle import ImageSpec
    from training.images import data as imdata

    everything = imdata.scan(root, split="train")
    names = everything.class_names
    train_idx, val_idx = imdata.stratified_split(everything.labels, 0.2, 0)
    spec = ImageSpec(kind="classifier", height=size, width=size, class_names=names,
                     ok_class=imdata.ok_class(names))
    spec, train, val, _ = imdata.load_splits(spec, everything.subset(train_idx),
                                             everything.subset(val_idx),
                                             everything.subset(val_idx), False)
    return spec, train, val


def to_unit(split, spec) -> np.ndarray:
    """Normalised classifier inputs → images in [-1, 1] (what the generators learn)."""
    return 2.0 * (split.x * spec.std + spec.mean) - 1.0


def from_unit(images: np.ndarray, spec) -> np.ndarray:
    return (((images + 1.0) / 2.0) - spec.mean) / spec.std


def classifier(name: str, spec, train, val, epochs: int, seed: int, out: Path):
    """A ``small_cnn`` tile classifier (the image trainer, cosine schedule) and its run."""
    import keras

    from training.images.train import ImageTrainConfig, train_image_model

    config = ImageTrainConfig(name=name, family="small_cnn", model={"width": 16, "blocks": 3},
                              epochs=epochs, batch_size=32, learning_rate=2e-3, seed=seed,
                              output_dir=out)
    run = train_image_model(config, spec, train, val)
    return keras.models.load_model(run / "model.keras", compile=False), run


def generator(family: str, x: np.ndarray, c: np.ndarray, n_classes: int, args, seed: int):
    """A trained image generator (class-balanced draws)."""
    import keras

    from training.images.generative_task import balanced
    from training.registry import get_family

    keras.utils.set_random_seed(seed)
    extra = {"batch_norm": False} if family == "dcgan" and args.dcgan_no_batch_norm else {}
    extra |= {"sampling": args.cvae_sampling, "texture": args.cvae_texture} \
        if family == "image_cvae" else {}
    model = get_family(family, "generative").build(x.shape[1], 1, n_classes,
                                                   latent_dim=args.latent,
                                                   filters=args.filters, **extra)
    steps = args.steps[args.families.index(family)] if family in args.families else \
        args.steps[0]
    model.fit(x, c, steps, 32, seed, {}, desc=family, draw_p=balanced(c))
    return model


def quality(args, spec, train, val, names) -> list[dict]:
    """The quality table: one row per family, and the real_train reference."""
    from training import generative_plots as plots
    from training.images import generative_quality as q
    from training.images import latent_plots
    from training.images.grids import image_grid

    model, _ = classifier("features_small_cnn", spec, train, val, args.classifier_epochs,
                          args.seed, args.out / "runs")
    extractor = q.feature_model(model)
    feats = lambda imgs: q.features(extractor, imgs, spec.mean, spec.std)  # noqa: E731
    x, vx = to_unit(train, spec), to_unit(val, spec)
    real_f, train_f = feats(vx), feats(x)
    rng = np.random.default_rng(0)
    ref = np.concatenate([rng.choice(np.flatnonzero(train.labels == k),
                                     (val.labels == k).sum(), replace=False)
                          for k in range(len(names))])
    rows = [{"model": "real_train", "steps": 0, "train_s": 0.0}
            | q.scores(real_f, val.labels, train_f[ref], train.labels[ref], names)
            | {"copy_ratio": q.copy_ratio(train_f, real_f, train_f[ref])}]
    for family in args.families:
        t0 = time.time()
        gen = generator(family, x, train.labels, len(names), args, args.seed)
        seconds = time.time() - t0
        fake = gen.sample(val.labels, seed=args.seed)
        fake_f = feats(fake)
        rows.append({"model": family, "steps": len(next(iter(gen.history.values()))),
                     "train_s": seconds}
                    | q.scores(real_f, val.labels, fake_f, val.labels, names)
                    | {"copy_ratio": q.copy_ratio(train_f, real_f, fake_f)})
        image_grid(vx, val.labels, fake, val.labels, names, args.out / f"samples_{family}.png")
        latent_plots.pca(real_f, val.labels, fake_f, val.labels, names,
                         args.out / f"pca_{family}.png",
                         f"tiles {args.size}px: validation vs {family} (classifier features)")
        if hasattr(gen, "interpolate"):
            latent_plots.interpolation_strips(gen, vx, val.labels, names,
                                              args.out / f"interpolation_{family}.png")
        plots.loss_curves(gen.history, args.out / f"losses_{family}.png", f"tiles {family}")
        print(f"{family}: {rows[-1]}", flush=True)
    return rows


def defect_subset(labels: np.ndarray, ok: int, fraction: float) -> np.ndarray:
    """Indices kept at ``fraction``: every OK image, and of each defect class the first
    round(fraction · n) (at least one) of one fixed permutation (seed 0): nested subsets."""
    rng = np.random.default_rng(0)
    keep = [np.flatnonzero(labels == ok)]
    for k in np.unique(labels):
        if k != ok:
            idx = rng.permutation(np.flatnonzero(labels == k))
            keep.append(idx[:max(1, round(fraction * len(idx)))])
    return np.sort(np.concatenate(keep))


def study(args, spec, train, val, names) -> list[dict]:
    """The augmentation table: fraction × (without, with synthetic) × seed."""
    from training.images.data import Split
    from training.images.metrics import classification_metrics

    ok = names.index(spec.ok_class)
    full = np.bincount(train.labels, minlength=len(names))
    rows = []
    for fraction in args.fractions:
        keep = defect_subset(train.labels, ok, fraction)
        part = Split(train.x[keep], train.labels[keep], train.masks[keep])
        t0 = time.time()
        gen = generator(args.study_family, to_unit(part, spec), part.labels, len(names), args,
                        0)
        gen_s = time.time() - t0
        syn_c = np.concatenate([np.full(full[k], k) for k in range(len(names)) if k != ok])
        syn = from_unit(gen.sample(syn_c, seed=0), spec)
        plus = Split(np.concatenate([part.x, syn]), np.concatenate([part.labels, syn_c]),
                     np.concatenate([part.masks, np.zeros_like(syn)]))
        for seed in args.seeds:  # both arms of a seed together: a cut run keeps pairs
            for synthetic, data in ((False, part), (True, plus)):
                name = f"study_f{fraction:g}_{'syn' if synthetic else 'real'}_s{seed}"
                model, _ = classifier(name, spec, data, val, args.study_epochs, seed,
                                      args.out / "runs")
                probs = model.predict(val.x, verbose=0, batch_size=128)
                m = classification_metrics(val.labels, probs, ok, names)
                nok = (1.0 - probs[:, ok]) >= 0.5
                rows.append({"fraction": fraction, "synthetic": synthetic, "seed": seed,
                             "real_defects": int((part.labels != ok).sum()),
                             "synthetic_defects": int(len(syn_c)) if synthetic else 0,
                             "generator_s": gen_s, "accuracy": m["accuracy"],
                             "nok_accuracy": float(np.mean(nok == (val.labels != ok))),
                             "balanced_accuracy_class": m["balanced_accuracy_class"],
                             "balanced_accuracy_nok": m["balanced_accuracy"]})
                print(f"study: {rows[-1]}", flush=True)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and spread (min–max) over seeds per (fraction, synthetic)."""
    out = []
    for key in sorted({(r["fraction"], r["synthetic"]) for r in rows}):
        cell = [r for r in rows if (r["fraction"], r["synthetic"]) == key]
        row = {"model": f"f={key[0]:g} {'+syn' if key[1] else 'real'}", "seeds": len(cell)}
        for metric in ("accuracy", "nok_accuracy", "balanced_accuracy_class"):
            v = np.array([r[metric] for r in cell])
            row |= {metric: float(v.mean()), f"{metric}_min": float(v.min()),
                    f"{metric}_max": float(v.max())}
        out.append(row)
    return out


def table(rows: list[dict], keys: list[str]) -> None:
    """A Markdown table: ``model`` then ``keys`` (floats to 3 decimals)."""
    print("| " + " | ".join(["model", *keys]) + " |")
    print("|" + "---|" * (len(keys) + 1))
    for r in rows:
        cells = [f"{r.get(k):.3f}" if isinstance(r.get(k), float) else str(r.get(k, ""))
                 for k in ["model", *keys]]
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="procedge eval generative-images",
                                description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True, help="the magnetic-tile folder")
    p.add_argument("--size", type=int, default=SIZE, help="pixels square (a power of two)")
    p.add_argument("--families", nargs="+", default=["dcgan", "image_cvae"])
    p.add_argument("--steps", type=int, nargs="+", default=[2000, 1500],
                   help="steps per family (one value: all)")
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--dcgan-no-batch-norm", action="store_true",
                   help="dcgan without batch normalisation in its generator")
    p.add_argument("--cvae-sampling", choices=["prior", "posterior"], default="prior",
                   help="image_cvae's latent draws: N(0, I), or per-class Gaussians fitted "
                        "to its training images' codes")
    p.add_argument("--cvae-texture", choices=CVAE_TEXTURES, default=CVAE_TEXTURES[0],
                   help="image_cvae's samples: the decoded means, or plus a texture field "
                        "with the spectrum of what it misses on its training images (the "
                        "class's mean spectrum, or one training tile's)")
    p.add_argument("--classifier-epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-quality", action="store_true", help="only the study")
    p.add_argument("--study", action="store_true", help="the augmentation study as well")
    p.add_argument("--study-family", default="image_cvae")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25, 1.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--study-epochs", type=int, default=15)
    p.add_argument("--out", type=Path, default=Path("artifacts/eval/generative_images"))
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    if len(args.steps) == 1:
        args.steps = args.steps * len(args.families)
    start = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    spec, train, val = load(args.root, args.size)
    names = spec.class_names
    print(f"tiles {args.size}px: training {np.bincount(train.labels).tolist()}, validation "
          f"{np.bincount(val.labels).tolist()} ({', '.join(names)})", flush=True)
    results: dict = {}
    if not args.skip_quality:
        results["quality"] = quality(args, spec, train, val, names)
        print(f"image generators ({time.time() - start:.0f} s wall):")
        table(results["quality"], ["steps", "train_s", "fd", "precision", "recall",
                                   "copy_ratio", "coverage_min"]
              + [f"coverage_{n}" for n in names])
    if args.study:
        results["study"] = study(args, spec, train, val, names)
        results["study_summary"] = summarise(results["study"])
        print(f"augmentation study ({time.time() - start:.0f} s wall):")
        table(results["study_summary"],
                           ["seeds", "accuracy", "accuracy_min", "accuracy_max",
                            "nok_accuracy", "nok_accuracy_min", "nok_accuracy_max",
                            "balanced_accuracy_class"])
    if args.json:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results | {"settings": settings, "classes": names,
                                                   "wall_s": time.time() - start},
                                        indent=2) + "\n")
