"""Family ``transfer``: a ``keras.applications`` backbone (built with ``weights=None``, its
weights loaded from a local file, never downloaded) under a new classification head, and the
freezing rules of the two-stage schedule (``image.trainer.fine_tune``).

With weights the backbone is frozen and called with ``training=False``: its BatchNorm layers
normalise with the source data's moving statistics in both stages (a frozen BN layer in
training mode would renormalise each small batch and wreck the features the head learns
on). Without weights it is an ordinary network trained from scratch, BN in training mode.
The backbone is the nested model named ``backbone``; :func:`save_backbone` writes its weights
in the file format ``model.backbone.weights`` reads.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import keras
from keras import layers

from training.images.backbone_config import BackboneConfig
from training.images.models import BN_MOMENTUM, classifier_head
from training.registry import register

BACKBONE_LAYER = "backbone"


def build_backbone(config: BackboneConfig, size: tuple[int, int]) -> keras.Model:
    """The no-top network for 3-channel ``size`` inputs, random weights, named 'backbone'."""
    apps, shape = keras.applications, (*size, 3)
    if config.name == "mobilenet_v2":
        net = apps.MobileNetV2(input_shape=shape, alpha=config.alpha, include_top=False,
                               weights=None)
    elif config.name == "mobilenet_v3_small":  # our inputs are normalised already
        net = apps.MobileNetV3Small(input_shape=shape, alpha=config.alpha, include_top=False,
                                    weights=None, include_preprocessing=False)
    elif config.name == "efficientnet_b0":
        net = apps.EfficientNetB0(input_shape=shape, include_top=False, weights=None)
    else:
        net = apps.ResNet50(input_shape=shape, include_top=False, weights=None)
    for layer in net.layers:  # keras.applications' 0.999 lags for hundreds of steps
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    return keras.Model(net.input, net.output, name=BACKBONE_LAYER)


def load_backbone_weights(backbone: keras.Model, config: BackboneConfig) -> None:
    """Load ``config.weights`` into ``backbone``; a file of another network, width or format
    is a ValueError naming the field and the file (Keras' own message appended). Keras only
    warns when part of the network finds no weights in the file ("Skipping nested container
    …", the part keeping its fresh weights): that warning is raised as an error here, so a
    partly loaded backbone is refused like any other mismatch, never trained on silently."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Skipping")
        try:
            backbone.load_weights(str(config.weights))
        except (ValueError, KeyError, OSError, TypeError, UserWarning) as exc:
            detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else \
                type(exc).__name__
            raise ValueError(f"model.backbone.weights: {config.weights} does not match "
                             f"backbone {config.name} (alpha {config.alpha}): {detail}") from None


def save_backbone(model: keras.Model, path: str | Path) -> Path:
    """Write the weights of ``model``'s nested backbone (or of ``model`` itself when it is
    one) to ``path`` (``.weights.h5``): the file a transfer config names in
    ``model.backbone.weights``."""
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"{path}: a backbone weights file must end in .weights.h5")
    backbone = model if model.name == BACKBONE_LAYER else model.get_layer(BACKBONE_LAYER)
    path.parent.mkdir(parents=True, exist_ok=True)
    backbone.save_weights(str(path))
    return path


@register("image_class", "transfer",
          small={"backbone": {"name": "mobilenet_v2", "alpha": 0.35}})
def transfer(input_shape: tuple[int, int, int], n_classes: int, backbone: dict,
             dropout: float = 0.2) -> keras.Model:
    """keras.applications backbone (local weights, frozen) + a new head; grey → 3 channels."""
    config = BackboneConfig.model_validate(backbone)
    net = build_backbone(config, input_shape[:2])
    inputs = keras.Input(input_shape)
    x = layers.Concatenate()([inputs] * 3) if input_shape[-1] == 1 else inputs
    if config.weights is None:
        return classifier_head(net(x), inputs, n_classes, dropout, "transfer")
    load_backbone_weights(net, config)
    net.trainable = False
    return classifier_head(net(x, training=False), inputs, n_classes, dropout, "transfer")


def unfreeze_top(model: keras.Model, n_layers: int) -> list[str]:
    """Stage 2: make the top ``n_layers`` of the backbone trainable, BatchNorm excepted
    (they keep the source statistics and run in inference mode); the names unfrozen."""
    backbone = model.get_layer(BACKBONE_LAYER)
    backbone.trainable = True
    top = backbone.layers[-n_layers:] if n_layers < len(backbone.layers) else backbone.layers
    opened = set()
    for layer in backbone.layers:
        open_ = (any(layer is t for t in top)
                 and not isinstance(layer, layers.BatchNormalization))
        layer.trainable = open_
        if open_ and layer.weights:
            opened.add(layer.name)
    return sorted(opened)


def has_frozen_backbone(model: keras.Model) -> bool:
    """True for a transfer model whose backbone came from a weights file (stage 1)."""
    try:
        return not model.get_layer(BACKBONE_LAYER).trainable
    except ValueError:
        return False
