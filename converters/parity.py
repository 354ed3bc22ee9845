"""Does the edge model still agree with the Keras model? Measured on held-out windows through
the LiteRT interpreter, with the task's own metric, before anything is shipped.

Held-out data (``heldout.npz`` of a run): ``x`` always; forecasts ``y``; anomaly ``labels``
(per window, may be all False); image classifiers ``labels`` (class index per image, model
outputs class scores (N, C)); segmentation ``masks`` (N, H, W) of 0/1, model outputs (N, H, W, 1)
probabilities or (N, H, W, C) class scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from edge_runtime.alarms import replay
from edge_runtime.bundle import ThresholdSpec
from edge_runtime.interpreter import EdgeModel
from edge_runtime.scoring import window_scores
from training.metrics import detection_metrics, forecast_metrics

ANOMALY_AGREEMENT = 0.99  # share of windows with the same alarm state


@dataclass
class Budgets:
    """How much worse than float an edge model may be (points as fractions: 0.01 = 1 point)."""

    forecast_mse_rel: float = 0.02  # +2 % MSE
    anomaly_f1_points: float = 0.01  # −1 point of F1
    classifier_accuracy_points: float = 0.005  # −0.5 point of accuracy
    segmentation_iou_points: float = 0.01  # −1 point of IoU

    def with_task_budget(self, task: str, value: float | None, segmentation: bool = False):
        """Override the budget of ``task``'s own metric (the CLI's single ``--budget``)."""
        if value is None:
            return self
        key = {"forecast": "forecast_mse_rel", "anomaly": "anomaly_f1_points"}.get(task) or (
            "segmentation_iou_points" if segmentation else "classifier_accuracy_points")
        return Budgets(**(asdict(self) | {key: value}))


@dataclass
class ParityReport:
    passed: bool
    keras: dict[str, float]
    edge: dict[str, float]
    output_max_abs_error: float
    output_mean_abs_error: float
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def keras_reference(keras_model, heldout: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Float outputs on the held-out windows (computed once, shared by every candidate);
    a list, as a VAE shipped with score 'elbo' has two outputs (reconstruction and KL)."""
    x = heldout["x"].astype(np.float32)
    out = keras_model.predict(x, verbose=0, batch_size=256)
    return [np.asarray(o) for o in out] if isinstance(out, list | tuple) else [np.asarray(out)]


def _main_output(outputs: list[np.ndarray], like: np.ndarray | None = None) -> np.ndarray:
    """The task's output: the only one, or the one shaped like ``like`` (the input window of
    an autoencoder); LiteRT may order several outputs differently from Keras."""
    if len(outputs) == 1 or like is None:
        return outputs[0]
    return next(o for o in outputs if o.shape == like.shape)


def check_parity(keras_model, tflite_path, heldout: dict[str, np.ndarray], task: str,
                 thresholds: ThresholdSpec | None = None, budget: float | None = None,
                 budgets: Budgets | None = None, reference: list[np.ndarray] | None = None,
                 quantiles: list[float] | None = None) -> ParityReport:
    """``quantiles``: the forecast's levels (output (N, H, T, Q)); the budget applies to P50's
    MSE, interval coverage is reported, and quantiles that cross at the edge fail the gate."""
    x = heldout["x"].astype(np.float32)
    refs = keras_reference(keras_model, heldout) if reference is None else reference
    gots = EdgeModel(tflite_path).predict(x)
    like = x if task == "anomaly" else None
    ref, got = _main_output(refs, like), _main_output(gots, like)
    err = np.abs(ref - got)
    b = (budgets or Budgets()).with_task_budget(task, budget, "masks" in heldout)
    if task == "forecast":
        keras_m, edge_m, reasons = _forecast_parity(heldout["y"], ref, got, b.forecast_mse_rel,
                                                    quantiles)
    elif task == "anomaly":
        keras_m, edge_m, reasons = _anomaly_parity(x, refs, gots, heldout["labels"],
                                                   thresholds, b.anomaly_f1_points)
    elif "masks" in heldout:
        keras_m, edge_m, reasons = _score_parity(
            "iou", _iou(heldout["masks"], ref), _iou(heldout["masks"], got),
            b.segmentation_iou_points)
    else:
        labels = heldout["labels"]
        keras_m, edge_m, reasons = _score_parity(
            "accuracy", float(np.mean(ref.argmax(-1) == labels)),
            float(np.mean(got.argmax(-1) == labels)), b.classifier_accuracy_points)
    return ParityReport(not reasons, keras_m, edge_m, float(err.max()), float(err.mean()),
                        reasons)


def _forecast_parity(y, ref, got, rel: float, quantiles: list[float] | None = None):
    keras_m, edge_m = forecast_metrics(y, ref, quantiles), forecast_metrics(y, got, quantiles)
    limit = keras_m["mse"] * (1 + rel)
    point = "P50 MSE" if quantiles else "MSE"
    reasons = [] if edge_m["mse"] <= limit else [
        f"edge {point} {edge_m['mse']:.5f} > budget {limit:.5f} (float {keras_m['mse']:.5f} "
        f"+{rel:.0%})"]
    if edge_m.get("crossing_share", 0.0) > 0:
        reasons.append(f"edge quantiles cross in {edge_m['crossing_share']:.2%} of outputs")
    return keras_m, edge_m, reasons


def _score_parity(name: str, keras_v: float, edge_v: float, points: float):
    reasons = [] if edge_v >= keras_v - points else [
        f"edge {name} {edge_v:.4f} < float {keras_v:.4f} - {points:.4f}"]
    return {name: keras_v}, {name: edge_v}, reasons


def _iou(masks: np.ndarray, out: np.ndarray) -> float:
    pred = out[..., 0] >= 0.5 if out.shape[-1] == 1 else out.argmax(-1) > 0
    truth = np.asarray(masks).reshape(pred.shape) > 0
    union = np.sum(pred | truth)
    return float(np.sum(pred & truth) / union) if union else 1.0


def _anomaly_parity(x, ref, got, labels, spec: ThresholdSpec, f1_budget: float):
    metrics, flags = [], []
    for outputs in (ref, got):  # every output of the model (a VAE's KL for score 'elbo')
        scores = window_scores(x, outputs, spec.score)
        active = replay(spec, scores)  # the bundle's smoothing, then the alarm logic
        m = detection_metrics(labels, active) if labels.any() else {}
        m["alarm_share"] = float(active.mean())
        metrics.append(m)
        flags.append(active)
    agreement = float(np.mean(flags[0] == flags[1]))
    metrics[1]["alarm_agreement"] = agreement
    reasons = []
    if "f1" in metrics[0] and metrics[1]["f1"] < metrics[0]["f1"] - f1_budget:
        reasons.append(f"edge F1 {metrics[1]['f1']:.3f} < float {metrics[0]['f1']:.3f} "
                       f"- {f1_budget:.3f}")
    if agreement < ANOMALY_AGREEMENT:
        reasons.append(f"alarm states agree on {agreement:.1%} of windows (< 99 %)")
    return metrics[0], metrics[1], reasons
