"""Task ``particle_size``: micrographs → background/interior/boundary (and core, with
``particles.core_px``) per pixel (``particle_unet``), sized at the edge in numpy. Data: the
micrograph generator at the config's calibration (``particles`` section). Loss:
cross-entropy, boundary pixels weighted.
Metrics: interior IoU; D50 and count errors (%) and D50 R² against the drawn truth. Parity:
the edge interior IoU may drop by the budget (points), and the edge's median D50 error may
grow by at most the budget × 100 percentage points (1 point at the default)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from edge_runtime.bundle import ImageSpec, RunRecord
from training.config import TrainConfig
from training.images.micrographs import MicrographConfig
from training.images.particle_fit import fit
from training.images.particle_models import n_classes
from training.images.particle_sizing import make_set, sizing_metrics
from training.registry import Family
from training.tasks.image_class import points_reasons

CONFIG_FIELDS = ("particles",)
WATCHED = ("interior_iou",)
REPRESENTATIVE_IMAGES = 100


def train(config: TrainConfig, family: Family, run_dir: Path) -> RunRecord:
    p = config.particles
    cfg = MicrographConfig.model_validate(p.generator | {"size": p.size,
                                                         "um_per_px": p.um_per_px})
    train_set = make_set(cfg, p.train_images, p.seed, p.flatten_px, p.core_px)
    val_set = make_set(cfg, p.val_images, p.seed + 1, p.flatten_px, p.core_px)
    model = family.build((p.size, p.size, 1), **config.model | {"classes": n_classes(p.core_px)})
    f = config.fit
    info, seconds = fit(model, train_set, val_set, name=config.name, run_dir=run_dir,
                        epochs=f.epochs, batch_size=f.batch_size, learning_rate=f.learning_rate,
                        boundary_weight=p.boundary_weight, max_minutes=f.max_minutes)
    model.save(run_dir / "model.keras")
    probs = model.predict(val_set.x, verbose=0, batch_size=16)
    metrics = sizing_metrics(probs, val_set.heldout(), p.um_per_px) | {
        "epochs": float(info.epochs), "fit_seconds": seconds}
    np.savez_compressed(run_dir / "heldout.npz", **val_set.heldout())
    pick = np.random.default_rng(f.seed).permutation(len(train_set.x))[:REPRESENTATIVE_IMAGES]
    np.savez_compressed(run_dir / "representative.npz", x=train_set.x[np.sort(pick)])
    spec = ImageSpec(kind="particles", height=p.size, width=p.size, um_per_px=p.um_per_px,
                     flatten_px=p.flatten_px)
    digest = hashlib.sha256(json.dumps(p.model_dump(), sort_keys=True).encode()).hexdigest()
    return RunRecord(name=config.name, task="particle_size", family=config.family, image=spec,
                     training_data_sha256=digest, metrics={"keras": metrics}, training=info)


def parity(refs: list[np.ndarray], gots: list[np.ndarray], heldout: dict[str, np.ndarray],
           record: RunRecord, budget: float):
    um = record.image.um_per_px
    keras_m, edge_m = sizing_metrics(refs[0], heldout, um), sizing_metrics(gots[0], heldout, um)
    edge_m["agreement"] = float(np.mean(refs[0].argmax(-1) == gots[0].argmax(-1)))
    reasons = points_reasons(keras_m, edge_m, WATCHED, budget)
    if not edge_m["d50_error_pct"] <= keras_m["d50_error_pct"] + 100 * budget:
        reasons.append(f"edge D50 error {edge_m['d50_error_pct']:.2f} % > float "
                       f"{keras_m['d50_error_pct']:.2f} % + {100 * budget:g} points")
    return keras_m, edge_m, reasons
