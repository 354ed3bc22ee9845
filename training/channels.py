"""Channel independence around any forecaster: ``model: {channels: independent}``.

Every tag is forecast by the same network from its own history alone (and the calendar, with
known-future inputs): the (N, L, F) window becomes N·F univariate windows (N·F, L, 1), the
family forecasts each, and the F forecasts are put back side by side. One set of weights
sees F times as many series, and no tag's noise leaks into another's forecast — the choice
behind DLinear's "individual" and PatchTST's results on the ETT sets, where mixing the
channels overfits. What is lost is exactly the cross-tag information, so it suits tags that
each carry their own dynamics, not a soft sensor that needs one tag to explain another.

The default, ``joint``, leaves the family unchanged. Applied by the registry to every
forecast builder, outside ``model.norm`` (RevIN then works per channel, which it does
anyway). Built from TRANSPOSE, RESHAPE, TILE and CONCATENATION, so it converts with builtin
ops and goes through the same parity gate. No Keras at import: ``procedge train``'s
pre-TensorFlow checks import it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

CHANNELS = ("joint", "independent")
WRAPPER_SUFFIX = "_per_channel"  # the wrapper model's name: <family>_per_channel


def check_channels(channels: str, static: object = None) -> None:
    """``model.channels`` checked (no Keras)."""
    if channels not in CHANNELS:
        raise ValueError(f"model.channels must be one of {list(CHANNELS)}, not {channels!r}")
    if channels == "independent" and static is not None:
        raise ValueError("model.channels: independent forecasts each tag from its own history "
                         "alone; a static covariate (model.static) is another tag: not both")


def with_channels(build: Callable[..., object]) -> Callable[..., object]:
    """A forecast builder that takes ``channels`` besides the family's own arguments."""

    @functools.wraps(build)
    def wrapped(window: int, features: int, horizon: int, targets: int,
                target_columns: list[int] | None = None, channels: str = "joint", **kw):
        check_channels(channels, kw.get("static_column"))
        if channels == "joint":
            return build(window, features, horizon, targets, target_columns=target_columns,
                         **kw)
        from training.forecasters import _targets

        cols = _targets(features, targets, target_columns)
        if cols != list(range(features)):
            raise ValueError(f"model.channels: independent forecasts every input tag from its "
                             f"own history: every tag must be a target, in input order "
                             f"({features} tags, target columns {cols})")
        inner = build(window, 1, horizon, 1, target_columns=[0], **kw)
        return per_channel(inner, features)

    return wrapped


def per_channel(inner, features: int):
    """(N, T, F + K) → ``inner`` on (N·F, T, 1 + K) → (N, H, F[, Q]). ``inner`` is the family
    built for one tag (plus the K known-future columns, repeated for every tag)."""
    import keras
    from keras import ops

    total, width = inner.inputs[0].shape[1:]
    known = width - 1
    inputs = keras.Input((total, features + known))
    tags = ops.take(inputs, list(range(features)), axis=-1) if known else inputs
    x = ops.reshape(ops.transpose(tags, (0, 2, 1)), (-1, total, 1))  # row n·F + j: tag j
    if known:
        calendar = ops.take(inputs, list(range(features, features + known)), axis=-1)
        calendar = ops.tile(ops.expand_dims(calendar, 1), (1, features, 1, 1))
        x = ops.concatenate([x, ops.reshape(calendar, (-1, total, known))], axis=-1)
    y = inner(x)  # (N·F, H, 1) or (N·F, H, 1, Q)
    horizon, quantiles = y.shape[1], y.shape[3:]
    y = ops.reshape(y, (-1, features, horizon, *quantiles))
    y = ops.transpose(y, (0, 2, 1, 3) if quantiles else (0, 2, 1))
    return keras.Model(inputs, y, name=f"{inner.name}{WRAPPER_SUFFIX}")
