"""Where a model trains: the ``tf.distribute`` strategy and precision, chosen from config.

``auto``: a cluster in ``TF_CONFIG`` → MultiWorkerMirroredStrategy (trained by the loop of
:mod:`training.multi_worker`, since Keras 3's ``fit`` does not run under it); several visible
GPUs → MirroredStrategy; otherwise the default strategy (one GPU or the CPU, same code).
"""

from __future__ import annotations

from contextlib import contextmanager

import keras

from training.multi_worker import cluster


def distribution_strategy(name: str = "auto"):
    import tensorflow as tf

    if name == "auto":
        if cluster() is not None:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "multi_worker" and cluster() is None:
        raise ValueError("fit.strategy multi_worker needs a cluster of two or more tasks in "
                         "TF_CONFIG")
    return {
        "default": tf.distribute.get_strategy,
        "mirrored": tf.distribute.MirroredStrategy,
        "multi_worker": tf.distribute.MultiWorkerMirroredStrategy,
    }[name]()


def is_multi_worker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


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
