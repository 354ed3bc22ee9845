"""Where a model trains: the ``tf.distribute`` strategy and precision, chosen from config.

``auto``: several visible GPUs → MirroredStrategy; otherwise the default strategy (one GPU or
the CPU, same code).

Multi-worker training is refused, with the reason, rather than left to fail deep inside
``fit``: Keras 3's ``fit`` does not run under MultiWorkerMirroredStrategy (run here with two
workers on 127.0.0.1, Keras 3.15.1 and TensorFlow 2.21.0: its symbolic build reduces the
``(x, y)`` batch with ``strategy.reduce`` and stops with "Attempt to convert a value
(PerReplica…) to a Tensor"; with that build patched to use the local replica's batch, the
train step's ``reduce_per_replica`` of its logs fails next; keras-team/keras issue 20585).
A ``TF_CONFIG`` in the environment is therefore an error too: each worker would otherwise
train alone and write the same run.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import keras

MULTI_WORKER_REFUSED = (
    "multi-worker training is not supported: Keras 3's fit does not run under "
    "MultiWorkerMirroredStrategy (keras-team/keras issue 20585); train on one machine "
    "(several GPUs: fit.strategy mirrored)")


def check_single_worker() -> None:
    """Refuse a cluster in ``TF_CONFIG`` before any data is read or TensorFlow loads."""
    if os.environ.get("TF_CONFIG"):
        raise RuntimeError(f"TF_CONFIG is set: {MULTI_WORKER_REFUSED}")


def distribution_strategy(name: str = "auto"):
    import tensorflow as tf

    check_single_worker()
    if name == "auto":
        name = "mirrored" if len(tf.config.list_logical_devices("GPU")) > 1 else "default"
    return {
        "default": tf.distribute.get_strategy,
        "mirrored": tf.distribute.MirroredStrategy,
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
