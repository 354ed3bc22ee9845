"""Train one image model and write a run directory the converter reads (as ``training.train``
does for time series): ``model.keras``, ``training.json`` (manifest draft with the image
spec), ``heldout.npz`` (evaluation images, labels, masks), ``representative.npz`` (int8
calibration images), ``learning_curve.png``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Literal

import keras
import numpy as np
from pydantic import Field

from edge_runtime.bundle import ImageSpec, RunRecord
from edge_runtime.contract import Strict, image_task
from training import plots
from training.budget import BACKUP_DIR, fit_callbacks, start_epoch, summary, training_info
from training.images import models  # noqa: F401  (registers the image families)
from training.images.backbone_config import FineTuneConfig
from training.images.data import Augment, Batches, Split, coarse_masks
from training.images.metrics import classification_metrics, segmentation_metrics
from training.keras_compile import compile_for_fit
from training.registry import get_family

log = logging.getLogger(__name__)
REPRESENTATIVE_IMAGES = 200


class ImageTrainConfig(Strict):
    name: str = Field(description="Model name; also the bundle name.")
    family: str = Field(description="small_cnn, resnet, mobilenet (classifiers) or unet.")
    model: dict[str, Any] = Field(default_factory=dict, description="Family keyword arguments.")
    epochs: int = Field(default=30, gt=0)
    batch_size: int = Field(default=16, gt=0)
    learning_rate: float = Field(default=1e-3, gt=0)
    patience: int = Field(default=10, ge=0, description="Plateau schedule: early stopping on "
                          "the validation score (classifier: class-balanced accuracy; segmenter: "
                          "defect IoU) and the rate ×0.1 after half of it.")
    schedule: Literal["cosine", "plateau"] = Field(
        default="cosine", description="cosine: the learning rate anneals to 1 % over the epoch "
        "budget (or over max_minutes if that is set and runs out first), the best epoch is "
        "kept; plateau: constant until the validation score stalls.")
    max_minutes: float | None = Field(
        default=None, gt=0, description="Optional wall-clock limit; when it stops the fit "
        "before the epochs, the run record says truncated: true. None: epochs only, so the "
        "same model on any machine.")
    resume: bool = Field(default=False, description="Continue an interrupted fit from its "
                         "checkpoint in <run>/backup.")
    augment: bool = Field(default=True, description="Flips, rotation, crop, brightness/contrast.")
    mask_weight: float = Field(
        default=0.0, ge=0, description="Classifier: weight of an auxiliary defect-mask loss on "
        "the last feature map (0 = labels only); the saved model has no extra output.")
    class_weight_power: float = Field(
        default=0.5, ge=0, le=1,
        description="Classifier: balanced class weights ** power (1 full, 0.5 softened, 0 off).")
    patch: int = Field(default=0, ge=0, description="Segmenter: train on square crops of this "
                       "side (0 = whole images); inference still sees whole frames.")
    defect_share: float = Field(default=0.75, gt=0, le=1, description="Segmenter: share of "
                                "training draws that are defective images.")
    precision: Literal["float32", "mixed_bfloat16"] = Field(
        default="float32", description="Training compute: mixed_bfloat16 took 0.4–0.6× the "
        "time per step of float32 on this AVX512-BF16 CPU (weights and the saved model stay "
        "float32); slower where the CPU has no bfloat16 instructions.")
    fine_tune: FineTuneConfig | None = Field(
        default=None, description="Family transfer with backbone weights: stage 2, the top "
        "layers of the frozen backbone unfrozen at a lower rate (training.images."
        "backbone_config.FineTuneConfig); the better stage by val_score is kept.")
    seed: int = 0
    output_dir: Path = Field(default=Path("artifacts/images"))

    @property
    def kind(self) -> Literal["classifier", "segmenter"]:
        return "segmenter" if self.family == "unet" else "classifier"


class _BudgetCosine(keras.callbacks.Callback):
    """Cosine decay of the learning rate over the training budget, per batch: progress is the
    share of epochs done, so the rate at epoch e is the same on any machine. Only with an
    explicit wall-clock limit (``minutes``) is it the larger of that and the share of the
    time used, so a run cut by the limit still ends at a small rate instead of the constant
    one a plateau rule keeps when the score is still rising (budget-aware schedules: Li,
    Yumer & Ramanan, ICLR 2020)."""

    def __init__(self, base: float, epochs: int, minutes: float | None = None,
                 floor: float = 0.01):
        super().__init__()
        self.base, self.epochs, self.floor = base, epochs, floor
        self.seconds = 60 * minutes if minutes else None
        self.start, self.epoch = time.monotonic(), 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        steps = max(self.params.get("steps") or 1, 1)
        done = (self.epoch + batch / steps) / self.epochs
        if self.seconds:
            done = max(done, (time.monotonic() - self.start) / self.seconds)
        scale = self.floor + (1 - self.floor) * 0.5 * (1 + np.cos(np.pi * min(done, 1.0)))
        self.model.optimizer.learning_rate.assign(self.base * scale)


class _ValScore(keras.callbacks.Callback):
    """``val_score`` in the epoch logs, what early stopping keeps the best of: class-balanced
    accuracy (classifier; the validation loss favours the 71 % majority class) or the mean IoU
    of defective images (segmenter; the loss of a mostly defect-free set favours an empty
    mask)."""

    def __init__(self, spec: ImageSpec, val: Split, scored: keras.Model):
        super().__init__()
        self.spec, self.val, self.scored = spec, val, scored  # scored: without training heads

    def on_epoch_end(self, epoch, logs=None):
        m = evaluate_keras(self.scored, self.spec, self.val)
        score = m["balanced_accuracy_class"] if self.spec.kind == "classifier" else m["iou"]
        if logs is not None:
            logs["val_score"] = score if np.isfinite(score) else 0.0


def _schedule(config: ImageTrainConfig) -> tuple[list[keras.callbacks.Callback], list]:
    """Learning-rate and stopping callbacks (both keep the weights of the best
    ``val_score``), and those of them whose state a resumed fit needs back."""
    if config.schedule == "cosine":
        stop = keras.callbacks.EarlyStopping("val_score", patience=config.epochs, mode="max",
                                             restore_best_weights=True)
        return [_BudgetCosine(config.learning_rate, config.epochs, config.max_minutes),
                stop], [stop]
    stateful = [keras.callbacks.EarlyStopping("val_score", patience=config.patience,
                                              mode="max", restore_best_weights=True),
                keras.callbacks.ReduceLROnPlateau("val_score", mode="max",
                                                  patience=max(config.patience // 2, 1))]
    return stateful, stateful


class _EpochSeed(keras.callbacks.Callback):
    """Tells the batches which epoch runs (a resumed fit starts past the first), so their
    order and augmentation depend on (seed, epoch) only."""

    def __init__(self, batches: Batches, offset: int = 0):
        super().__init__()
        self.batches, self.offset = batches, offset  # offset: epochs of an earlier stage

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.start_epoch(epoch + self.offset)


def dice_bce(y_true, y_pred):
    """Binary cross-entropy + soft Dice, per image (Keras averages over the batch): a per-image
    Dice weighs a 20-pixel blowhole like a large uneven patch, as the per-image IoU does; an
    empty mask's term (1 / (1 + predicted area)) pushes defect-free images to predict nothing."""
    bce = keras.ops.mean(keras.losses.binary_crossentropy(y_true, y_pred), axis=(1, 2))
    axes = (1, 2, 3)
    inter = keras.ops.sum(y_true * y_pred, axis=axes)
    size = keras.ops.sum(y_true, axis=axes) + keras.ops.sum(y_pred, axis=axes)
    return bce + 1.0 - (2 * inter + 1.0) / (size + 1.0)


