"""Transfer learning's configuration, without Keras: the ``model.backbone`` of family
``transfer`` and the ``image.trainer.fine_tune`` stage, checked by ``procedge train`` before
TensorFlow loads (a wrong name or a missing weights file is reported at once, naming the
field, not after minutes of loading images).

Nothing is ever downloaded: ``weights`` is a local file (a backbone ``procedge pretrain``
wrote, or ImageNet no-top weights the user fetched himself); without it the backbone starts
from random weights and trains whole (from scratch).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from edge_runtime.contract import Strict

BackboneName = Literal["mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "resnet50"]
ALPHA_BACKBONES = ("mobilenet_v2", "mobilenet_v3_small")


class BackboneConfig(Strict):
    """A ``keras.applications`` network without its top, built with ``weights=None``."""

    name: BackboneName = Field(description="The keras.applications network.")
    weights: Path | None = Field(
        default=None, description="Local weights file of exactly this backbone (same name and "
        "alpha): a '.weights.h5' from `procedge pretrain`, or the no-top ImageNet '.h5' of "
        "keras.applications. None: random initialisation, the whole network trains.")
    alpha: float = Field(default=1.0, gt=0, description="Width multiplier (MobileNets only).")

    @field_validator("weights", mode="before")
    @classmethod
    def _expand(cls, value):
        return None if value is None else Path(os.path.expanduser(os.path.expandvars(value)))

    @field_validator("weights")
    @classmethod
    def _exists(cls, value: Path | None):
        if value is not None and not value.is_file():
            raise ValueError(f"{value}: no such file (weights are never downloaded)")
        return value

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, value: float, info):
        name = info.data.get("name")
        if value != 1.0 and name is not None and name not in ALPHA_BACKBONES:
            raise ValueError(f"alpha is a MobileNet width; {name} has none")
        return value


class FineTuneConfig(Strict):
    """Stage 2 of a transfer run: after the head has trained on the frozen backbone
    (``epochs`` of the fit), the top ``layers`` of the backbone are unfrozen and the whole
    trains ``epochs`` more at the lower ``learning_rate``. BatchNorm layers stay frozen (in
    inference mode): a few hundred small batches would overwrite the moving statistics the
    source data gave them."""

    layers: int = Field(gt=0, description="Top backbone layers unfrozen (counted from the "
                        "output; BatchNorm layers among them stay frozen).")
    epochs: int = Field(gt=0, description="Epochs of stage 2.")
    learning_rate: float = Field(default=1e-4, gt=0, description="Stage 2's initial rate "
                                 "(cosine-annealed like stage 1's).")


def check_transfer_model(family: str, model: dict, trainer: dict) -> None:
    """``model.backbone`` of family ``transfer`` and ``image.trainer.fine_tune``: a
    ValueError naming the field (no-op for other families without fine_tune)."""
    fine_tune = trainer.get("fine_tune")
    if family != "transfer":
        if fine_tune is not None:
            raise ValueError("image.trainer.fine_tune: only family 'transfer' has a backbone "
                             f"to fine-tune, not {family!r}")
        return
    if "backbone" not in model:
        raise ValueError("model.backbone: required for family 'transfer' ({name: "
                         "mobilenet_v2, weights: PATH, alpha: 0.35})")
    backbone = _validated(BackboneConfig, model["backbone"], "model.backbone")
    if fine_tune is not None:
        _validated(FineTuneConfig, fine_tune, "image.trainer.fine_tune")
        if backbone.weights is None:
            raise ValueError("image.trainer.fine_tune: needs model.backbone.weights (stage 1 "
                             "trains the head on a frozen backbone; a random one would stay "
                             "random)")


def _validated(schema, value, where: str):
    try:
        return schema.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in (where, *first["loc"]))
        raise ValueError(f"{field}: {first['msg']}") from None


class PretrainSource(Strict):
    """The images of the pretext task: a folder in the layout of the image tasks, of which
    only the training part is used (labels and masks are not)."""

    root: Path = Field(description="<class>/Imgs/<stem>.jpg folders (split.csv honoured).")
    val_fraction: float = Field(default=0.2, gt=0, lt=1, description="As the transfer run's "
                                "image.val_fraction: its validation images are left out.")
    split_seed: int = Field(default=0, description="As the transfer run's fit.seed (the seed "
                            "of its stratified validation split).")

    @field_validator("root", mode="before")
    @classmethod
    def _expand(cls, value):
        return Path(os.path.expanduser(os.path.expandvars(value)))


class PretrainConfig(Strict):
    """``procedge pretrain``: a backbone trained on a self-supervised pretext (which quarter
    turn was applied to an image: 0, 90, 180 or 270°) over unlabelled images, saved as the
    weights file a transfer config names in ``model.backbone.weights``."""

    name: str = Field(description="Run name (log lines, the record next to the weights).")
    backbone: BackboneConfig = Field(description="The network to pretrain; weights: start "
                                     "from a file (else random).")
    source: PretrainSource
    size: int = Field(default=64, ge=32, description="Square input, pixels: the size of the "
                      "transfer run (image.size).")
    epochs: int = Field(default=10, gt=0)
    batch_size: int = Field(default=32, gt=0)
    learning_rate: float = Field(default=1e-3, gt=0)
    seed: int = 0
    out: Path = Field(description="The backbone weights file written (*.weights.h5).")

    @field_validator("out", mode="before")
    @classmethod
    def _out(cls, value):
        path = Path(os.path.expanduser(os.path.expandvars(value)))
        if not path.name.endswith(".weights.h5"):
            raise ValueError(f"{path}: a backbone weights file must end in .weights.h5")
        return path
