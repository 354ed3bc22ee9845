"""Classification soft sensors (``soft_sensor.kind: classification``): a window of process tags →
the probabilities of the lab sample's class (a grade, on-spec/off-spec).

Any soft-sensor family is the trunk: its dense head gets one output per class and a softmax
on top (a builtin LiteRT op), trained on sparse categorical cross-entropy. Metrics: accuracy,
balanced accuracy and macro F1 (every class weighs the same, so a rare off-spec class counts),
log loss, beside the references of :mod:`training.soft_class_references`. Parity
holds the edge to the float model with the soft sensor's budget (a fraction): class
agreement ≥ 1 − budget, mean |Δ probability| ≤ budget, accuracy within budget of the float's.
"""

from __future__ import annotations

import keras
import numpy as np

from training.soft_class_references import cross_entropy, label_metrics

LOSS = "sparse_categorical_crossentropy"


def classifier(trunk: keras.Model) -> keras.Model:
    """``trunk`` (a family built with one output per class, logits) with a softmax on top."""
    probs = keras.layers.Softmax(name="probabilities")(trunk.output)
    return keras.Model(trunk.input, probs, name=trunk.name)


def class_metrics(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, float]:
    """``accuracy``, ``balanced_accuracy``, ``f1_macro``, ``log_loss`` and ``recall_<class>``
    of class indices ``labels`` against probabilities ``probs`` (N, C)."""
    labels = np.asarray(labels).reshape(-1).astype(int)
    probs = np.asarray(probs, np.float64)
    pred = probs.argmax(axis=1)
    out = label_metrics(labels, pred, len(classes)) | {"log_loss": cross_entropy(probs, labels)}
    for c, name in enumerate(classes):
        if (labels == c).any():
            out[f"recall_{name}"] = float(np.mean(pred[labels == c] == c))
    return out


def class_parity(ref: np.ndarray, got: np.ndarray, labels: np.ndarray, classes: list[str],
                 budget: float) -> tuple[dict, dict, list[str]]:
    """Float against edge probabilities on the held-out windows: the metrics of each, the
    edge's ``agreement`` and ``prob_error``, and the reasons it fails the gate."""
    keras_m = class_metrics(labels, ref, classes)
    edge_m = class_metrics(labels, got, classes)
    edge_m["agreement"] = float(np.mean(ref.argmax(1) == got.argmax(1)))
    edge_m["prob_error"] = float(np.abs(np.asarray(ref) - np.asarray(got)).mean())
    reasons = []
    if edge_m["agreement"] < 1 - budget:
        reasons.append(f"edge class agreement {edge_m['agreement']:.4f} < {1 - budget:.4f} "
                       f"(1 - budget {budget:g})")
    if edge_m["prob_error"] > budget:
        reasons.append(f"edge mean |probability error| {edge_m['prob_error']:.4g} > budget "
                       f"{budget:g}")
    if edge_m["accuracy"] < keras_m["accuracy"] - budget:
        reasons.append(f"edge accuracy {edge_m['accuracy']:.4f} < float "
                       f"{keras_m['accuracy']:.4f} - {budget:g}")
    return keras_m, edge_m, reasons
