"""The gateway's particle sizing, made cheaper, gives the same particles as before, pixel for
pixel: its labelling, core seeding and class picking against the former code
(``tests/particles_reference.py``) on generated frames with model-like errors."""

from __future__ import annotations

import numpy as np

from edge_runtime.particles import classes_of, instances, label
from tests import particles_reference as ref
from training.images.micrographs import MicrographConfig, classes, generate


def _noisy_classes(seed: int, size: int = 96) -> np.ndarray:
    """Generated touching particles with a core class, half their boundary pixels called
    interior (touching interiors run together: the cores must split them) and 2 % of all
    pixels set to a random class (stray boundaries, specks, broken cores)."""
    cfg = MicrographConfig(size=size, um_per_px=1.0, d50_um=10.0, count=(12, 20), touch=0.6)
    c = classes(generate(cfg, seed).labels, core_px=3.0)
    rng = np.random.default_rng(seed)
    c[(c == 2) & (rng.random(c.shape) < 0.5)] = 1
    flip = rng.random(c.shape) < 0.02
    c[flip] = rng.integers(0, 4, int(flip.sum()))
    return c


def test_labelling_equals_the_former_code_exactly():
    rng = np.random.default_rng(0)
    masks = [rng.random((37, 53)) < p for p in (0.0, 0.3, 0.55, 0.8, 1.0)]
    masks += [np.isin(_noisy_classes(s), (1, 3)) for s in range(3)]
    masks += [np.ones((1, 7), bool), np.eye(9, dtype=bool)]  # one row; diagonal: no joins
    for mask in masks:
        ours, n = label(mask)
        theirs, n_ref = ref.label(mask)
        assert n == n_ref and ours.dtype == theirs.dtype and np.array_equal(ours, theirs)


def test_instances_equal_the_former_code_on_generated_frames():
    for seed in range(6):
        c = _noisy_classes(seed)
        ours, n = instances(c)
        theirs, n_ref = ref.instances(c.astype(np.int64))
        assert n == n_ref and np.array_equal(ours, theirs)
        assert len(np.unique(ours)) > 8  # particles were found: the test is not vacuous
    for core_px in (3.0, 0.0):  # clean classes: no region to split; no core class at all
        cfg = MicrographConfig(size=96, um_per_px=1.0, d50_um=10.0, count=(12, 20), touch=0.0)
        c = classes(generate(cfg, 11).labels, core_px=core_px)
        ours, n = instances(c)
        theirs, n_ref = ref.instances(c.astype(np.int64))
        assert n == n_ref >= 12 and np.array_equal(ours, theirs)
    # one interior block with a core of exactly MIN_CORE_PX (3) pixels and a larger one
    c = np.zeros((12, 20), np.int64)
    c[2:10, 2:18] = 1
    c[5, 4:7] = 3
    c[4:7, 12:15] = 3
    ours, n = instances(c)
    theirs, n_ref = ref.instances(c)
    assert n == n_ref == 2 and np.array_equal(ours, theirs)


def test_class_picking_is_argmax_with_its_tie_rule():
    rng = np.random.default_rng(1)
    for k in (3, 4):
        probs = np.round(rng.random((40, 30, k)) * 3).astype(np.float32) / 3  # many ties
        assert np.array_equal(classes_of(probs), np.argmax(probs, axis=-1))
