"""`procedge tune CONFIG`: a KerasTuner search over a soft sensor's hyper-parameters.

Each trial is the config with the trial's values put in (:func:`trial_config`), trained as
`procedge train` trains it (same family builder, optimiser, gradient clipping, epoch-seeded
shuffle, early stopping and plateau schedule), and scored on the validation split only: the
best epoch's validation MSE of the scaled target (``val_loss``; ``val_rmse`` in the target's
unit beside it), or for a classification soft sensor its validation cross-entropy
(``val_loss``; ``val_accuracy`` at that epoch beside it). The test split is blanked before the
first trial (:mod:`training.tune_data`).
Hyperband trains each trial from scratch for its bracket's epochs (no warm start from the
previous rung): simpler, and a rung's score never depends on which worker ran the one before.

Outputs (:mod:`training.tune_report`): the best config as YAML that `procedge train` takes
unchanged, the trials table (CSV and JSON) and a plot; KerasTuner's own state in ``kt/``.
With ``KERASTUNER_*`` set, the chief serves the oracle and writes those files, and the
workers only run trials (:mod:`training.tune_cluster`).
"""

from __future__ import annotations

import ast
import math
import shutil
import tempfile
import time
from pathlib import Path

import keras
import keras_tuner as kt

from training import soft_classification
from training.budget import steps
from training.config import TrainConfig
from training.keras_compile import compile_for_fit
from training.registry import Family, get_family
from training.series import dataset, lr_schedule
from training.tune_cluster import role, serve, tuner_id
from training.tune_config import CONFIG_KEYS, TuneConfig, builder_keywords, units_is_list
from training.tune_data import TrialData, TuneSource
from training.tune_report import TuneResult, score_column, write_results


def search_space(tune: TuneConfig) -> kt.HyperParameters:
    """``tune.space`` as KerasTuner hyper-parameters (choices, int or float ranges)."""
    hps = kt.HyperParameters()
    for name, p in tune.space.items():
        if p.choices is not None:
            values = p.choices
            if any(isinstance(v, float) for v in values):
                values = [float(v) for v in values]  # KerasTuner wants one type
            hps.Choice(name, values)
        elif p.is_int:
            hps.Int(name, p.min, p.max, step=p.step, sampling=p.sampling)
        else:
            hps.Float(name, float(p.min), float(p.max), step=p.step, sampling=p.sampling)
    return hps


def trial_config(base: TrainConfig, values: dict) -> TrainConfig:
    """``base`` with a trial's values in place: builder keywords in ``model``, the
    :data:`CONFIG_KEYS` where they go; ``layers`` stacks ``units`` (one size per layer)."""
    config = base.model_copy(deep=True)
    keywords = builder_keywords(config.task, config.family)
    model = dict(config.model)
    for name, value in values.items():
        if name.startswith("tuner/") or name == "layers":
            continue
        if name == "learning_rate":
            config.fit.learning_rate = float(value)
        elif name == "batch_size":
            config.fit.batch_size = int(value)
        elif name == "window":
            config.window.length = int(value)
        else:
            model[name] = value
    if units_is_list(keywords) and ("units" in values or "layers" in values):
        current = model.get("units", ast.literal_eval(keywords["units"]))
        sizes = list(current) if isinstance(current, list | tuple) else [current]
        size = int(values.get("units", sizes[0]))
        model["units"] = [size] * int(values.get("layers", len(sizes)))
    config.model = model
    return config


