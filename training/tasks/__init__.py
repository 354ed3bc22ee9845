"""The workstation's half of each task of :data:`edge_runtime.contract.TASKS`, one module per
task named after it. Each declares:

- ``CONFIG_FIELDS``: the fields of :class:`training.config.TrainConfig` that are its own;
- ``train(config, family, run_dir) -> RunRecord``: how samples and targets are made, the loss,
  the fit, the held-out metrics, and the run directory the converter reads (``model.keras``,
  ``heldout.npz``, ``representative.npz``, plots);
- ``parity(refs, gots, heldout, record, budget) -> (keras metrics, edge metrics, reasons)``:
  the task's own metric on the held-out data, float against the converted model, with the
  budget of its row in ``TASKS`` (a non-empty ``reasons`` fails the gate).

The gateway's half (payloads) is ``edge_runtime/tasks/<task>.py``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edge_runtime.contract import task_spec


def training_task(name: str) -> ModuleType:
    """The module of task ``name`` (``training.tasks.<name>``)."""
    task_spec(name)
    return importlib.import_module(f"training.tasks.{name}")
