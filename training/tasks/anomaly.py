"""Task ``anomaly``: windows of normal operation → their reconstruction (autoencoders, VAE).
Loss: MSE (a VAE adds its KL term). Limits calibrated on the validation windows' scores
(``threshold``: rule, quantile, margin, deadband, delays, EWMA, k-of-n); metrics: false-alarm
rate on the test split and, on the simulator, detection of a fresh drift fault. Parity: the
edge F1 may drop by the budget (points) and alarm states must agree on 99 % of windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.alarms import replay
from edge_runtime.bundle import RunRecord, ThresholdSpec
from edge_runtime.scaling import StandardScaler
from edge_runtime.scoring import window_scores
from edge_runtime.windowing import sliding_windows
from training import plots
from training.autoencoders import edge_model
from training.calibration import save_representative
from training.config import TrainConfig
from training.drift import drift_spec
from training.historian import GridData
from training.metrics import detection_metrics
from training.registry import Family
from training.series import SeriesData, fit_model
from training.simulator import Fault, simulate
from training.thresholds import calibrate

CONFIG_FIELDS = ("threshold",)
ALARM_AGREEMENT = 0.99  # share of windows with the same alarm state, float vs edge


def train(config: TrainConfig, family: Family, run_dir: Path) -> RunRecord:
    data = SeriesData.load(config, run_dir)
    L, s = config.window.length, data.splits
    x, _ = sliding_windows(data.scaled[s.train], L)
    val_x, _ = sliding_windows(data.scaled[s.val], L)
    test_x, _ = sliding_windows(data.scaled[s.test], L)
    model, info = fit_model(lambda: family.build(L, len(data.grid.tags), **config.model), config,
                      x, x, val_x, val_x, run_dir)
    t = config.threshold
    graph = edge_model(model, t.score)  # what is shipped: scores as the edge computes them
    spec = calibrate(_scores(graph, val_x, t.score), t.rule, t.quantile, t.margin,
                     t.clear_ratio, t.on_delay, t.off_delay, t.ewma_alpha, t.vote_k, t.vote_n)
    spec = spec.model_copy(update={"score": t.score})
    test_scores = _scores(graph, test_x, t.score)
    metrics = {"test_far": 100.0 * float(replay(spec, test_scores).mean())}
    labels = np.zeros(len(test_x), dtype=bool)
    if config.data.source == "simulator":  # a labelled fault run from the same plant
        fault_x, labels_f = _fault_windows(config, data.grid, data.scaler)
        test_x, labels = np.concatenate([test_x, fault_x]), np.concatenate([labels, labels_f])
        scores_f = _scores(graph, fault_x, t.score)
        metrics |= detection_metrics(labels_f, replay(spec, scores_f))
        plots.score_vs_threshold(scores_f, labels_f, spec, run_dir / "fault_scores.png")
    np.savez_compressed(run_dir / "heldout.npz", x=test_x, labels=labels)
    save_representative(run_dir, x, config.fit.seed)
    calibration = config.calibration if config.calibration.commissioning else None
    drift = drift_spec(config, data.grid.rows[s.train], data.grid.tags)
    return RunRecord(name=config.name, task="anomaly", family=config.family, thresholds=spec,
                     metrics={"keras": metrics}, training=info, calibration=calibration,
                     drift=drift,
                     **data.record_fields(config))


def _scores(graph, x: np.ndarray, score: str) -> np.ndarray:
    outputs = graph.predict(x, verbose=0)
    return window_scores(x, outputs if isinstance(outputs, list) else [outputs], score)


def _fault_windows(config: TrainConfig, data: GridData, scaler: StandardScaler):
    """Windows of a fresh simulated run with a temperature drift, labelled per window."""
    steps = 1200
    period = config.window.period_s
    run = simulate(steps, period, seed=config.data.simulator.seed + 1000,
                   faults=[Fault("drift", "temperature", steps * period / 2, 0.01)])
    cols = [run.tag_names.index(t) for t in data.tags]
    windows, ends = sliding_windows(scaler.transform(run.values[:, cols]), config.window.length)
    return windows, run.faulty[ends]


def parity(refs: list[np.ndarray], gots: list[np.ndarray], heldout: dict[str, np.ndarray],
           record: RunRecord, budget: float):
    """Every output of the model counts (a VAE's KL output for score 'elbo')."""
    x, labels = heldout["x"].astype(np.float32), heldout["labels"]
    spec: ThresholdSpec = record.thresholds
    metrics, flags = [], []
    for outputs in (refs, gots):
        scores = window_scores(x, outputs, spec.score)
        active = replay(spec, scores)  # the bundle's smoothing, then the alarm logic
        m = detection_metrics(labels, active) if labels.any() else {}
        m["alarm_share"] = float(active.mean())
        metrics.append(m)
        flags.append(active)
    agreement = float(np.mean(flags[0] == flags[1]))
    metrics[1]["alarm_agreement"] = agreement
    reasons = []
    if "f1" in metrics[0] and metrics[1]["f1"] < metrics[0]["f1"] - budget:
        reasons.append(f"edge F1 {metrics[1]['f1']:.3f} < float {metrics[0]['f1']:.3f} "
                       f"- {budget:.3f}")
    if agreement < ALARM_AGREEMENT:
        reasons.append(f"alarm states agree on {agreement:.1%} of windows (< 99 %)")
    return metrics[0], metrics[1], reasons
