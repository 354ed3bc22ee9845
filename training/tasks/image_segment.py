"""Task ``image_segment``: camera frames → a defect mask (``unet``). Loss: per-image binary
cross-entropy + soft Dice; defective images drawn more often, optional patches. Metrics: IoU
and Dice of defective images, clean masks on defect-free ones. Parity: the edge IoU may drop by
the budget (points)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.bundle import RunRecord
from training.config import TrainConfig
from training.images.metrics import segmentation_metrics
from training.images.task import train_images
from training.registry import Family
from training.tasks.image_class import points_reasons

CONFIG_FIELDS = ("image",)
WATCHED = ("iou",)


def train(config: TrainConfig, family: Family, run_dir: Path) -> RunRecord:
    return train_images(config, run_dir)


def parity(refs: list[np.ndarray], gots: list[np.ndarray], heldout: dict[str, np.ndarray],
           record: RunRecord, budget: float):
    ref, got, t = refs[0], gots[0], record.image.mask_threshold
    keras_m = segmentation_metrics(heldout["masks"], ref, t)
    edge_m = segmentation_metrics(heldout["masks"], got, t)
    edge_m["agreement"] = float(np.mean((ref >= t) == (got >= t)))
    return keras_m, edge_m, points_reasons(keras_m, edge_m, WATCHED, budget)
