"""Train one model from a :class:`TrainConfig` and write a run directory the converter reads.

Run directory: ``model.keras``, ``training.json`` (the bundle manifest minus what conversion
adds), ``heldout.npz`` (test windows, for parity and edge metrics), ``representative.npz``
(training windows for int8 calibration), and PNG plots.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from edge_runtime.alarms import replay
from edge_runtime.bundle import InputSpec, OutputSpec, TagSpec, check_quantile_levels
from edge_runtime.scaling import StandardScaler
from edge_runtime.scoring import window_scores
from edge_runtime.windowing import forecast_pairs, sliding_windows
from training import plots
from training.autoencoders import edge_model
from training.calibration import save_representative
from training.config import TrainConfig
from training.distribute import distribution_strategy, precision
from training.historian import GridData, load_grid
from training.metrics import detection_metrics, forecast_metrics, regression_metrics
from training.registry import get_family
from training.simulator import Fault, simulate
from training.thresholds import calibrate

log = logging.getLogger(__name__)


@dataclass
class Splits:
    """Row ranges; validation and test start ``window`` rows early so their first window's
    input may reach back (as the ETT protocol does) while their targets never overlap."""

    train: slice
    val: slice
    test: slice


def chronological_splits(n_rows: int, window: int, train: float, val: float) -> Splits:
    train_end = int(n_rows * train)
    val_end = int(n_rows * (train + val))
    return Splits(
        slice(0, train_end),
        slice(max(train_end - window, 0), val_end),
        slice(max(val_end - window, 0), n_rows),
    )


def train(config: TrainConfig) -> Path:
    """Train, evaluate on the test split, and write the run directory; returns its path."""
    keras.utils.set_random_seed(config.fit.seed)
    family = get_family(config.family, config.task)
    data = load_grid(config.data, config.window)
    splits = chronological_splits(
        len(data.rows), config.window.length, config.split.train, config.split.val
    )
    scaler = StandardScaler.fit(data.rows[splits.train])
    scaled = scaler.transform(data.rows)
    run_dir = Path(config.output_dir) / config.name
    run_dir.mkdir(parents=True, exist_ok=True)
    draft = _draft_manifest(config, data, scaler, splits)
    if config.task == "forecast":
        metrics = _train_forecaster(config, family, data, scaled, splits, run_dir, draft)
    else:
        metrics = _train_autoencoder(config, family, data, scaled, scaler, splits, run_dir, draft)
    draft["metrics"] = {"keras": metrics}
    (run_dir / "training.json").write_text(json.dumps(draft, indent=2) + "\n")
    log.info("trained %s (%s): %s", config.name, config.family, metrics)
    return run_dir


def _draft_manifest(config: TrainConfig, data: GridData, scaler: StandardScaler, splits) -> dict:
    w = config.window
    spec = InputSpec(
        tags=[TagSpec(name=t, unit=u) for t, u in zip(data.tags, data.units, strict=True)],
        period_s=w.period_s, window=w.length, stride=w.stride, max_gap_s=w.max_gap_s,
    )
    return {
        "name": config.name,
        "task": config.task,
        "family": config.family,
        "input": spec.model_dump(),
        "scaler": scaler.to_spec().model_dump(),
        "training_data_sha256": data.fingerprint(splits.train.stop),
    }


def _fit(build, config: TrainConfig, x, y, val_x, val_y, run_dir: Path):
    """Build (under the configured strategy and precision), fit with early stopping and
    best-weights restore, save, plot. ``build`` is a zero-argument model factory. A forecaster
    with ``model.quantiles`` trains on the pinball loss of its (N, H, T, Q) output."""
    from training.forecasters import Pinball

    levels = quantile_levels(config)
    strategy = distribution_strategy(config.fit.strategy)
    with precision(config.fit.mixed_precision), strategy.scope():
        model = build()
        loss = Pinball(levels) if levels else "mse"
        model.compile(optimizer=keras.optimizers.Adam(config.fit.learning_rate), loss=loss)
    callbacks = [
        keras.callbacks.EarlyStopping(patience=config.fit.patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(patience=max(config.fit.patience // 2, 1)),
    ]
    if config.fit.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs")))
    batch, seed = config.fit.batch_size, config.fit.seed
    history = model.fit(
        dataset(x, y, batch, seed, shuffle=True), validation_data=dataset(val_x, val_y, batch),
        epochs=config.fit.epochs, verbose=0, callbacks=callbacks,
        shuffle=False,  # the pipeline shuffles (seeded); Keras cannot shuffle a tf.data set
    )
    score = config.threshold.score if config.task == "anomaly" else "reconstruction"
    shipped = edge_model(model, score)  # a VAE ships decoder(mean) (+ its KL term for elbo)
    if levels:  # saved uncompiled: the Pinball loss must not make model.keras need procedge
        shipped = keras.Model(shipped.input, shipped.output, name=shipped.name)
    shipped.save(run_dir / "model.keras")
    plots.learning_curve(history.history, run_dir / "learning_curve.png", config.name)
    return model


def dataset(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int = 0,
            shuffle: bool = False):
    """A ``tf.data`` pipeline: slices → (seeded reshuffle every epoch) → batch → prefetch.
    ``batch_size`` is the global batch: under a distribution strategy Keras splits each batch
    across replicas, and the pipeline is sharded by element (in-memory arrays have no files)."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE).with_options(options)


