"""Image model families: classifiers ``small_cnn``, ``resnet``, ``mobilenet`` and the ``unet``
segmenter. All are fully convolutional up to a global pooling, so the same weights run at any
input size (the latency check at 256×256 reuses the weights trained at a smaller size).

Classifiers end in a ``logits`` Dense then a softmax; their last feature map is the layer named
``gradcam_target`` (Grad-CAM reads it).
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from training.registry import register

# Keras' default 0.99 lets the moving statistics lag far behind the weights in the few hundred
# steps a CPU run gets: the U-Net then segments well in training mode and predicts all
# background at inference (measured: IoU 0.72 vs 0.00 on the same images). 0.9 tracks them.
BN_MOMENTUM = 0.9


def conv_bn(x, filters: int, kernel: int = 3, strides: int = 1, relu: bool = True):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return layers.ReLU()(x) if relu else x


def classifier_head(x, inputs, n_classes: int, dropout: float, name: str) -> keras.Model:
    x = layers.Activation("linear", name="gradcam_target")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    logits = layers.Dense(n_classes, name="logits")(x)
    # float32 outputs (a no-op in float32): probabilities and the loss stay exact when
    # training runs in mixed bfloat16
    return keras.Model(inputs, layers.Softmax(name="probs", dtype="float32")(logits), name=name)


@register("image_class", "small_cnn", small={"width": 4, "blocks": 2})
def small_cnn(input_shape: tuple[int, int, int], n_classes: int, width: int = 16,
              blocks: int = 4, dropout: float = 0.2) -> keras.Model:
    """Plain CNN: (conv-BN-ReLU, max-pool) blocks doubling the width."""
    inputs = keras.Input(input_shape)
    x = inputs
    for b in range(blocks):
        x = conv_bn(x, width * 2 ** min(b, 3))
        x = layers.MaxPooling2D()(x)
    x = conv_bn(x, width * 2 ** min(blocks, 3))
    return classifier_head(x, inputs, n_classes, dropout, "small_cnn")


def _residual(x, filters: int, strides: int):
    shortcut = x
    y = conv_bn(x, filters, strides=strides)
    y = conv_bn(y, filters, relu=False)
    if strides != 1 or shortcut.shape[-1] != filters:
        shortcut = conv_bn(shortcut, filters, kernel=1, strides=strides, relu=False)
    return layers.ReLU()(layers.Add()([y, shortcut]))


@register("image_class", "resnet", small={"width": 4, "stages": 2})
def resnet(input_shape: tuple[int, int, int], n_classes: int, width: int = 16,
           stages: int = 4, depth: int = 1, dropout: float = 0.2) -> keras.Model:
    """ResNet: strided stem, ``stages`` stages of ``depth`` residual blocks (BN), width × 2
    per stage."""
    inputs = keras.Input(input_shape)
    x = conv_bn(inputs, width, kernel=5, strides=2)
    for s in range(stages):
        for d in range(depth):
            x = _residual(x, width * 2 ** s, strides=2 if d == 0 and s > 0 else 1)
    return classifier_head(x, inputs, n_classes, dropout, "resnet")


@register("image_class", "mobilenet", small={"alpha": 0.35})
def mobilenet(input_shape: tuple[int, int, int], n_classes: int, alpha: float = 0.35,
              weights: str | None = None, dropout: float = 0.2) -> keras.Model:
    """MobileNetV2: from scratch by default (no ImageNet download here); give ``weights`` = a
    local ``.h5`` file of the no-top ImageNet weights for transfer learning (grey → 3 channels)."""
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"mobilenet weights {weights}: not found (none are downloaded)")
    inputs = keras.Input(input_shape)
    x = layers.Concatenate()([inputs] * 3) if input_shape[-1] == 1 else inputs
    base = keras.applications.MobileNetV2(input_shape=(*input_shape[:2], 3), alpha=alpha,
                                          include_top=False, weights=weights)
    return classifier_head(base(x), inputs, n_classes, dropout, "mobilenet")


def unet_features(inputs, width: int, levels: int):
    """The U-Net body: ``levels`` down steps (two conv-BN blocks, max-pool), a bottleneck and
    as many up steps with skip connections; per-pixel features at the input's resolution
    (the defect segmenter and the particle sizer put their own heads on it)."""
    x, skips = inputs, []
    for level in range(levels):
        x = conv_bn(conv_bn(x, width * 2 ** level), width * 2 ** level)
        skips.append(x)
        x = layers.MaxPooling2D()(x)
    x = conv_bn(conv_bn(x, width * 2 ** levels), width * 2 ** levels)
    for level in reversed(range(levels)):
        x = layers.UpSampling2D()(x)
        x = layers.Concatenate()([x, skips[level]])
        x = conv_bn(conv_bn(x, width * 2 ** level), width * 2 ** level)
    return x


@register("image_segment", "unet", small={"width": 4, "levels": 2})
def unet(input_shape: tuple[int, int, int], width: int = 8, levels: int = 4) -> keras.Model:
    """U-Net: ``levels`` down/up steps with skip connections, BN; a sigmoid defect mask."""
    inputs = keras.Input(input_shape)
    x = unet_features(inputs, width, levels)
    mask = layers.Conv2D(1, 1, activation="sigmoid", name="mask", dtype="float32")(x)
    return keras.Model(inputs, mask, name="unet")