def _with_mask_head(model: keras.Model) -> tuple[keras.Model, int]:
    """The classifier plus a 1×1 sigmoid on its last feature map (``gradcam_target``), trained
    on the defect mask max-pooled to that grid: pixel supervision tells the features where
    the defects are, which image labels alone only hint at (mixed supervision: Božič, Tabernik
    & Skočaj, 2021). The head is dropped after training; the saved model is unchanged."""
    features = model.get_layer("gradcam_target").output
    head = keras.layers.Conv2D(1, 1, activation="sigmoid", name="mask_aux",
                               dtype="float32")(features)
    stride = model.input_shape[1] // features.shape[1]
    return keras.Model(model.inputs, [model.output, head], name=model.name), stride


def train_image_model(config: ImageTrainConfig, spec: ImageSpec, train: Split, val: Split,
                      heldout: Split | None = None, fingerprint: str = "") -> Path:
    """Fit on ``train`` (augmented), stop on ``val``; metrics on ``heldout`` (default val)."""
    keras.utils.set_random_seed(config.seed)
    heldout = heldout or val
    spec = spec.model_copy(update={"kind": config.kind})
    family = get_family(config.family)
    shape = (spec.height, spec.width, spec.channels)
    run_dir = Path(config.output_dir) / config.name
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.precision)
    try:
        model, history, fit_s, info = _fit(config, spec, family, train, val, run_dir)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    if config.patch or config.precision != "float32":
        # float32 with the static input shape, for the converter and the edge interpreter
        fixed = _build(family, config, spec, shape)
        fixed.set_weights(model.get_weights())  # mixed-precision weights are float32 already
        model = fixed
    model.save(run_dir / "model.keras")
    plots.learning_curve(history, run_dir / "learning_curve.png", config.name)
    metrics = evaluate_keras(model, spec, heldout)
    metrics |= {"epochs": float(info.epochs), "fit_seconds": fit_s}
    RunRecord(name=config.name, task=image_task(spec.kind), family=config.family, image=spec,
              training_data_sha256=fingerprint, metrics={"keras": metrics},
              training=info).save(run_dir)
    np.savez_compressed(run_dir / "heldout.npz", x=heldout.x, labels=heldout.labels,
                        masks=heldout.masks.astype(np.uint8))
    rng = np.random.default_rng(config.seed)
    pick = rng.choice(len(train.x), size=min(REPRESENTATIVE_IMAGES, len(train.x)), replace=False)
    np.savez_compressed(run_dir / "representative.npz", x=train.x[np.sort(pick)])
    log.info("trained %s in %.0f s: %s", config.name, fit_s, metrics)
    log.info(summary(config.name, info))
    return run_dir


