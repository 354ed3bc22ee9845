"""Parity gate for image models: the edge model must keep the float model's accuracy and
OK/NOK AUROC (classifier) or defect IoU (segmenter) within a budget, on held-out images."""

from __future__ import annotations

import numpy as np

from converters.parity import ParityReport
from edge_runtime.interpreter import EdgeModel
from training.images.metrics import classification_metrics, segmentation_metrics

CLASSIFIER_POINTS = 0.005  # accuracy and OK/NOK AUROC: at most 0.5 point lost at the edge
SEGMENTER_POINTS = 0.01  # defect IoU: at most 1 point lost


def check_image_parity(keras_model, tflite_path, heldout: dict[str, np.ndarray], image: dict,
                       budget: float | None = None) -> ParityReport:
    if budget is None:
        budget = CLASSIFIER_POINTS if image["kind"] == "classifier" else SEGMENTER_POINTS
    x = heldout["x"].astype(np.float32)
    ref = np.asarray(keras_model.predict(x, verbose=0, batch_size=32))
    got = EdgeModel(tflite_path).predict(x)[0]
    err = np.abs(ref - got)
    if image["kind"] == "classifier":
        names = image["class_names"]
        ok = names.index(image["ok_class"])
        keras_m = classification_metrics(heldout["labels"], ref, ok, names)
        edge_m = classification_metrics(heldout["labels"], got, ok, names)
        edge_m["agreement"] = float(np.mean(ref.argmax(1) == got.argmax(1)))
        watched = ("accuracy", "auroc")
    else:
        t = image["mask_threshold"]
        keras_m = segmentation_metrics(heldout["masks"], ref, t)
        edge_m = segmentation_metrics(heldout["masks"], got, t)
        edge_m["agreement"] = float(np.mean((ref >= t) == (got >= t)))
        watched = ("iou",)
    reasons = [f"edge {k} {edge_m[k]:.4f} < float {keras_m[k]:.4f} - {budget}"
               for k in watched
               if np.isfinite(keras_m[k]) and not edge_m[k] >= keras_m[k] - budget]
    return ParityReport(not reasons, keras_m, edge_m, float(err.max()), float(err.mean()),
                        reasons)
