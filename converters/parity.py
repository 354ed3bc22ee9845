"""Does the edge model still agree with the Keras model? Measured on held-out windows through
the LiteRT interpreter, with the task's own metric, before anything is shipped."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_runtime.alarms import replay
from edge_runtime.bundle import ThresholdSpec
from edge_runtime.interpreter import EdgeModel
from edge_runtime.scoring import anomaly_scores
from training.metrics import detection_metrics, regression_metrics

# Default budgets: how much worse than float the edge model may be.
FORECAST_MSE_REL = 0.02  # +2 % MSE
ANOMALY_F1_POINTS = 0.01  # −1 point of F1
ANOMALY_AGREEMENT = 0.99  # share of windows with the same alarm state


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


def check_parity(keras_model, tflite_path, heldout: dict[str, np.ndarray], task: str,
                 thresholds: ThresholdSpec | None = None, budget: float | None = None
                 ) -> ParityReport:
    x = heldout["x"].astype(np.float32)
    ref = np.asarray(keras_model.predict(x, verbose=0, batch_size=256))
    got = EdgeModel(tflite_path).predict(x)[0]
    err = np.abs(ref - got)
    if task == "forecast":
        keras_m = regression_metrics(heldout["y"], ref)
        edge_m = regression_metrics(heldout["y"], got)
        limit = keras_m["mse"] * (1 + (FORECAST_MSE_REL if budget is None else budget))
        reasons = [] if edge_m["mse"] <= limit else [
            f"edge MSE {edge_m['mse']:.5f} > budget {limit:.5f} (float {keras_m['mse']:.5f})"]
    else:
        keras_m, edge_m, reasons = _anomaly_parity(x, ref, got, heldout["labels"], thresholds,
                                                   ANOMALY_F1_POINTS if budget is None else budget)
    return ParityReport(not reasons, keras_m, edge_m, float(err.max()), float(err.mean()),
                        reasons)


def _anomaly_parity(x, ref, got, labels, spec: ThresholdSpec, f1_budget: float):
    metrics, flags = [], []
    for recon in (ref, got):
        scores = anomaly_scores(x, recon)
        active = replay(spec, scores)
        m = detection_metrics(labels, active) if labels.any() else {}
        m["alarm_share"] = float(active.mean())
        metrics.append(m)
        flags.append(active)
    agreement = float(np.mean(flags[0] == flags[1]))
    metrics[1]["alarm_agreement"] = agreement
    reasons = []
    if "f1" in metrics[0] and metrics[1]["f1"] < metrics[0]["f1"] - f1_budget:
        reasons.append(f"edge F1 {metrics[1]['f1']:.3f} < float {metrics[0]['f1']:.3f} - budget")
    if agreement < ANOMALY_AGREEMENT:
        reasons.append(f"alarm states agree on {agreement:.1%} of windows (< 99 %)")
    return metrics[0], metrics[1], reasons