def _build(family, config: ImageTrainConfig, spec: ImageSpec, shape: tuple) -> keras.Model:
    if config.kind == "classifier":
        return family.build(shape, len(spec.class_names), **config.model)
    return family.build(shape, **config.model)


def _fit(config: ImageTrainConfig, spec: ImageSpec, family, train: Split, val: Split,
         run_dir: Path):
    """Build (under the current precision policy), compile and fit: (model, history,
    seconds, training info). With patches the segmenter is built with a free spatial size.
    Every epoch is checkpointed in ``<run>/backup`` (``config.resume`` continues from it)."""
    shape = (spec.height, spec.width, spec.channels)
    stride = 0
    model = trainer = _build(family, config, spec, (None, None, spec.channels)
                             if config.patch and config.kind == "segmenter" else shape)
    if config.kind == "classifier":
        loss, target, val_y = "sparse_categorical_crossentropy", "labels", val.labels
        if config.mask_weight > 0:
            trainer, stride = _with_mask_head(model)
            loss = ["sparse_categorical_crossentropy", dice_bce]
            val_y = (val.labels, coarse_masks(val.masks, stride))
    else:
        loss, target, val_y = dice_bce, "masks", val.masks
    compile_for_fit(trainer, keras.optimizers.Adam(config.learning_rate), loss,
                    loss_weights=[1.0, config.mask_weight] if stride else None)
    batches = Batches(train.x, train.labels, train.masks, target, config.batch_size, spec.std,
                      Augment() if config.augment else None, config.seed,
                      config.class_weight_power, config.patch, config.defect_share, stride)
    schedule, stateful = _schedule(config)
    shared, checkpoint, progress, clock = fit_callbacks(config.name, run_dir, stateful,
                                                        config.max_minutes)
    start_epoch(run_dir / BACKUP_DIR, config.resume)
    start = time.monotonic()
    trainer.fit(batches, validation_data=(val.x, val_y), epochs=config.epochs, verbose=0,
                callbacks=[_EpochSeed(batches), _ValScore(spec, val, model), *schedule, *shared])
    info = training_info(checkpoint, progress, clock, config.epochs, stateful)
    history = checkpoint.history
    if config.fine_tune is not None:
        history, info = _fine_tune(config, spec, model, trainer, loss, batches, val, val_y,
                                   history, info)
    return model, history, time.monotonic() - start, info


