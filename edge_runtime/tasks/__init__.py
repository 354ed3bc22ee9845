"""The gateway's half of each task: how a bundle's model outputs become the payload it
publishes. One module per task of :data:`edge_runtime.contract.TASKS`, named after it.

A series task (tag windows in) has ``post(pipeline, times, x, ys) -> list[Output]``: the
window times, the scaled windows and the LiteRT outputs of one batch, after the pipeline's
shared pre (grid, gap check, scaling) and invoke stages; optionally ``initial_state(manifest,
options)`` (what it remembers between batches, ``pipeline.task_state``, from the model's task
options in the edge config) and ``fill(pipeline, window)`` (a window with a gap made usable as
training did, or None to drop it) and ``model_input(pipeline, times, x)`` (the scaled windows
as the model takes them: a forecaster with known-future inputs appends their calendar
features). An image task has ``ROLE`` (the camera's ``classifier``
or ``segmenter`` slot) and ``read(model, img, settings) -> dict``: the verdict fields it adds
for one frame.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edge_runtime.contract import task_spec


def edge_task(name: str) -> ModuleType:
    """The module of task ``name`` (``edge_runtime.tasks.<name>``); unknown tasks are a
    ``KeyError`` naming the known ones."""
    task_spec(name)
    return importlib.import_module(f"edge_runtime.tasks.{name}")
