"""Task ``generative`` on a folder of images (a config with an ``image`` section): a
class-conditional image generator (``dcgan``, ``image_cvae``) trained on the training part of
the folder (the same stratified validation split as the image classifier: ``image.
val_fraction``, ``fit.seed``), at ``image.size`` pixels square, grey, in [-1, 1].

Batches are drawn class-balanced (every class as often as every other): on the magnetic
tiles 71 % of the images are defect-free and the rarest defect has 26, so uniform draws
would teach the generator almost nothing of the defects it exists to supply.

Run directory: ``generator.keras``, ``generative.json`` (``kind: image``, family, size,
classes), ``training.json``, ``heldout.npz`` (the validation images ``x`` in [-1, 1] and
class indices ``c``), ``losses.png``, ``samples.png`` (real and generated per class),
``pca.png`` (PCA of validation and generated images' pixels, coloured by class),
``interpolation.png`` (``image_cvae``: latent lines between two real images per class)
and, with ``fit.tensorboard``, the loss terms in ``logs/``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_runtime.bundle import ImageSpec, RunRecord
from training import generative_plots as plots
from training.budget import one_pass
from training.config import TrainConfig
from training.images import data as imdata
from training.images.grids import image_grid
from training.registry import Family


def load_images(root: Path, size: int, classes: list[str] | None, val_fraction: float,
                seed: int) -> tuple[tuple, tuple, list[str], str]:
    """((x, c) training, (x, c) validation, class names, fingerprint): grey images resized
    to ``size`` square, in [-1, 1]; only ``classes`` (folder names) when given."""
    everything = imdata.scan(root, split="train")
    if classes:
        unknown = sorted(set(classes) - set(everything.class_names))
        if unknown:
            raise ValueError(f"generative.classes {unknown}: no such class folder in {root} "
                             f"(there: {', '.join(everything.class_names)})")
        everything = imdata.scan(root, split="train", class_names=list(classes))
    train_idx, val_idx = imdata.stratified_split(everything.labels, val_fraction, seed)
    spec = ImageSpec(kind="classifier", height=size, width=size)
    out = []
    for idx in (train_idx, val_idx):
        part = everything.subset(idx)
        x, _ = imdata.load_arrays(part, spec)
        out.append((2.0 * x - 1.0, part.labels))
    fingerprint = imdata.fingerprint(everything.subset(train_idx))
    return out[0], out[1], everything.class_names, fingerprint


def balanced(labels: np.ndarray) -> np.ndarray:
    """Draw probabilities that give every class the same share of the batches."""
    counts = np.bincount(labels)
    p = 1.0 / counts[labels]
    return p / p.sum()


def fit_generator(config: TrainConfig, family: Family, x: np.ndarray, c: np.ndarray,
                  n_classes: int):
    """Build (seeded by ``fit.seed``) and fit the generator on class-balanced draws."""
    import keras

    g, seed = config.generative, config.fit.seed
    keras.utils.set_random_seed(seed)
    model = family.build(config.image.size, 1, n_classes,
                         **({"latent_dim": g.latent_dim} | config.model))
    model.fit(x, c, g.steps, g.batch_size, seed, g.model_dump(),
              desc=f"{config.name}: {family.name}", draw_p=balanced(c))
    return model


def train(config: TrainConfig, family: Family, run_dir: Path) -> RunRecord:
    g, section, seed = config.generative, config.image, config.fit.seed
    (x, c), (vx, vc), names, fingerprint = load_images(
        section.root, section.size, g.classes, section.val_fraction, seed)
    start = time.perf_counter()
    model = fit_generator(config, family, x, c, len(names))
    history, seconds = model.history, time.perf_counter() - start
    model.save(run_dir, {"class_names": names, "steps": g.steps, "seed": seed,
                         "root": str(section.root)})
    np.savez_compressed(run_dir / "heldout.npz", x=vx, c=vc)
    per_class = 8
    fake_c = np.repeat(np.arange(len(names)), per_class)
    fake = model.sample(fake_c, seed=seed)
    plots.loss_curves(history, run_dir / "losses.png", f"{config.name} ({family.name})")
    image_grid(vx, vc, fake, fake_c, names, run_dir / "samples.png", per_class)
    _latent_pictures(config, model, (x, c), (vx, vc), names, run_dir)
    if config.fit.tensorboard:
        from training.tasks.generative import _tensorboard

        _tensorboard(history, run_dir / "logs")
    metrics = {"steps": float(g.steps), "seconds": seconds, "train_images": float(len(x)),
               "val_images": float(len(vx))}
    metrics |= {f"final_{k}": float(np.mean(v[-max(len(v) // 20, 1):]))
                for k, v in history.items()}
    spec = ImageSpec(kind="classifier", height=section.size, width=section.size,
                     class_names=names, ok_class=imdata.ok_class(names))
    return RunRecord(name=config.name, task="generative", family=config.family, image=spec,
                     training_data_sha256=fingerprint, metrics={"keras": metrics},
                     training=one_pass(seconds, optimizer_steps=g.steps))


def _latent_pictures(config: TrainConfig, model, train: tuple, val: tuple, names: list[str],
                     run_dir: Path) -> None:
    """``pca.png`` (pixels: validation images vs as many generated, of the same classes)
    and, for a CVAE, ``interpolation.png``: latent lines between two validation images per
    class (two training images where no class has two in validation, as on tiny sets)."""
    from training.images import latent_plots

    vx, vc = val
    if len(vx) >= 2:
        fake = model.sample(vc, seed=config.fit.seed)
        latent_plots.pca(vx, vc, fake, vc, names, run_dir / "pca.png",
                         f"{config.name}: validation images vs generated (pixels)")
    if hasattr(model, "interpolate"):
        x, c = val if latent_plots.pairs(vc) else train
        latent_plots.interpolation_strips(model, x, c, names, run_dir / "interpolation.png")


def write_synthetic(run_dir: Path, n: int, condition: str | None, seed: int, out: Path
                    ) -> dict:
    """``procedge generate`` on an image run: ``n`` PNGs (of ``condition``, or of each
    class) in ``out`` and their metadata (``synthetic: true``)."""
    from training.images.generators import load_image_generator
    from training.images.grids import write_pngs
    from training.synthetic import class_indices

    gen, meta = load_image_generator(run_dir)
    names = meta["class_names"]
    classes = class_indices(meta, n, condition)
    images = gen.sample(classes, seed=seed)
    info = {"synthetic": True, "run": Path(run_dir).name, "run_dir": str(run_dir),
            "family": meta["family"], "seed": seed, "images": int(len(images)),
            "size": gen.size, "classes": {name: int((classes == i).sum())
                                          for i, name in enumerate(names)
                                          if (classes == i).any()}}
    write_pngs(images, classes, names, out, info)
    return info
