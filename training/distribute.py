"""Where a model trains: the ``tf.distribute`` strategy and precision, chosen from config.

``auto``: a cluster from ``TF_CONFIG`` → MultiWorkerMirroredStrategy; several visible GPUs →
MirroredStrategy; otherwise the default strategy (one GPU or the CPU, same code).
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import keras


def distribution_strategy(name: str = "auto"):
    import tensorflow as tf

    if name == "auto":
        if os.environ.get("TF_CONFIG"):
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    return {
        "default": tf.distribute.get_strategy,
        "mirrored": tf.distribute.MirroredStrategy,
        "multi_worker": tf.distribute.MultiWorkerMirroredStrategy,
    }[name]()


@contextmanager
def precision(mixed: bool):
    """``mixed_float16`` while the model is built (GPU workstations); float32 otherwise."""
    if not mixed:
        yield
        return
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")
