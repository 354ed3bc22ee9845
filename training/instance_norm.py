"""Instance normalisation around any forecaster: ``model: {norm: revin}`` (or
``subtract_last``) on every forecast family, implemented once here and applied by the registry
to each forecast builder (:func:`with_instance_norm`).

* ``revin`` (Kim et al., ICLR 2022): each window is normalised by its own mean and standard
  deviation per tag, the family forecasts in that frame, and the target channels are mapped
  back with the same statistics; ``norm_affine: true`` adds RevIN's learnable per-tag scale
  and shift (applied, then inverted on the targets).
* ``subtract_last`` (NLinear's form): the window minus its last row in, the target's last
  value added back.

Distribution shift between training and plant data moves the level of a window more than its
shape; forecasting in the window's own frame lets a model trained on one level carry to
another. Built from builtin layers and ``keras.ops`` (MEAN, SQUARED_DIFFERENCE, RSQRT, MUL,
ADD, GATHER in LiteRT), so it converts like the family and goes through the same parity gate.
This module imports Keras only when a model is built: the registry and ``procedge train``'s
pre-TensorFlow checks import it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

NORMS = ("none", "subtract_last", "revin")
EPS = 1e-5  # RevIN's epsilon, added to the variance
# Defaults chosen on validation splits across series (bench/bench_instance_norm.py, the
# 2026-12-03 entry of bench/HISTORY.md); families not listed were not measured: "none".
DEFAULT_NORMS = {"dlinear": "none", "informer": "subtract_last"}


def default_norm(family: str) -> str:
    """The ``model.norm`` a family gets when its config says nothing."""
    return DEFAULT_NORMS.get(family, "none")


def check_norm(norm: str, affine: bool) -> None:
    """``model.norm`` and ``model.norm_affine``, checked (no Keras)."""
    if norm not in NORMS:
        raise ValueError(f"model.norm must be one of {list(NORMS)}, not {norm!r}")
    if affine and norm != "revin":
        raise ValueError(f"model.norm_affine is RevIN's learnable scale and shift: it needs "
                         f"model.norm: revin (not {norm!r})")


def with_instance_norm(build: Callable[..., object], family: str) -> Callable[..., object]:
    """A forecast builder that takes ``norm`` (default: :func:`default_norm` of ``family``)
    and ``norm_affine`` besides the family's own arguments; ``norm="none"`` returns the
    family's model unchanged."""

    @functools.wraps(build)
    def wrapped(window: int, features: int, horizon: int, targets: int,
                target_columns: list[int] | None = None, norm: str | None = None,
                norm_affine: bool = False, **kw):
        norm = default_norm(family) if norm is None else norm
        check_norm(norm, norm_affine)
        model = build(window, features, horizon, targets, target_columns=target_columns, **kw)
        if norm == "none":
            return model
        cols = (list(range(features))[-targets:] if target_columns is None
                else list(target_columns))
        static = kw.get("static_column")  # an identifier: normalised per window it is 0
        return normalised(model, norm, norm_affine, cols, window, features,
                          passthrough=[] if static is None else [static])

    return wrapped


def normalised(model, norm: str, affine: bool, cols: list[int], window: int, features: int,
               passthrough: list[int] | None = None):
    """``model`` (N, L, F) → (N, H, T[, Q]) run on instance-normalised windows, its output
    mapped back to the window's frame on the target columns ``cols``. The tag columns
    ``passthrough`` (a static covariate: constant in every window, so normalising it would
    erase it) reach the model unchanged.

    A model with known-future inputs takes (N, L + H, F + K) (edge_runtime/calendar.py): the
    statistics then come from the L past rows of the F tag columns only, and the calendar
    columns and the H placeholder rows pass unchanged; statistics over the zero placeholder
    rows would shift every window towards zero, and the last row would be a placeholder."""
    import keras
    from keras import layers, ops

    total, width = model.inputs[0].shape[1:]
    inputs = keras.Input((total, width))
    past = inputs if total == window else layers.Cropping1D((0, total - window))(inputs)
    tags = past if width == features else ops.take(past, list(range(features)), axis=-1)
    if norm == "subtract_last":
        shift = layers.Cropping1D((window - 1, 0), name="norm_last")(tags)  # (N, 1, F)
        scale = None
        x = ops.subtract(tags, shift)
    else:
        shift = ops.mean(tags, axis=1, keepdims=True)  # (N, 1, F)
        var = ops.add(ops.mean(ops.square(ops.subtract(tags, shift)), axis=1, keepdims=True),
                      EPS)
        inv_std = ops.rsqrt(var)
        scale = ops.multiply(var, inv_std)  # √var, without SQRT/DIV (int8-friendly)
        x = ops.multiply(ops.subtract(tags, shift), inv_std)
    gamma = beta = None
    if affine:
        one = layers.Dense(1, kernel_initializer="zeros", bias_initializer="ones",
                           trainable=False, name="norm_one")(
            layers.Flatten()(layers.Cropping1D((0, window - 1))(tags)))
        gamma = layers.Dense(features, use_bias=False, kernel_initializer="ones",
                             name="revin_gamma")(one)  # (N, F)
        beta = layers.Dense(features, use_bias=False, kernel_initializer="zeros",
                            name="revin_beta")(one)
        x = ops.add(ops.multiply(x, ops.expand_dims(gamma, 1)), ops.expand_dims(beta, 1))
    if passthrough:  # x·(1 − keep) + tags·keep with a constant 0/1 keep: exact, builtin ops
        keep = np.zeros(features, np.float32)
        keep[passthrough] = 1.0
        x = ops.add(ops.multiply(x, 1.0 - keep), ops.multiply(tags, keep))
    y = model(_with_known_future(inputs, past, x, window, features))
    quantiles = len(y.shape) == 4

    def on_targets(t):  # (N, 1, F) or (N, F) → broadcastable to y on the target columns
        t = ops.take(t, cols, axis=-1)
        t = ops.expand_dims(t, 1) if len(t.shape) == 2 else t
        return ops.expand_dims(t, -1) if quantiles else t

    if affine:
        y = ops.divide(ops.subtract(y, on_targets(beta)),
                       ops.add(on_targets(gamma), EPS * EPS))
    if scale is not None:
        y = ops.multiply(y, on_targets(scale))
    y = ops.add(y, on_targets(shift))
    return keras.Model(inputs, y, name=f"{model.name}_{norm}")


def _with_known_future(inputs, past, tags, window: int, features: int):
    """``tags`` (N, L, F), normalised, put back beside the calendar columns of ``past`` (the
    input's L past rows) and before the input's forecast-step rows, both unchanged."""
    from keras import layers, ops

    total, width = inputs.shape[1:]
    x = tags if width == features else ops.concatenate(
        [tags, ops.take(past, list(range(features, width)), axis=-1)], axis=-1)
    return x if total == window else ops.concatenate(
        [x, layers.Cropping1D((window, 0))(inputs)], axis=1)
