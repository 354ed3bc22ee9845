"""The image tasks' shared training step from a :class:`TrainConfig`: scan the folder, hold
out a stratified validation share, normalise with the training images' mean and std, fit with
the image trainer, and write the run directory (``training.images.train``)."""

from __future__ import annotations

from pathlib import Path

from edge_runtime.bundle import ImageSpec, RunRecord
from edge_runtime.contract import task_spec
from training.config import TrainConfig
from training.images import data as imdata
from training.images.train import ImageTrainConfig, train_image_model


def train_images(config: TrainConfig, run_dir: Path) -> RunRecord:
    section = config.image
    kind = task_spec(config.task).image_kind
    everything = imdata.scan(section.root, split="train")
    names = everything.class_names
    train_idx, val_idx = imdata.stratified_split(everything.labels, section.val_fraction,
                                                 config.fit.seed)
    spec = ImageSpec(kind=kind, height=section.size, width=section.size, class_names=names,
                     ok_class=imdata.ok_class(names))
    train_set, val_set = everything.subset(train_idx), everything.subset(val_idx)
    test_set = (imdata.scan(section.test_root, split=None, class_names=names)
                if section.test_root else val_set)
    spec, train, val, test = imdata.load_splits(spec, train_set, val_set, test_set,
                                                section.test_root is not None)
    fit = config.fit
    trainer = ImageTrainConfig.model_validate({
        "name": config.name, "family": config.family, "model": config.model,
        "epochs": fit.epochs, "batch_size": fit.batch_size, "learning_rate": fit.learning_rate,
        "patience": fit.patience, "seed": fit.seed, "output_dir": run_dir.parent,
        "max_minutes": fit.max_minutes, "resume": fit.resume, **section.trainer})
    train_image_model(trainer, spec, train, val, test, imdata.fingerprint(train_set))
    return RunRecord.load(run_dir)
