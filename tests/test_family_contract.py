"""The contract every registered family passes, whatever its task: it builds from its
registered ``small`` arguments, and its output has the shape its task's edge half reads.
Each task's end-to-end tests (train → convert → LiteRT) build the same ``small`` models."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.contract import TASK_NAMES, task_spec
from training.autoencoders import edge_model
from training.config import IMAGE_GENERATORS
from training.registry import families

FAMILIES = sorted((f.task, f.name) for f in families())
WINDOW, FEATURES, HORIZON, TARGETS = 8, 3, 2, 2
IMAGE, CLASSES = (32, 32, 1), 3
OBS, ACTIONS = 4, 3


def test_every_task_has_families_and_modules():
    from edge_runtime.tasks import edge_task
    from training.tasks import training_task

    assert {task for task, _ in FAMILIES} == set(TASK_NAMES)
    for task in TASK_NAMES:
        assert callable(training_task(task).train) and callable(training_task(task).parity)
        if not task_spec(task).ships:
            continue  # a workstation job (generative): no gateway half
        edge = edge_task(task)
        assert callable(edge.post) if task_spec(task).inputs == "series" else edge.ROLE


def _build(family):
    if family.task == "forecast":
        return family.build(WINDOW, FEATURES, HORIZON, TARGETS, **family.small), (
            WINDOW, FEATURES), (HORIZON, TARGETS)
    if family.task == "anomaly":
        return edge_model(family.build(WINDOW, FEATURES, **family.small)), (
            WINDOW, FEATURES), (WINDOW, FEATURES)
    if family.task == "soft_sensor":
        return family.build(WINDOW, FEATURES, 1, **family.small), (WINDOW, FEATURES), (1,)
    if family.task == "control":
        return family.build(OBS, ACTIONS, **family.small), (OBS,), (ACTIONS,)
    if family.task == "generative":  # its generator: [z | one-hot class] → a window, an image
        if family.name in IMAGE_GENERATORS:
            gen = family.build(IMAGE[0], IMAGE[2], CLASSES, **family.small)
            return gen.generator, (gen.latent_dim + CLASSES,), IMAGE
        gen = family.build(WINDOW, FEATURES, CLASSES, **family.small)
        return gen.generator, (gen.latent_dim + CLASSES,), (WINDOW, FEATURES)
    if family.task == "image_class":
        return family.build(IMAGE, CLASSES, **family.small), IMAGE, (CLASSES,)
    if family.task == "particle_size":  # background / interior / boundary per pixel
        return family.build(IMAGE, **family.small), IMAGE, (*IMAGE[:2], 3)
    return family.build(IMAGE, **family.small), IMAGE, (*IMAGE[:2], 1)


@pytest.mark.parametrize(("task", "name"), FAMILIES)
def test_family_builds_small_with_the_output_its_task_reads(task, name):
    from training.registry import get_family

    family = get_family(name, task)
    model, shape, out_shape = _build(family)
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
    out = model(x)
    first = out[0] if isinstance(out, list | tuple) else out
    assert tuple(first.shape) == (2, *out_shape), name
    assert np.isfinite(np.asarray(first)).all()
