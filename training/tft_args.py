"""The ``tft`` family's ``model:`` keys that decide whether the network can be built, checked
without Keras: ``procedge train`` calls :func:`check_config_model` from ``check_train_config``
before TensorFlow loads, and the builder calls :func:`check_tft_args` again (``procedge eval
ett``, tests), so a bad head or size is refused before any data is read."""

from __future__ import annotations

HEADS = ("flat", "step")  # the output layer: over all H steps' features, or one per step
HIDDEN, ATTENTION_HEADS = 16, 4  # the builder's defaults, shared with the check


def check_tft_args(*, hidden: int = HIDDEN, heads: int = ATTENTION_HEADS,
                   head: str = HEADS[0]) -> None:
    """A ``ValueError`` naming the field."""
    if hidden < heads:
        raise ValueError(f"model.hidden {hidden} must be at least model.heads {heads}")
    if head not in HEADS:
        raise ValueError(f"model.head must be one of {', '.join(HEADS)}, not {head!r}")


def check_config_model(family: str, model: dict) -> None:
    """``check_tft_args`` on the keys a config sets (no-op for other families)."""
    if family == "tft":
        check_tft_args(**{k: model[k] for k in ("hidden", "heads", "head") if k in model})
