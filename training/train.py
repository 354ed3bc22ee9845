"""Train one model from a :class:`TrainConfig` and write a run directory the converter reads.

Run directory: ``model.keras``, ``training.json`` (the :class:`RunRecord`: the bundle
manifest minus what conversion adds), ``heldout.npz`` (test windows or images, for parity and
edge metrics), ``representative.npz`` (training samples for int8 calibration), and PNG plots.
What is trained, and how, is the task's own module (``training/tasks/<task>.py``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras

from training.config import TrainConfig
from training.multi_worker import worker_run_dir
from training.registry import get_family
from training.tasks import training_task

log = logging.getLogger(__name__)


def train(config: TrainConfig) -> Path:
    """Train, evaluate on the held-out split, and write the run directory; returns its path."""
    keras.utils.set_random_seed(config.fit.seed)
    family = get_family(config.family, config.task)
    final = Path(config.output_dir) / config.name
    with worker_run_dir(final) as run_dir:  # several workers: only the chief writes ``final``
        run_dir.mkdir(parents=True, exist_ok=True)
        record = training_task(config.task).train(config, family, run_dir)
        record.save(run_dir)
    log.info("trained %s (%s): %s", config.name, config.family, record.metrics.get("keras"))
    return final
