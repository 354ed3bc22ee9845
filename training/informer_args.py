"""The Informer families' arguments, checked without Keras: ``procedge train`` calls
:func:`check_informer_args` from ``check_train_config`` before TensorFlow loads, and the
builders call it again (``procedge eval ett``, tests), so a window too short for distilling is
refused before any data is windowed or any layer built."""

from __future__ import annotations

import math

INFORMER_FAMILIES = ("informer", "informer_full")


def encoder_lengths(window: int, e_layers: int, distil: bool) -> list[int]:
    """The input length of each encoder layer: distilling (max-pool, stride 2, same padding)
    between layers halves it, rounding up."""
    lengths = [window]
    for _ in range(e_layers - 1):
        lengths.append(math.ceil(lengths[-1] / 2) if distil else lengths[-1])
    return lengths


def sparse_counts(length: int, factor: int) -> int:
    """u = c·⌈ln L⌉ (the queries, and the keys sampled per query), at most L (the reference
    implementation's rounding)."""
    return min(factor * math.ceil(math.log(length)), length)


def check_informer_args(window: int, horizon: int, *, e_layers: int = 2, d_layers: int = 1,
                        d_model: int = 64, heads: int = 4, factor: int = 5,
                        label_len: int | None = None, distil: bool = True,
                        field: str = "window.length") -> int:
    """Raise ``ValueError`` naming the field when the arguments cannot build; return the
    label length (default: half the window, the Informer repository's 96 → 48)."""
    for name, value, least in (("model.e_layers", e_layers, 1), ("model.d_layers", d_layers, 1),
                               ("model.heads", heads, 1), ("model.factor", factor, 1),
                               ("model.d_model", d_model, 1)):
        if int(value) != value or value < least:
            raise ValueError(f"{name} must be an integer ≥ {least}, not {value!r}")
    if d_model % heads:
        raise ValueError(f"model.d_model {d_model} must be a multiple of model.heads {heads}")
    need = 2 ** e_layers if distil else 2
    if window < need:
        raise ValueError(
            f"{field} {window} is too short for model.e_layers {e_layers}: distilling halves "
            f"the encoder input {e_layers - 1} time(s) and the last layer needs at least 2 "
            f"steps, so {field} must be ≥ {need} (or lower model.e_layers, or set "
            "model.distil: false)")
    label = window // 2 if label_len is None else label_len
    if not 1 <= label <= window:
        raise ValueError(f"model.label_len {label_len} must be between 1 and {field} "
                         f"({window}): the decoder's start token is the window's last "
                         "label_len steps")
    if horizon < 1:
        raise ValueError(f"horizon must be ≥ 1, not {horizon}")
    return label


def check_config_model(family: str, window: int, horizon: int, model: dict) -> None:
    """The informer families' ``model:`` keys that decide whether the network can be built
    (no-op for other families); unknown keys are left to the builder's signature."""
    if family not in INFORMER_FAMILIES:
        return
    keys = ("e_layers", "d_layers", "d_model", "heads", "factor", "label_len", "distil")
    check_informer_args(window, horizon, **{k: model[k] for k in keys if k in model})
