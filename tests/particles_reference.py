"""The particle sizing's labelling and seeding as they were before they were made cheaper
(commit 1c2799f of ``edge_runtime/particles.py``, verbatim but for the module prefix): the
reference that ``tests/test_particles_fast.py`` holds the current code to, pixel for pixel."""

from __future__ import annotations

import numpy as np

from edge_runtime import particles as P


def label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected regions of a boolean mask → (int32 labels 1..n, n). Row runs are the
    nodes; a run is joined to each run above it that it shares a column with; the joined
    runs take their smallest member's number by vectorised min-propagation with pointer
    jumping (a union-find without a Python loop per pixel or per run)."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    step = edges.ravel()  # flat indices, row-major: one array each instead of two
    rows, starts = np.divmod(np.flatnonzero(step == 1), w + 1)
    ends = np.flatnonzero(step == -1) - rows * (w + 1)  # same order as the starts
    lengths = ends - starts
    run_of = np.repeat(np.arange(len(rows)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    flat = (rows * w + starts)[run_of] + offsets
    runs = np.full(h * w, -1, np.int64)
    runs[flat] = run_of
    runs = runs.reshape(h, w)
    # a pixel and the one above it, both in runs, taken only where one of the two runs
    # starts: the first column two overlapping runs share is such a place, and the only one,
    # so each joined pair of runs appears once (no sort to remove repeats)
    first = edges[:, :-1] == 1
    both = (runs[1:] >= 0) & (runs[:-1] >= 0) & (first[1:] | first[:-1])
    n_runs = len(rows)
    a, b = runs[1:][both], runs[:-1][both]
    root = np.arange(n_runs)
    while True:
        low = np.minimum(root[a], root[b])
        new = root.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]  # pointer jumping
        if np.array_equal(new, root):
            break
        root = new
    uniq, ids = np.unique(root, return_inverse=True)
    out = np.zeros(h * w, np.int32)
    out[flat] = (ids + 1)[run_of]
    return out.reshape(h, w), len(uniq)


def seeded(regions: np.ndarray, n_regions: int, core: np.ndarray, interior: np.ndarray
            ) -> tuple[np.ndarray, int]:
    """Per interior region: one core (of at least ``P.MIN_CORE_PX``) → the region is that
    particle; none → the region is one particle too; two or more → the cores are grown over
    the region, each pixel going to the core that reaches it first."""
    seeds, n = label(core)
    big = np.bincount(seeds.ravel(), minlength=n + 1) >= P.MIN_CORE_PX
    big[0] = False
    seeds = np.where(big, np.cumsum(big), 0).astype(np.int32)[seeds]
    n = int(big.sum())
    region_of = np.zeros(n + 1, np.int64)
    at = seeds > 0
    region_of[seeds[at]] = regions[at]  # a core lies inside one interior region
    cores_in = np.bincount(region_of[1:], minlength=n_regions + 1)
    whole = np.zeros(n_regions + 1, np.int32)  # region → its particle, unless split
    whole[region_of[1:]] = np.arange(1, n + 1)
    lone = cores_in == 0
    lone[0] = False
    whole[lone] = n + np.arange(1, int(lone.sum()) + 1)
    split = (cores_in > 1)[regions]
    out = whole[regions]
    if split.any():
        grown = P.grow(np.where(split, seeds, 0), split, P.CORE_GROW_STEPS)
        out = np.where(split, grown, out)
    return out, n + int(lone.sum())


def instances(classes: np.ndarray, grow_steps: int = 2) -> tuple[np.ndarray, int]:
    interior = (classes == P.INTERIOR) | (classes == P.CORE)
    regions, n = label(interior)
    core = classes == P.CORE
    if not core.any():
        return P.grow(regions, classes != P.BACKGROUND, grow_steps), n
    regions, n = seeded(regions, n, core, interior)
    regions = P.grow(regions, classes != P.BACKGROUND, grow_steps)
    return P.join_fragments(regions, n, P.FRAGMENT_PX), n
