"""Task ``image_class``: camera frames → class scores (``small_cnn``, ``resnet``,
``mobilenet``). Loss: class-weighted cross-entropy (optionally an auxiliary mask loss);
early stopping on the class-balanced validation accuracy. Metrics: accuracy, balanced
accuracy, OK/NOK AUROC. Parity: edge accuracy and AUROC may each drop by the budget (points)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.bundle import RunRecord
from training.config import TrainConfig
from training.images.metrics import classification_metrics
from training.images.task import train_images
from training.registry import Family

CONFIG_FIELDS = ("image",)
WATCHED = ("accuracy", "auroc")


def train(config: TrainConfig, family: Family, run_dir: Path) -> RunRecord:
    return train_images(config, run_dir)


def parity(refs: list[np.ndarray], gots: list[np.ndarray], heldout: dict[str, np.ndarray],
           record: RunRecord, budget: float):
    ref, got, spec = refs[0], gots[0], record.image
    ok = spec.class_names.index(spec.ok_class)
    keras_m = classification_metrics(heldout["labels"], ref, ok, spec.class_names)
    edge_m = classification_metrics(heldout["labels"], got, ok, spec.class_names)
    edge_m["agreement"] = float(np.mean(ref.argmax(1) == got.argmax(1)))
    return keras_m, edge_m, points_reasons(keras_m, edge_m, WATCHED, budget)


def points_reasons(keras_m: dict, edge_m: dict, watched: tuple[str, ...], budget: float):
    """A reason for each watched metric that the edge lost more than ``budget`` of."""
    return [f"edge {k} {edge_m[k]:.4f} < float {keras_m[k]:.4f} - {budget}" for k in watched
            if np.isfinite(keras_m[k]) and not edge_m[k] >= keras_m[k] - budget]
