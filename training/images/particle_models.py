"""Model families of task ``particle_size``: a U-Net predicting, per pixel, background,
particle interior or particle boundary (3-class softmax). The boundary class is what keeps
touching particles apart: the gateway labels the interior regions and grows them back over
the boundary (``edge_runtime.particles``)."""

from __future__ import annotations

import keras
from keras import layers

from training.images.models import unet_features
from training.registry import register

N_CLASSES = 3  # background, interior, boundary (+ core: particles.core_px > 0)


def n_classes(core_px: float) -> int:
    return N_CLASSES + (core_px > 0)


@register("particle_size", "particle_unet", small={"width": 4, "levels": 2})
def particle_unet(input_shape: tuple[int, int, int], width: int = 8, levels: int = 3,
                  classes: int = N_CLASSES) -> keras.Model:
    """U-Net: ``levels`` down/up steps with skip connections, BN; background/interior/boundary
    (and core, with ``classes`` = 4) scores per pixel."""
    inputs = keras.Input(input_shape)
    x = unet_features(inputs, width, levels)
    out = layers.Conv2D(classes, 1, name="logits")(x)
    return keras.Model(inputs, layers.Softmax(name="classes", dtype="float32")(out),
                       name="particle_unet")