def quantile_levels(config: TrainConfig) -> list[float]:
    """The forecaster's quantile levels (``model.quantiles``), checked; [] for a point model."""
    if config.task != "forecast":
        return []
    return check_quantile_levels(list(config.model.get("quantiles") or []))


def _train_forecaster(config, family, data, scaled, splits, run_dir, draft) -> dict[str, float]:
    targets = config.targets or data.tags
    cols = [data.tags.index(t) for t in targets]
    L, H = config.window.length, config.horizon
    levels = quantile_levels(config)
    x, y = forecast_pairs(scaled[splits.train], L, H, cols)
    val_x, val_y = forecast_pairs(scaled[splits.val], L, H, cols)
    test_x, test_y = forecast_pairs(scaled[splits.test], L, H, cols)
    model = _fit(lambda: family.build(L, len(data.tags), H, len(cols), target_columns=cols,
                                      **config.model), config, x, y, val_x, val_y, run_dir)
    pred = model.predict(test_x, verbose=0)
    persistence = np.repeat(test_x[:, -1:, cols], H, axis=1)
    metrics = forecast_metrics(test_y, pred, levels)
    metrics["persistence_mse"] = regression_metrics(test_y, persistence)["mse"]
    np.savez_compressed(run_dir / "heldout.npz", x=test_x, y=test_y)
    _save_representative(run_dir, x, config.fit.seed)
    draft["output"] = OutputSpec(horizon=H, targets=targets, quantiles=levels).model_dump()
    forecast_plots(run_dir, model, config.name, test_x, test_y, pred, targets, levels)
    return metrics


def forecast_plots(run_dir: Path, model, title: str, x, y, pred, targets: list[str],
                   levels: list[float]) -> None:
    """forecast_vs_actual.png (P50 with the outer quantiles shaded, for a quantile model) and,
    for attention families, attention.png of the first window."""
    from training.forecasters import attention_maps

    band = None
    if levels:
        band, pred = (pred[..., 0], pred[..., -1]), pred[..., levels.index(0.5)]
    plots.forecast_vs_actual(y, pred, targets, run_dir / "forecast_vs_actual.png", band=band,
                             band_label=f"P{levels[0] * 100:g}–P{levels[-1] * 100:g}"
                             if levels else "")
    maps = attention_maps(model, x[0])
    if maps:
        plots.attention_panels(maps, run_dir / "attention.png", title)


def _train_autoencoder(config, family, data, scaled, scaler, splits, run_dir, draft):
    L = config.window.length
    x, _ = sliding_windows(scaled[splits.train], L)
    val_x, _ = sliding_windows(scaled[splits.val], L)
    test_x, _ = sliding_windows(scaled[splits.test], L)
    model = _fit(lambda: family.build(L, len(data.tags), **config.model), config,
                 x, x, val_x, val_x, run_dir)
    t = config.threshold
    graph = edge_model(model, t.score)  # what is shipped: scores as the edge computes them
    spec = calibrate(_scores(graph, val_x, t.score), t.rule, t.quantile, t.margin,
                     t.clear_ratio, t.on_delay, t.off_delay, t.ewma_alpha, t.vote_k, t.vote_n)
    spec = spec.model_copy(update={"score": t.score})
    draft["thresholds"] = spec.model_dump()
    test_scores = _scores(graph, test_x, t.score)
    metrics = {"test_far": 100.0 * float(replay(spec, test_scores).mean())}
    labels = np.zeros(len(test_x), dtype=bool)
    if config.data.source == "simulator":  # a labelled fault run from the same plant
        fault_x, labels_f = _fault_windows(config, data, scaler)
        test_x, labels = np.concatenate([test_x, fault_x]), np.concatenate([labels, labels_f])
        scores_f = _scores(graph, fault_x, t.score)
        metrics |= detection_metrics(labels_f, replay(spec, scores_f))
        plots.score_vs_threshold(scores_f, labels_f, spec, run_dir / "fault_scores.png")
    np.savez_compressed(run_dir / "heldout.npz", x=test_x, labels=labels)
    _save_representative(run_dir, x, config.fit.seed)
    return metrics


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


def _save_representative(run_dir: Path, train_x: np.ndarray, seed: int) -> None:
    """int8 calibration windows stratified by operating mode (``training.calibration``)."""
    save_representative(run_dir, train_x, seed)
