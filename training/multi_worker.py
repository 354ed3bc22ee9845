"""Training on several machines: ``MultiWorkerMirroredStrategy`` with a training loop of its own.

Why not ``model.fit``: Keras 3's ``fit`` does not run under this strategy (tried with two
workers on 127.0.0.1, Keras 3.15.1, TensorFlow 2.21.0: its symbolic build reduces the
``(x, y)`` batch with ``strategy.reduce`` and stops with "Attempt to convert a value
(PerReplica…) to a Tensor"; with that patched, the train step's ``reduce_per_replica`` fails
next; keras-team/keras issue 20585). The loop here is the one the strategy documents: each
replica computes its share of the global batch, ``compute_average_loss`` scales it by the
global batch, the optimizer's update all-reduces the gradients. The same callbacks as a
single-machine fit drive it (early stopping with best-weights restore, the plateau schedule,
the wall-clock limit, progress) through a :class:`keras.callbacks.CallbackList`.

The cluster comes from ``TF_CONFIG`` (``{"cluster": {"worker": ["host:port", …]}, "task":
{"type": "worker", "index": i}}``). Only the chief (``chief`` 0, else ``worker`` 0) writes the
run directory; the others train in a temporary one that is removed (:func:`worker_run_dir`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import keras


def cluster() -> dict | None:
    """``TF_CONFIG`` parsed, or None when it is unset or names a single task."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        config = json.loads(raw)
        tasks = sum(len(v) for v in config["cluster"].values())
        config["task"]["type"], int(config["task"]["index"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"TF_CONFIG is not a cluster and task description: {e}") from e
    return config if tasks > 1 else None


def is_chief() -> bool:
    """The task that writes: ``chief`` 0, else ``worker`` 0 (True without a cluster)."""
    config = cluster()
    if config is None:
        return True
    task = config["task"]
    chief_type = "chief" if "chief" in config["cluster"] else "worker"
    return task["type"] == chief_type and int(task["index"]) == 0


@contextmanager
def worker_run_dir(run_dir: Path) -> Iterator[Path]:
    """``run_dir`` on the chief; a temporary directory of the same name, removed afterwards,
    on every other worker (all of them run the same program: only one may write)."""
    if is_chief():
        yield run_dir
        return
    scratch = Path(tempfile.mkdtemp(prefix="procedge-worker-"))
    try:
        yield scratch / run_dir.name
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_fittable(model: keras.Model) -> None:
    """The loop trains on the compiled loss only: a model with a training step of its own (a
    VAE adds its KL term there) would silently lose it."""
    if type(model).train_step is not keras.Model.train_step:
        raise ValueError(f"multi-worker training: {type(model).__name__} has its own "
                         "train_step (e.g. a VAE), which the multi-worker loop does not run")


def fit(model: keras.Model, loss: keras.losses.Loss | str, strategy, train_data,
        steps_per_epoch: int, val_data, epochs: int, callbacks: list) -> None:
    """Fit ``model`` (built and compiled under ``strategy.scope()``) on ``train_data`` (a
    ``tf.data`` pipeline holding every epoch back to back, global batches) for ``epochs`` of
    ``steps_per_epoch`` steps, with ``val_loss`` on ``val_data`` after each; ``callbacks`` see
    the same logs and may stop it (``model.stop_training``). ``loss``: the compiled one (a
    ``Loss`` or a name such as ``"mse"``), taken per example."""
    import tensorflow as tf

    check_fittable(model)
    optimizer = model.optimizer
    hooks = keras.callbacks.CallbackList(callbacks, model=model, epochs=epochs,
                                         steps=steps_per_epoch, verbose=0)

    # unreduced: a loss object's call, or the function a name stands for ("mse")
    unreduced = loss.call if isinstance(loss, keras.losses.Loss) else keras.losses.get(loss)

    def per_example(y, p):
        value = unreduced(y, p)  # one value per example (and step)
        return tf.reduce_mean(tf.reshape(value, [tf.shape(value)[0], -1]), axis=1)

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            value = tf.nn.compute_average_loss(per_example(y, model(x, training=True)))
        grads = tape.gradient(value, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return value

    def replica_eval(x, y):
        value = per_example(y, model(x, training=False))
        return tf.reduce_sum(value), tf.cast(tf.shape(value)[0], tf.float32)

    @tf.function
    def train_step(iterator):
        return strategy.reduce("SUM", strategy.run(replica_step, args=next(iterator)), axis=None)

    @tf.function
    def eval_step(batch):
        total, count = strategy.run(replica_eval, args=batch)
        return (strategy.reduce("SUM", total, axis=None),
                strategy.reduce("SUM", count, axis=None))

    iterator = iter(strategy.experimental_distribute_dataset(train_data))
    val = strategy.experimental_distribute_dataset(val_data)
    model.stop_training = False
    hooks.on_train_begin()
    for epoch in range(epochs):
        hooks.on_epoch_begin(epoch)
        train_loss = sum(float(train_step(iterator)) for _ in range(steps_per_epoch))
        total = count = 0.0
        for batch in val:
            t, c = eval_step(batch)
            total, count = total + float(t), count + float(c)
        logs = {"loss": train_loss / steps_per_epoch, "val_loss": total / max(count, 1.0),
                "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate))}
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    hooks.on_train_end()
