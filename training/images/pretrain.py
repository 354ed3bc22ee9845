"""``procedge pretrain``: weights procedge makes itself, so transfer learning works where
ImageNet weights cannot be fetched. A backbone learns which quarter turn (0/90/180/270°) was
applied to an image (rotation prediction: Gidaris, Singh & Komodakis, ICLR 2018) — a task
that needs no labels, so it can use every training image, while the transfer run's
validation images (the same stratified split: ``source.val_fraction``, ``source.split_seed``)
are never seen. The backbone's weights go to ``out``; ``<out>.json`` records the run.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import keras
import numpy as np
from keras import layers

from edge_runtime.bundle import ImageSpec
from training.images import data as imdata
from training.images.backbone_config import PretrainConfig
from training.images.backbones import build_backbone, load_backbone_weights, save_backbone
from training.keras_compile import compile_for_fit

log = logging.getLogger(__name__)
CHECK_SHARE = 0.1  # of the pretext images: held out to report the pretext accuracy


def source_images(config: PretrainConfig) -> np.ndarray:
    """The training part of the source folder (N, size, size, 1), standardised."""
    src = config.source
    everything = imdata.scan(src.root, split="train")
    train_idx, _ = imdata.stratified_split(everything.labels, src.val_fraction, src.split_seed)
    spec = ImageSpec(kind="classifier", height=config.size, width=config.size,
                     class_names=everything.class_names,
                     ok_class=imdata.ok_class(everything.class_names))
    x, _ = imdata.load_arrays(everything.subset(train_idx), spec)
    return (x - x.mean()) / x.std()


def quarter_turns(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every image in its four rotations; the label is the number of quarter turns."""
    turned = [np.rot90(x, k, axes=(1, 2)) for k in range(4)]
    return np.concatenate(turned), np.repeat(np.arange(4), len(x))


def pretext_model(config: PretrainConfig) -> tuple[keras.Model, keras.Model]:
    """(the 4-way rotation classifier, its backbone); BN trains (nothing is frozen)."""
    backbone = build_backbone(config.backbone, (config.size, config.size))
    if config.backbone.weights is not None:
        load_backbone_weights(backbone, config.backbone)
    inputs = keras.Input((config.size, config.size, 1))
    x = backbone(layers.Concatenate()([inputs] * 3))
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(4, activation="softmax", name="quarter_turns")(x)
    return keras.Model(inputs, out, name="pretext"), backbone


def pretrain(config: PretrainConfig) -> Path:
    """Fit the pretext, write the backbone weights to ``config.out`` and the record beside."""
    keras.utils.set_random_seed(config.seed)
    images = source_images(config)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(images))
    n_check = max(1, int(len(images) * CHECK_SHARE))
    x, y = quarter_turns(images[order[n_check:]])
    x_check, y_check = quarter_turns(images[order[:n_check]])
    model, backbone = pretext_model(config)
    steps = config.epochs * int(np.ceil(len(x) / config.batch_size))
    rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, steps, alpha=0.01)
    compile_for_fit(model, keras.optimizers.Adam(rate), "sparse_categorical_crossentropy",
                    metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    start = time.monotonic()
    history = model.fit(x, y, batch_size=config.batch_size, epochs=config.epochs, shuffle=True,
                        validation_data=(x_check, y_check), verbose=0)
    seconds = time.monotonic() - start
    path = save_backbone(backbone, config.out)
    record = {"name": config.name, "backbone": config.backbone.model_dump(mode="json"),
              "pretext": "rotation (4 quarter turns)", "source": str(config.source.root),
              "images": len(images) - n_check, "check_images": n_check, "size": config.size,
              "epochs": config.epochs, "fit_seconds": round(seconds, 1),
              "pretext_accuracy": float(history.history["val_accuracy"][-1]),
              "train_accuracy": float(history.history["accuracy"][-1])}
    Path(f"{path}.json").write_text(json.dumps(record, indent=2))
    log.info("pretrained %s in %.0f s: pretext accuracy %.3f on %d held images × 4 turns",
             config.name, seconds, record["pretext_accuracy"], n_check)
    return path
