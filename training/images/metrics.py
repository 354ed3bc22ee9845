"""Image metrics: OK/NOK AUROC and balanced accuracy, class accuracy and recall, IoU/Dice."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import balanced_accuracy_score, roc_auc_score


def classification_metrics(labels: np.ndarray, probs: np.ndarray, ok_index: int,
                           class_names: list[str]) -> dict[str, float]:
    """``auroc`` and ``balanced_accuracy`` are OK/NOK (p(NOK) = 1 − p(ok), NOK at ≥ 0.5);
    ``accuracy`` / ``balanced_accuracy_class`` over all classes; ``recall_<class>``."""
    labels = np.asarray(labels)
    pred = probs.argmax(axis=1)
    out = _nok_metrics(labels != ok_index, 1.0 - probs[:, ok_index]) | {
        "accuracy": float(np.mean(pred == labels)),
        "balanced_accuracy_class": float(balanced_accuracy_score(labels, pred)),
    }
    for c, name in enumerate(class_names):
        if (labels == c).any():
            out[f"recall_{name}"] = float(np.mean(pred[labels == c] == c))
    return out


def mask_nok_metrics(labels: np.ndarray, probs: np.ndarray, ok_index: int
                     ) -> dict[str, float]:
    """OK/NOK from the segmenter alone: the NOK score of an image is the largest pixel
    probability of its mask (NOK at ≥ 0.5: any pixel called defect), to set beside the
    classifier's p(NOK) — a gateway that runs both could use either."""
    score = np.asarray(probs).reshape(len(probs), -1).max(axis=1)
    return _nok_metrics(np.asarray(labels) != ok_index, score)


def _nok_metrics(nok_true: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """AUROC of a NOK score and the balanced accuracy of NOK at score ≥ 0.5 (AUROC is nan
    when only one of OK/NOK is present)."""
    both = 0 < nok_true.sum() < len(nok_true)
    return {"auroc": float(roc_auc_score(nok_true, score)) if both else float("nan"),
            "balanced_accuracy": float(balanced_accuracy_score(nok_true, score >= 0.5))}


def segmentation_metrics(masks: np.ndarray, probs: np.ndarray, threshold: float = 0.5
                         ) -> dict[str, float]:
    """Mean per-image IoU and Dice over images with a defect in the ground truth, and the
    share of defect-free images predicted clean."""
    truth = masks.reshape(len(masks), -1) >= 0.5
    pred = probs.reshape(len(probs), -1) >= threshold
    inter = (truth & pred).sum(axis=1)
    union = (truth | pred).sum(axis=1)
    size = truth.sum(axis=1) + pred.sum(axis=1)
    defective = truth.any(axis=1)
    out = {"iou": float("nan"), "dice": float("nan"), "clean_on_free": float("nan")}
    if defective.any():
        out["iou"] = float(np.mean(inter[defective] / union[defective]))
        out["dice"] = float(np.mean(2 * inter[defective] / size[defective]))
    if (~defective).any():
        out["clean_on_free"] = float(np.mean(~pred[~defective].any(axis=1)))
    out["pixel_accuracy"] = float(np.mean(truth == pred))
    return out
