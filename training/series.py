"""What the series tasks (tag windows in) share in training: the aligned grid from the
historian or the simulator, chronological splits, the scaler fitted on training rows only, the
input section of the run record, and the fit itself (strategy, precision, early stopping)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from edge_runtime.bundle import (
    InputSpec,
    OutputSpec,
    TagSpec,
    TrainingInfo,
    check_quantile_levels,
)
from edge_runtime.scaling import StandardScaler
from training import multi_worker, plots, quality
from training.autoencoders import edge_model
from training.budget import BACKUP_DIR, fit_callbacks, start_epoch, steps, training_info
from training.config import TrainConfig
from training.distribute import distribution_strategy, is_multi_worker, precision
from training.historian import GridData, load_grid
from training.keras_compile import compile_for_fit


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


@dataclass
class SeriesData:
    """The aligned grid, its splits, the scaler (training rows only) and the scaled rows."""

    grid: GridData
    splits: Splits
    scaler: StandardScaler
    scaled: np.ndarray

    @classmethod
    def load(cls, config: TrainConfig, run_dir: Path | None = None) -> SeriesData:
        """Load and align; print the data-quality report (and draw it in ``run_dir``);
        with ``data.strict`` a warning stops here, before any training."""
        grid = load_grid(config.data, config.window)
        splits = chronological_splits(len(grid.rows), config.window.length,
                                      config.split.train, config.split.val)
        quality.review(grid.quality, grid.grid_s, grid.rows, grid.tags, splits.train,
                       config.data.strict,
                       None if run_dir is None else Path(run_dir) / "data_quality.png")
        scaler = StandardScaler.fit(grid.rows[splits.train])
        return cls(grid, splits, scaler, scaler.transform(grid.rows))

    def record_fields(self, config: TrainConfig) -> dict:
        """The run record's input, scaler, training-data fingerprint and data quality."""
        w = config.window
        tags = [TagSpec(name=t, unit=u)
                for t, u in zip(self.grid.tags, self.grid.units, strict=True)]
        return {"input": InputSpec(tags=tags, period_s=w.period_s, window=w.length,
                                   stride=w.stride, max_gap_s=w.max_gap_s),
                "scaler": self.scaler.to_spec(),
                "training_data_sha256": self.grid.fingerprint(self.splits.train.stop),
                "data_quality": self.grid.quality}


def fit_model(build, config: TrainConfig, x, y, val_x, val_y, run_dir: Path,
              loss: str | None = None) -> tuple[keras.Model, TrainingInfo]:
    """Build (under the configured strategy and precision), fit for ``fit.epochs`` with early
    stopping and best-weights restore, save, plot. ``build`` is a zero-argument model factory.
    A forecaster with ``model.quantiles`` trains on the pinball loss of its (N, H, T, Q) output.
    Every epoch is checkpointed in ``<run>/backup``; ``fit.resume`` continues from there.
    ``loss`` replaces the default (a classification soft sensor's cross-entropy).
    Returns the model and the run record's ``training`` section."""
    from training.forecasters import Pinball
    from training.tft import with_importance_output
    from training.transformer_ae import with_attention_output

    levels = quantile_levels(config)
    fit = config.fit
    strategy = distribution_strategy(fit.strategy)
    several = is_multi_worker(strategy)
    if several and (fit.resume or fit.mixed_precision):
        raise ValueError("multi-worker training: fit.resume and fit.mixed_precision are not "
                         "supported (no shared checkpoint; no loss scaling in its loop)")
    with precision(fit.mixed_precision), strategy.scope():
        model = build()
        loss = loss or (Pinball(levels, fit.median_loss) if levels else "mse")
        compile_for_fit(model, keras.optimizers.Adam(fit.learning_rate,
                                                     clipnorm=fit.clip_norm), loss)
    stateful = [
        keras.callbacks.EarlyStopping(patience=fit.patience, restore_best_weights=True),
        lr_schedule(fit),
    ]
    callbacks = list(stateful)
    if fit.tensorboard and not several:  # TensorBoard's writer needs fit's own step counter
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs")))
    shared, checkpoint, progress, clock = fit_callbacks(config.name, run_dir, stateful,
                                                        fit.max_minutes, backup=not several)
    first = start_epoch(run_dir / BACKUP_DIR, fit.resume)
    batch, seed = fit.batch_size, fit.seed
    train_data = dataset(x, y, batch, seed, shuffle=True, epochs=fit.epochs, first_epoch=first)
    if several:
        multi_worker.fit(model, loss, strategy, train_data, steps(len(x), batch),
                         dataset(val_x, val_y, batch), fit.epochs, callbacks + shared)
        model = single_copy(build, model, loss, fit)  # predict/save outside the cluster
    else:
        model.fit(
            train_data, steps_per_epoch=steps(len(x), batch),
            validation_data=dataset(val_x, val_y, batch),
            epochs=fit.epochs, verbose=0, callbacks=callbacks + shared,
            shuffle=False,  # the pipeline shuffles (seeded by epoch); Keras cannot shuffle it
        )
    info = training_info(checkpoint, progress, clock, fit.epochs, stateful)
    if levels:
        info.loss = "pinball" if fit.median_loss == "pinball" else "pinball, squared error at 0.5"
    score = config.threshold.score if config.task == "anomaly" else "reconstruction"
    shipped = edge_model(model, score)  # a VAE ships decoder(mean) (+ its KL term for elbo)
    if levels:  # saved uncompiled: the Pinball loss must not make model.keras need procedge
        shipped = keras.Model(shipped.input, shipped.output, name=shipped.name)
    shipped = with_attention_output(shipped)  # transformer_ae: + attention per step
    with_importance_output(shipped).save(run_dir / "model.keras")  # tft: + selection weights
    plots.learning_curve(checkpoint.history, run_dir / "learning_curve.png", config.name)
    return model, info


