"""Task ``particle_size`` on the workstation: generated micrographs → model inputs (through the
gateway's own :func:`edge_runtime.particles.preprocess`) and per-pixel class targets, and the
sizing metrics every layer reports (training, the parity gate, ``procedge eval
particles``): interior IoU, and per image the D50 and count errors against the drawn truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.particles import CORE, INTERIOR, preprocess, size_particles
from training.images.micrographs import Micrograph, MicrographConfig, classes, generate_set


@dataclass
class ParticleSet:
    """Model inputs (N, H, W, 1), class targets (N, H, W) and the truth of each image."""

    x: np.ndarray
    classes: np.ndarray
    d50_um: np.ndarray
    count: np.ndarray
    images: list[Micrograph]

    def heldout(self) -> dict[str, np.ndarray]:
        """What ``heldout.npz`` holds (the parity gate reads it)."""
        return {"x": self.x, "classes": self.classes, "d50_um": self.d50_um,
                "count": self.count}


def make_set(cfg: MicrographConfig, n: int, seed: int, flatten_px: int, core_px: float = 0.0
             ) -> ParticleSet:
    images = generate_set(cfg, n, seed)
    return ParticleSet(
        np.stack([preprocess(m.image, flatten_px) for m in images]),
        np.stack([classes(m.labels, core_px) for m in images]),
        np.array([m.stats["d50_um"] for m in images]),
        np.array([m.stats["count"] for m in images]), images)


def sizing_metrics(probs: np.ndarray, truth: dict[str, np.ndarray], um_per_px: float
                   ) -> dict[str, float]:
    """``interior_iou``: mean per-image IoU of the interior class; ``d50_error_pct`` and
    ``count_error_pct``: medians over images of |predicted − true| / true × 100; ``d50_r2``:
    R² of predicted against true D50 across images (an image with no particle found counts
    as D50 = 0)."""
    pred = np.isin(np.argmax(probs, axis=-1), (INTERIOR, CORE))  # a core is interior too
    true = np.isin(truth["classes"], (INTERIOR, CORE))
    inter = (pred & true).sum(axis=(1, 2))
    union = np.maximum((pred | true).sum(axis=(1, 2)), 1)
    sized = [size_particles(p, um_per_px)[0] for p in probs]
    d50 = np.array([s["d50_um"] or 0.0 for s in sized])
    count = np.array([s["count"] for s in sized], dtype=float)
    t50, tcount = truth["d50_um"], truth["count"].astype(float)
    ss_res, ss_tot = np.sum((d50 - t50) ** 2), np.sum((t50 - t50.mean()) ** 2)
    return {"interior_iou": float(np.mean(inter / union)),
            "d50_error_pct": float(np.median(np.abs(d50 - t50) / t50) * 100),
            "count_error_pct": float(np.median(np.abs(count - tcount) / tcount) * 100),
            "d50_r2": float(1 - ss_res / ss_tot) if ss_tot > 0 else float("nan"),
            "d50_um_pred_median": float(np.median(d50)),
            "d50_um_true_median": float(np.median(t50))}