def _fine_tune(config: ImageTrainConfig, spec: ImageSpec, model: keras.Model,
               trainer: keras.Model, loss, batches: Batches, val: Split, val_y, history: dict,
               info) -> tuple[dict, object]:
    """Stage 2 of a transfer run: the top ``fine_tune.layers`` of the backbone unfrozen (BN
    stays frozen), recompiled at ``fine_tune.learning_rate`` and fitted ``fine_tune.epochs``
    more (cosine, best epoch kept). When no stage-2 epoch beats stage 1's best
    ``val_score``, stage 1's weights are put back: the same rule as the kept epoch. Not
    checkpointed: a resumed run resumes stage 1 and runs stage 2 whole."""
    from training.images.backbones import has_frozen_backbone, unfreeze_top

    tune = config.fine_tune
    if not has_frozen_backbone(model):
        raise ValueError("image.trainer.fine_tune: the model has no frozen backbone (family "
                         "transfer with model.backbone.weights)")
    before, best_before = model.get_weights(), max(history.get("val_score", [0.0]))
    opened = unfreeze_top(model, tune.layers)
    log.info("%s stage 2: %d backbone layers unfrozen (%s … %s)", config.name, len(opened),
             opened[0] if opened else "-", opened[-1] if opened else "-")
    compile_for_fit(trainer, keras.optimizers.Adam(tune.learning_rate), loss,
                    loss_weights=[1.0, config.mask_weight] if isinstance(loss, list) else None)
    stop = keras.callbacks.EarlyStopping("val_score", patience=tune.epochs, mode="max",
                                         restore_best_weights=True)
    shared, log_cb, progress, clock = fit_callbacks(f"{config.name}/fine_tune", Path("."),
                                                    [stop], config.max_minutes, backup=False)
    trainer.fit(batches, validation_data=(val.x, val_y), epochs=tune.epochs, verbose=0,
                callbacks=[_EpochSeed(batches, info.epochs), _ValScore(spec, val, model),
                           _BudgetCosine(tune.learning_rate, tune.epochs), stop, *shared])
    stage2 = training_info(log_cb, progress, clock, tune.epochs, [stop])
    best_after = max(log_cb.history.get("val_score", [0.0]))
    kept_stage1 = best_after <= best_before
    if kept_stage1:
        model.set_weights(before)
    log.info("%s stage 2: best val_score %.4f vs stage 1 %.4f: %s kept", config.name,
             best_after, best_before, "stage 1" if kept_stage1 else "stage 2")
    merged = {k: v + log_cb.history.get(k, []) for k, v in history.items()}
    best = info.best_epoch if kept_stage1 else info.epochs + (stage2.best_epoch or 0)
    return merged, info.model_copy(update={
        "epochs": info.epochs + stage2.epochs,
        "epochs_budget": info.epochs_budget + tune.epochs, "best_epoch": best,
        "truncated": info.truncated or stage2.truncated})


def evaluate_keras(model, spec: ImageSpec, data: Split) -> dict[str, float]:
    out = model.predict(data.x, verbose=0, batch_size=32)
    if spec.kind == "classifier":
        ok = spec.class_names.index(spec.ok_class)
        return classification_metrics(data.labels, out, ok, spec.class_names)
    return segmentation_metrics(data.masks, out, spec.mask_threshold)