def lr_schedule(fit) -> keras.callbacks.Callback:
    """The learning-rate callback of ``fit`` (a :class:`FitConfig`), for `train` and `tune`
    alike: with ``lr_decay`` rate·decay^epoch (0-based; a function of the epoch alone, so a
    resumed fit needs no saved state), else ÷10 when the validation loss stops improving."""
    if fit.lr_decay:
        rate, decay = fit.learning_rate, fit.lr_decay
        return keras.callbacks.LearningRateScheduler(lambda epoch, _: rate * decay ** epoch)
    return keras.callbacks.ReduceLROnPlateau(patience=max(fit.patience // 2, 1))


def single_copy(build, trained: keras.Model, loss, fit) -> keras.Model:
    """The trained weights in a model of the default strategy: evaluated, saved and converted
    like any other (Keras 3's predict does not run under MultiWorkerMirroredStrategy either)."""
    model = build()
    model.set_weights(trained.get_weights())
    compile_for_fit(model, keras.optimizers.Adam(fit.learning_rate), loss)
    return model


def dataset(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int = 0,
            shuffle: bool = False, epochs: int | None = None, first_epoch: int = 0):
    """A ``tf.data`` pipeline: slices → (seeded reshuffle every epoch) → batch → prefetch.
    ``batch_size`` is the global batch: under a distribution strategy Keras splits each batch
    across replicas, and the pipeline is sharded by element (in-memory arrays have no files).

    With ``epochs``, the pipeline holds epochs ``first_epoch`` … ``epochs - 1`` back to back
    (fit it with ``steps_per_epoch``), epoch ``e`` in an order that depends on ``(seed, e)``
    only: a fit resumed at epoch ``e`` sees what the uninterrupted fit saw (a reshuffling
    ``Dataset.shuffle`` would start again at the order of the first epoch)."""
    import tensorflow as tf

    if shuffle and epochs is not None:
        xs, ys, n = tf.constant(x), tf.constant(y), len(x)

        def epoch_batches(epoch):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(n, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
            return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

        data = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_batches).map(
            lambda i: (tf.gather(xs, i), tf.gather(ys, i)),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        data = tf.data.Dataset.from_tensor_slices((x, y))
        if shuffle:
            data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        data = data.batch(batch_size)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return data.prefetch(tf.data.AUTOTUNE).with_options(options)


def quantile_levels(config: TrainConfig) -> list[float]:
    """The forecaster's quantile levels (``model.quantiles``), checked; [] for a point model."""
    if config.task != "forecast":
        return []
    return check_quantile_levels(list(config.model.get("quantiles") or []))


def output_spec(config: TrainConfig, targets: list[str]) -> OutputSpec:
    return OutputSpec(horizon=config.horizon, targets=targets, quantiles=quantile_levels(config))
