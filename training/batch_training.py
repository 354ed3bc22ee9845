"""Task ``soft_sensor`` with ``data.batch``: train a batch-end model on early windows
(:mod:`training.batches`), scored on held-apart batches beside two references — PLS on the
same flattened windows (one over every K, and one per K), and the mean of the training batches
(what a plant has with no model).

The scaler is fitted on the training windows only (progress channel and padding rows
included, as the gateway builds them), the target scale on the training batches only. Metrics
on the test batches in the target's unit, pooled over every K and per K (``r2_at_30``, …).
``parity`` is the soft sensor's (edge MSE within the budget of the float one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.bundle import InputSpec, OutputSpec, RunRecord, SoftSensorSpec, TagSpec
from edge_runtime.scaling import StandardScaler
from edge_runtime.soft_sensing import fill_gaps
from training import plots, quality
from training.batches import (
    BatchData,
    batch_spec,
    fingerprint,
    load_batches,
    make_samples,
    model_tags,
    split_batches,
)
from training.calibration import save_representative
from training.config import TrainConfig
from training.metrics import regression_metrics
from training.registry import Family
from training.series import fit_model
from training.soft_references import pls_predict


def train(config: TrainConfig, family: Family, run_dir: Path) -> RunRecord:
    s, w = config.soft_sensor, config.window
    data = load_batches(config)
    samples = make_samples(data, config)
    splits = split_batches(samples, config)  # leak checks before any training
    _data_quality(config, data, samples.groups[splits.train], run_dir)
    scaler = StandardScaler.fit(samples.x[splits.train].reshape(-1, samples.x.shape[-1]))
    y_train = samples.y[splits.train]
    spread = float(y_train.std())
    target = SoftSensorSpec(target=s.target, unit=data.unit, dead_time_s=0.0,
                            missing=s.missing, mean=float(y_train.mean()),
                            scale=spread if spread > 1e-12 else 1.0,
                            batch=batch_spec(config, data))

    def pairs(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scaled windows, gaps filled as the edge fills them (unfillable ones dropped)."""
        filled = [fill_gaps(scaler.transform(samples.x[i]), s.missing, 0.0) for i in idx]
        ok = np.array([f is not None for f in filled], bool)
        x = np.stack([f for f in filled if f is not None]).astype(np.float32)
        y = ((samples.y[idx[ok]] - target.mean) / target.scale).astype(np.float32)[:, None]
        return x, y, idx[ok]

    (x, y, tr), (val_x, val_y, va), (test_x, test_y, te) = (pairs(splits.train),
                                                            pairs(splits.val),
                                                            pairs(splits.test))
    tags, units = model_tags(data)
    model, info = fit_model(lambda: family.build(w.length, len(tags), 1, **config.model),
                            config, x, y, val_x, val_y, run_dir)
    estimate = target.to_units(model.predict(test_x, verbose=0)[:, 0])
    truth = samples.y[te]
    pls = pls_predict(x, samples.y[tr], test_x, s.pls_components)
    per_k = _pls_per_k(x, samples.y[tr], samples.percent[tr], test_x, samples.percent[te],
                       s.pls_components)
    mean = np.full(len(te), float(samples.y[tr].mean()))
    metrics = _scores(truth, samples.percent[te], {"": estimate, "pls_": pls,
                                                   "pls_per_k_": per_k, "train_mean_": mean})
    metrics |= _counts(data, samples, splits, (tr, va, te))
    np.savez_compressed(run_dir / "heldout.npz", x=test_x, y=test_y)
    save_representative(run_dir, x, config.fit.seed)
    plots.soft_sensor_vs_lab(truth, {config.family: estimate, "PLS": pls}, s.target,
                             data.unit, run_dir / "estimate_vs_lab.png")
    return RunRecord(
        name=config.name, task="soft_sensor", family=config.family,
        input=InputSpec(tags=[TagSpec(name=t, unit=u) for t, u in zip(tags, units,
                                                                         strict=True)],
                        period_s=w.period_s, window=w.length, stride=w.stride,
                        max_gap_s=w.max_gap_s),
        scaler=scaler.to_spec(), output=OutputSpec(targets=[s.target]), soft_sensor=target,
        metrics={"keras": metrics}, training=info,
        training_data_sha256=fingerprint(samples.x[tr], samples.y[tr], tags),
        data_quality=data.report)


def _data_quality(config: TrainConfig, data: BatchData, train_ids: np.ndarray,
                  run_dir: Path) -> None:
    """The data-quality review of every training run, over the batches' rows laid end to end
    (the flat-lined check on the training batches)."""
    rows, train = np.concatenate([b.rows for b in data.batches]), set(train_ids.tolist())
    in_train = np.concatenate([np.full(len(b.rows), b.id in train) for b in data.batches])
    grid_s = np.concatenate([b.start_s + config.window.period_s * np.arange(len(b.rows))
                             for b in data.batches])
    quality.review(data.report, grid_s, rows, data.tags, in_train, config.data.strict,
                   run_dir / "data_quality.png")


def _pls_per_k(x: np.ndarray, y: np.ndarray, percent: np.ndarray, test_x: np.ndarray,
               test_percent: np.ndarray, components: int) -> np.ndarray:
    """One PLS per share K, fitted on the training windows of that K only (the classical
    batch-wise model: one regression per time of prediction)."""
    out = np.full(len(test_x), np.nan)
    for k in np.unique(test_percent):
        at = test_percent == k
        out[at] = pls_predict(x[percent == k], y[percent == k], test_x[at], components)
    return out


def _scores(truth: np.ndarray, percent: np.ndarray,
            estimates: dict[str, np.ndarray]) -> dict[str, float]:
    """RMSE, MAE, R² of each estimate (prefix: '' the model, 'pls_' one PLS over every K,
    'pls_per_k_' one PLS per K, 'train_mean_' the training batches' mean), pooled
    and at each K (``r2_at_30``)."""
    out: dict[str, float] = {}
    for prefix, est in estimates.items():
        for key, value in regression_metrics(truth, est).items():
            out[f"{prefix}{key}"] = value
        for k in np.unique(percent):
            at = percent == k
            m = regression_metrics(truth[at], est[at])
            out |= {f"{prefix}{key}_at_{k:g}": m[key] for key in ("rmse", "mae", "r2")}
    return out


def _counts(data, samples, splits, kept) -> dict[str, float]:
    groups = samples.groups
    return {"batches_train": float(len(np.unique(groups[splits.train]))),
            "batches_val": float(len(np.unique(groups[splits.val]))),
            "batches_test": float(len(np.unique(groups[splits.test]))),
            "batches_without_target": float(data.without_target),
            "batch_nominal_rows": float(data.nominal_rows),
            "samples_train": float(len(kept[0])), "samples_val": float(len(kept[1])),
            "samples_test": float(len(kept[2])),
            "samples_with_gap": float(sum(len(i) for i in splits.sets().values())
                                      - sum(len(i) for i in kept))}