def build_trial(family: Family, config: TrainConfig, features: int) -> tuple:
    """(the model, its loss, its metrics) as `procedge train` builds them: a regression's
    one estimate on MSE, or a classifier's softmax on cross-entropy with its accuracy."""
    spec = config.soft_sensor
    if spec.kind != "classification":
        return family.build(config.window.length, features, 1, **config.model), "mse", []
    trunk = family.build(config.window.length, features, len(spec.classes), **config.model)
    return (soft_classification.classifier(trunk), soft_classification.LOSS,
            [keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


def fit_trial(family: Family, config: TrainConfig, data: TrialData,
              epochs: int) -> dict[str, float]:
    """Train as `procedge train` does; the best epoch's ``val_loss`` (and ``val_accuracy``
    of a classifier at that epoch) and ``epochs`` run."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.fit.seed)
    fit = config.fit
    model, loss, metrics = build_trial(family, config, data.x.shape[2])
    compile_for_fit(model, keras.optimizers.Adam(fit.learning_rate, clipnorm=fit.clip_norm),
                    loss, metrics=metrics)
    history = model.fit(
        dataset(data.x, data.y, fit.batch_size, fit.seed, shuffle=True, epochs=epochs),
        steps_per_epoch=steps(len(data.x), fit.batch_size), epochs=epochs, verbose=0,
        validation_data=dataset(data.val_x, data.val_y, fit.batch_size), shuffle=False,
        callbacks=[keras.callbacks.EarlyStopping(patience=fit.patience), lr_schedule(fit)])
    losses = history.history["val_loss"]
    best = min(range(len(losses)), key=losses.__getitem__)
    out = {"val_loss": float(losses[best]), "epochs": float(len(losses))}
    if "val_accuracy" in history.history:
        out["val_accuracy"] = float(history.history["val_accuracy"][best])
    return out


class SoftSensorTuner(kt.Tuner):
    """Runs a trial: its config, its window length's data, a fit; reports the scores."""

    def __init__(self, oracle, base: TrainConfig, epochs: int, **kwargs):
        super().__init__(oracle, hypermodel=None, **kwargs)
        self.base, self.epochs = base, epochs
        self.family = get_family(base.family, base.task)

    def run_trial(self, trial, source: TuneSource) -> dict[str, float]:
        values = trial.hyperparameters.values
        config = trial_config(self.base, values)
        data = source.get(config.window.length)
        start = time.monotonic()
        scores = fit_trial(self.family, config, data,
                           int(values.get("tuner/epochs", self.epochs)))
        loss = scores["val_loss"]
        if not math.isfinite(loss):
            raise kt.errors.FailedTrialError(f"trial {trial.trial_id}: val_loss {loss}")
        if "val_accuracy" not in scores:  # a regression: the loss in the target's unit
            scores["val_rmse"] = math.sqrt(loss) * data.scale
        name = score_column(config)
        shown = {k: v for k, v in values.items() if not k.startswith("tuner/")}
        print(f"{tuner_id()} trial {trial.trial_id}: {shown} {name}={scores[name]:.4g} "
              f"epochs={scores['epochs']:.0f}", flush=True)
        return scores | {"seconds": time.monotonic() - start}


def make_oracle(tune: TuneConfig, epochs: int) -> kt.Oracle:
    """The configured algorithm over :func:`search_space`, minimising ``val_loss``."""
    common = {"objective": kt.Objective(tune.objective, "min"),
              "hyperparameters": search_space(tune), "allow_new_entries": False,
              "tune_new_entries": False, "seed": tune.seed}
    if tune.algorithm == "random":
        return kt.oracles.RandomSearchOracle(max_trials=tune.max_trials, **common)
    if tune.algorithm == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(max_trials=tune.max_trials, **common)
    oracle = kt.oracles.HyperbandOracle(max_epochs=epochs, factor=tune.factor, **common)
    oracle.max_trials = tune.max_trials  # Oracle.create_trial stops there
    return oracle


def tune(config: TrainConfig, config_path: Path, out: Path, resume: bool = False,
         workers: int = 1) -> TuneResult | None:
    """Search; returns what was written (None on a distributed worker, which writes
    nothing). ``workers``: on the chief, how many workers to wait for before it stops."""
    epochs = config.tune.epochs or config.fit.epochs
    oracle = make_oracle(config.tune, epochs)
    oracle.verbose = 0  # each trial prints one line of its own
    where = role()
    scratch = Path(tempfile.mkdtemp(prefix="procedge-tune-")) if where == "worker" else None
    directory = scratch or out
    tuner = SoftSensorTuner(oracle, config, epochs, directory=str(directory),
                            project_name="kt", overwrite=not resume or scratch is not None)
    try:
        if where == "chief":
            tuner.save()
            serve(tuner.oracle, workers)
        else:
            tuner.search(TuneSource(config))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if where == "worker":
        return None
    return write_results(tuner.oracle, config, config_path, out, epochs)


__all__ = ["CONFIG_KEYS", "make_oracle", "search_space", "trial_config", "tune"]
