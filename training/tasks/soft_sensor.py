"""Task ``soft_sensor``: a window of process tags → the lab or analyzer value it describes.

Labels are sparse (lab samples, analyzer readings at their own times) and carry a dead time;
each is paired with the window its dead time points at (:mod:`training.lab_labels`). Labels
are split by time or by group, held-out labels whose windows touch training rows are purged,
and the leak check fails the run before training if a group, a window or an input row is on
two sides (:mod:`training.label_splits`). The scaler is fitted on the rows of training windows
only, the target scale on training labels only. Loss: MSE on the scaled target (gradient
clipping by ``fit.clip_norm``). Metrics on the test labels, in engineering units, beside the
PLS and last-measured-value references (:mod:`training.soft_references`). Explanations
(saliency, integrated gradients, permutation importance) on the validation windows
(:mod:`training.explain`; a classifier's through the probability of its predicted class).
Parity: the edge MSE may exceed the float one by the budget (relative).
``soft_sensor.kind: classification`` trains class probabilities instead, with their own
metrics, references (:mod:`training.soft_class_references`) and parity
(:mod:`training.soft_classification`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from edge_runtime.bundle import (
    InputSpec,
    OutputSpec,
    RunRecord,
    SoftSensorSpec,
    TagSpec,
)
from edge_runtime.scaling import StandardScaler
from edge_runtime.soft_sensing import fill_gaps
from training import (
    batch_training,
    explain,
    plots,
    quality,
    soft_class_references,
    soft_classification,
)
from training.calibration import save_representative
from training.config import TrainConfig
from training.historian import GridData, load_grid
from training.lab_labels import Paired, input_data, load_labels, pair
from training.label_splits import check_no_leak, covered_rows, group_folds, split_labels
from training.metrics import regression_metrics
from training.registry import Family
from training.series import fit_model
from training.soft_references import cross_validated, reference_metrics

CONFIG_FIELDS = ("soft_sensor",)


def train(config: TrainConfig, family: Family, run_dir: Path) -> RunRecord:
    if config.data.batch is not None:  # batch-end targets: training/batch_training.py
        return batch_training.train(config, family, run_dir)
    s, w = config.soft_sensor, config.window
    L = w.length
    labels = load_labels(config)
    grid = load_grid(input_data(config), w)
    paired = pair(labels, grid, config)
    lab = paired.labels
    splits = split_labels(paired.ends, lab.stamps, lab.groups, config.split, L)
    check_no_leak(splits, paired.ends, L, grid.grid_s, lab.groups)  # before any training
    train_rows = covered_rows(paired.ends[splits.train], L, len(grid.rows))
    quality.review(grid.quality, grid.grid_s, grid.rows, grid.tags, train_rows,
                   config.data.strict, run_dir / "data_quality.png")
    scaler = StandardScaler.fit(grid.rows[train_rows])
    scaled = scaler.transform(grid.rows)
    classify = s.kind == "classification"  # labels are class indices: not scaled
    mean, scale = float(lab.values[splits.train].mean()), float(lab.values[splits.train].std())
    mean, scale = (0.0, 1.0) if classify else (mean, scale if scale > 1e-12 else 1.0)
    target = SoftSensorSpec(target=s.target, unit=lab.unit, dead_time_s=s.dead_time_s,
                            missing=s.missing, mean=mean, scale=scale, kind=s.kind,
                            classes=s.classes or [])

    def pairs(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # gaps filled as the edge fills them (the training mean is 0 once scaled)
        x = np.stack([fill_gaps(scaled[e - L + 1:e + 1], s.missing, 0.0)
                      for e in paired.ends[idx]]).astype(np.float32)
        y = ((lab.values[idx] - target.mean) / target.scale).astype(np.float32)[:, None]
        return x, y

    (x, y), (val_x, val_y), (test_x, test_y) = (pairs(splits.train), pairs(splits.val),
                                                pairs(splits.test))
    cv = _cross_validation(config, paired, grid, pairs)  # leak-checked before any training
    if classify:
        return _train_classifier(config, family, run_dir, grid, paired, splits, target,
                                 scaler, train_rows, (x, y, val_x, val_y, test_x, test_y), cv)
    model, info = fit_model(lambda: family.build(L, len(grid.tags), 1, **config.model),
                            config, x, y, val_x, val_y, run_dir)
    explain.write(model, val_x, val_y, grid.tags, w.period_s, run_dir, config.name,
                  config.fit.seed)  # on the validation windows: the test split stays unread
    estimate = target.to_units(model.predict(test_x, verbose=0)[:, 0])
    metrics = regression_metrics(lab.values[splits.test], estimate)
    references, curves = reference_metrics(lab.stamps, lab.values, s.dead_time_s, splits.test,
                                           x, lab.values[splits.train], test_x,
                                           s.pls_components)
    metrics |= references | _counts(paired, splits)
    if cv is not None:  # the references over every fold, not one
        folds, all_x = cv
        metrics |= cross_validated(all_x, lab.values, lab.stamps, s.dead_time_s, folds,
                                   s.pls_components)
    np.savez_compressed(run_dir / "heldout.npz", x=test_x, y=test_y)
    save_representative(run_dir, x, config.fit.seed)
    plots.soft_sensor_vs_lab(lab.values[splits.test], {config.family: estimate} | curves,
                             s.target, lab.unit, run_dir / "estimate_vs_lab.png")
    return _record(config, grid, scaler, target, metrics, info,
                   _fingerprint(grid, train_rows, lab.values[splits.train]))


def _cross_validation(config: TrainConfig, paired: Paired, grid: GridData,
                      pairs) -> tuple[list, np.ndarray] | None:
    """With ``split.by: group``: every GroupKFold fold held out once, each leak-checked, and
    the scaled window of every label (``pairs``), for the references' cross-validation;
    None otherwise."""
    if config.split.by != "group":
        return None
    L, lab = config.window.length, paired.labels
    folds = group_folds(paired.ends, lab.groups, config.split, L)
    for fold in folds:
        check_no_leak(fold, paired.ends, L, grid.grid_s, lab.groups)
    return folds, pairs(np.arange(len(paired.ends)))[0]


def _train_classifier(config: TrainConfig, family: Family, run_dir: Path, grid: GridData,
                      paired: Paired, splits, target: SoftSensorSpec, scaler: StandardScaler,
                      train_rows: np.ndarray, arrays: tuple,
                      cv: tuple[list, np.ndarray] | None) -> RunRecord:
    """``soft_sensor.kind: classification``: the family's head gives one logit per class,
    a softmax on top, cross-entropy; accuracy, balanced accuracy and macro F1 on the test
    labels beside the logistic-regression, last-class and majority references
    (:mod:`training.soft_class_references`, same splits)."""
    x, y, val_x, val_y, test_x, test_y = arrays
    L, F, classes = config.window.length, len(grid.tags), target.classes

    def build():
        return soft_classification.classifier(family.build(L, F, len(classes),
                                                           **config.model))

    model, info = fit_model(build, config, x, y, val_x, val_y, run_dir,
                            loss=soft_classification.LOSS)
    explain.write(model, val_x, val_y, grid.tags, config.window.period_s, run_dir,
                  config.name, config.fit.seed, classes)  # the predicted class's probability
    probs = model.predict(test_x, verbose=0)
    metrics = soft_classification.class_metrics(test_y, probs, classes)
    lab = paired.labels
    dead = config.soft_sensor.dead_time_s
    metrics |= soft_class_references.reference_metrics(lab.stamps, lab.values, dead, splits,
                                                       arrays, len(classes))
    if cv is not None:  # the references over every fold, not one
        metrics |= soft_class_references.cross_validated(
            cv[1], lab.values, lab.stamps, dead, cv[0], metrics.get("logistic_C"), len(classes))
    metrics |= _counts(paired, splits)
    np.savez_compressed(run_dir / "heldout.npz", x=test_x, y=test_y)
    save_representative(run_dir, x, config.fit.seed)
    values = paired.labels.values[splits.train]
    return _record(config, grid, scaler, target, metrics, info,
                   _fingerprint(grid, train_rows, values))


def _record(config: TrainConfig, grid: GridData, scaler: StandardScaler,
            target: SoftSensorSpec, metrics: dict, info, fingerprint: str) -> RunRecord:
    w = config.window
    tags = [TagSpec(name=t, unit=u) for t, u in zip(grid.tags, grid.units, strict=True)]
    return RunRecord(
        name=config.name, task="soft_sensor", family=config.family,
        input=InputSpec(tags=tags, period_s=w.period_s, window=w.length, stride=w.stride,
                        max_gap_s=w.max_gap_s),
        scaler=scaler.to_spec(), output=OutputSpec(targets=[target.target]),
        soft_sensor=target, metrics={"keras": metrics}, training=info,
        training_data_sha256=fingerprint, data_quality=grid.quality)


def _counts(paired: Paired, splits) -> dict[str, float]:
    return {"labels_train": float(len(splits.train)), "labels_val": float(len(splits.val)),
            "labels_test": float(len(splits.test)), "labels_purged": float(splits.purged),
            "labels_without_window": float(paired.dropped_no_window),
            "labels_with_gap": float(paired.dropped_gap)}


def _fingerprint(grid: GridData, rows: np.ndarray, values: np.ndarray) -> str:
    """SHA-256 of the training rows and training labels (recorded in the bundle)."""
    block = np.ascontiguousarray(grid.rows[rows], dtype=np.float64).tobytes()
    return hashlib.sha256(block + np.asarray(values, np.float64).tobytes()
                          + ",".join(grid.tags).encode()).hexdigest()


def parity(refs: list[np.ndarray], gots: list[np.ndarray], heldout: dict[str, np.ndarray],
           record: RunRecord, budget: float):
    spec = record.soft_sensor
    if spec.kind == "classification":  # class agreement and probability error
        return soft_classification.class_parity(refs[0], gots[0], heldout["y"][:, 0],
                                                spec.classes, budget)
    y = spec.to_units(heldout["y"][:, 0])
    keras_m = regression_metrics(y, spec.to_units(refs[0][:, 0]))
    edge_m = regression_metrics(y, spec.to_units(gots[0][:, 0]))
    limit = keras_m["mse"] * (1 + budget)
    reasons = [] if edge_m["mse"] <= limit else [
        f"edge MSE {edge_m['mse']:.5g} > budget {limit:.5g} (float {keras_m['mse']:.5g} "
        f"+{budget:.0%})"]
    return keras_m, edge_m, reasons
