"""Particle sizing in plain numpy (task ``particle_size``): the micrograph preprocessing that
training and the gateway share, and the post-processing of the segmenter's classes into
particles — instances seeded from the predicted cores when the model has a core class (else
from the interior regions), labelled (union-find over row runs), grown back over the interior
and the boundary ring, measured (area → equivalent circle diameter in µm through the calibration,
aspect ratio from second moments) and summarised (count, D10/D50/D90, span, histogram).

No scipy, scikit-image or OpenCV: this runs on the gateway.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

BACKGROUND, INTERIOR, BOUNDARY, CORE = 0, 1, 2, 3
#: How far a core may grow over the interior around it (pixels, one per step); growing stops
#: earlier once nothing is left to take.
CORE_GROW_STEPS = 8
#: Core regions smaller than this (pixels) seed nothing: a speck of core class at the rim of
#: a particle whose real core is elsewhere would otherwise split it.
MIN_CORE_PX = 3
#: A particle smaller than this (pixels) that touches a larger one is a fragment of it (a
#: piece cut off by a stray boundary or core) and joins it. Generated test particles are at
#: least 38 px (7 µm at 1 µm/px); set lower for tiny particles touching large ones.
FRAGMENT_PX = 15
#: Histogram bin edges in µm (log-spaced, as size distributions are read); the payload
#: carries the edges with the counts. The first and last bins also hold the particles below
#: and above the edges, so the counts add up to the particle count.
HIST_EDGES_UM = tuple(float(round(e, 2)) for e in np.geomspace(2.0, 200.0, 21))


def _integral(padded: np.ndarray, dtype) -> np.ndarray:
    """Summed-area table with a zero first row and column."""
    c = np.zeros((padded.shape[0] + 1, padded.shape[1] + 1), dtype)
    np.cumsum(padded, axis=0, dtype=dtype, out=c[1:, 1:])
    np.cumsum(c[1:, 1:], axis=1, out=c[1:, 1:])
    return c


def box_sum(x: np.ndarray, k: int) -> np.ndarray:
    """Sum over a k×k window (odd k), edges reflected; one integral image, O(pixels). A uint8
    frame's table is int32 (0.26 ms for a 256 × 256 frame with k = 31 against 0.58 in int64
    and 0.63 in float64, on a 2-core Xeon): past 8 M pixels its entries wrap, but each box
    sum is a difference of entries, exact modulo 2³², hence exact while 255 · k² < 2³¹.
    Anything else in float64."""
    p = k // 2
    padded = np.pad(x, p + 1, mode="reflect")[1:, 1:]
    c = _integral(padded, np.int32 if x.dtype == np.uint8 else np.float64)
    h, w = x.shape
    return c[k : k + h, k : k + w] - c[:h, k : k + w] - c[k : k + h, :w] + c[:h, :w]


def preprocess(image: np.ndarray, window: int) -> np.ndarray:
    """A grey frame (H×W, uint8 or 0..1) → the model input (H×W×1 float32): illumination
    flattened (minus its ``window``-pixel box mean, the uneven background) and contrast
    normalised (divided by the flattened frame's standard deviation, at least 1e-3 of the
    full scale). Training and the gateway call this one function, so the model sees the same
    pixels in both. A uint8 frame is worked in its own units (the division by the standard
    deviation makes the scale drop out), so its box sums stay integer."""
    x = np.asarray(image)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 2:
        raise ValueError(f"particle image: expected a grey H×W frame, got shape {x.shape}")
    k, full_scale = window | 1, (255.0 if x.dtype == np.uint8 else 1.0)
    flat = x.astype(np.float32)
    flat -= box_sum(x, k).astype(np.float32) * np.float32(1.0 / (k * k))
    flat *= np.float32(1.0 / max(float(flat.std()), 1e-3 * full_scale))
    return flat[..., None]


def boundary_of(labels: np.ndarray) -> np.ndarray:
    """Instance pixels with a 4-neighbour of another label (or background, or off-frame)."""
    p = np.pad(labels, 1)
    c = p[1:-1, 1:-1]
    differs = ((p[:-2, 1:-1] != c) | (p[2:, 1:-1] != c) | (p[1:-1, :-2] != c)
               | (p[1:-1, 2:] != c))
    return (c > 0) & differs


def framed(image: np.ndarray, rows: bool = True) -> np.ndarray:
    """``image`` with a border of zeros one pixel wide (left and right only when not
    ``rows``): ``np.pad(image, 1)`` without its per-call overhead, which is most of its
    cost at these sizes."""
    h, w = image.shape
    top = int(rows)
    out = np.zeros((h + 2 * top, w + 2), image.dtype)
    out[top : top + h, 1 : w + 1] = image
    return out


def label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected regions of a boolean mask → (int32 labels 1..n, n), numbered in raster
    order of their first pixel (as ``scipy.ndimage.label``)."""
    runs = label_runs(mask)
    return paint(runs, runs.ids), runs.n


class Runs(NamedTuple):
    """The row runs of a mask (raster order) and the region each belongs to."""

    shape: tuple[int, int]
    rows: np.ndarray
    starts: np.ndarray
    ends: np.ndarray  # exclusive
    ids: np.ndarray  # region of each run, 1..n
    n: int


def label_runs(mask: np.ndarray) -> Runs:
    """Row runs are the nodes; a run is joined to each run of the row above that shares a
    column with it (found by binary search over the runs, not by a pass over the pixels); the
    joined runs take their smallest member's number by vectorised min-propagation with
    pointer jumping (a union-find without a Python loop per pixel or per run)."""
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    # +1 where a run starts, -1 just past its end; each row padded, so they alternate
    change = np.flatnonzero(np.diff(framed(mask, rows=False).view(np.int8), axis=1))
    rows = change[0::2] // (w + 1)
    starts, ends = change[0::2] - rows * (w + 1), change[1::2] - rows * (w + 1)
    n_runs = len(rows)
    if not n_runs:
        return Runs((h, w), rows, starts, ends, np.zeros(0, np.int32), 0)
    # runs of row r-1 overlapping run j of row r: start < end_j and end > start_j, on keys
    # row·(w+1)+column, which both lists keep sorted
    above = (rows - 1) * (w + 1)
    lo = np.searchsorted(change[1::2], above + starts, side="right")
    count = np.maximum(np.searchsorted(change[0::2], above + ends, side="left") - lo, 0)
    a = np.repeat(np.arange(n_runs), count)
    b = np.arange(len(a)) - np.repeat(np.cumsum(count) - count, count) + np.repeat(lo, count)
    root = np.arange(n_runs)
    while len(a):
        low = np.minimum(root[a], root[b])
        new = root.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        new = new[new]  # pointer jumping
        if np.array_equal(new, root):
            break
        root = new
    is_root = root == np.arange(n_runs)  # a region's smallest run: raster order of regions
    ids = np.cumsum(is_root, dtype=np.int32)[root]
    return Runs((h, w), rows, starts, ends, ids, int(is_root.sum()))


def paint(runs: Runs, values: np.ndarray) -> np.ndarray:
    """An int32 image holding ``values[i]`` on run i and 0 elsewhere: +value where a run
    starts and -value just past its end, summed along the rows (one pass, no per-pixel
    index arrays)."""
    h, w = runs.shape
    delta = np.zeros(h * (w + 1) + 1, np.int32)
    at = runs.rows * (w + 1)
    delta[at + runs.starts] = values
    delta[at + runs.ends] -= values
    return np.cumsum(delta[:-1], dtype=np.int32).reshape(h, w + 1)[:, :w].copy()


def classes_of(probs: np.ndarray) -> np.ndarray:
    """``np.argmax(probs, axis=-1)`` for 3 or 4 classes (the first class on ties) as a
    tournament of whole planes: the same classes in about a third of the time of an argmax
    over a short last axis (NaN scores, which a softmax does not give, are not handled)."""
    k = probs.shape[-1]
    if k not in (3, 4):
        return np.argmax(probs, axis=-1)
    first, second = probs[..., 0], probs[..., 1]
    low, low_best = (second > first).view(np.uint8), np.maximum(first, second)
    if k == 3:
        return np.where(probs[..., 2] > low_best, np.uint8(2), low)
    third, fourth = probs[..., 2], probs[..., 3]
    high = (fourth > third).view(np.uint8) + np.uint8(2)
    return np.where(np.maximum(third, fourth) > low_best, high, low)


def grow(labels: np.ndarray, foreground: np.ndarray, steps: int) -> np.ndarray:
    """Give unlabelled foreground pixels the label of a labelled 4-neighbour, ``steps`` times:
    the interior regions take back the boundary ring the segmenter drew around them. Each
    step reads the previous step's labels whole (the largest neighbour wins) and touches only
    the pixels still free, by flat index into one padded buffer."""
    out = framed(labels)
    flat, width = out.ravel(), out.shape[1]
    free = np.flatnonzero(framed(foreground & (labels == 0)))
    for _ in range(steps):
        best = np.maximum(np.maximum(flat[free - width], flat[free + width]),
                          np.maximum(flat[free - 1], flat[free + 1]))
        took = best > 0
        if not took.any():
            break
        flat[free[took]] = best[took]
        free = free[~took]
    return np.ascontiguousarray(out[1:-1, 1:-1])


def measure(labels: np.ndarray, n: int, um_per_px: float) -> dict[str, np.ndarray]:
    """Per particle: area (px), ECD (µm) = 2 √(area/π) × µm/px, aspect ratio √(λ1/λ2) of its
    pixel coordinates' covariance (1 = round)."""
    where = np.flatnonzero(labels)
    flat = labels.ravel()[where]
    y, x = (v.astype(np.float64) for v in np.divmod(where, labels.shape[1]))

    def total(weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(flat, weights, minlength=n + 1)[1:]

    area = total()
    keep = area > 0
    safe = np.where(keep, area, 1)
    my, mx = total(y) / safe, total(x) / safe
    cyy = total(y * y) / safe - my**2 + 1 / 12  # + 1/12: a pixel's own extent
    cxx = total(x * x) / safe - mx**2 + 1 / 12
    cxy = total(x * y) / safe - mx * my
    half = np.sqrt(((cxx - cyy) / 2) ** 2 + cxy**2)
    l1, l2 = (cxx + cyy) / 2 + half, np.maximum((cxx + cyy) / 2 - half, 1e-9)
    return {"area_px": area[keep], "ecd_um": 2 * np.sqrt(area[keep] / np.pi) * um_per_px,
            "aspect": np.sqrt(l1 / l2)[keep]}


def distribution(ecd_um: np.ndarray) -> dict[str, float]:
    """Number-weighted D10/D50/D90 (linear-interpolated percentiles), span (D90−D10)/D50 and
    the count; NaN sizes when there is no particle."""
    d = np.asarray(ecd_um, dtype=np.float64)
    if not len(d):
        return {"count": 0, "d10_um": float("nan"), "d50_um": float("nan"),
                "d90_um": float("nan"), "span": float("nan")}
    d10, d50, d90 = np.percentile(d, [10, 50, 90])
    return {"count": len(d), "d10_um": float(d10), "d50_um": float(d50), "d90_um": float(d90),
            "span": float((d90 - d10) / d50)}


def instances(classes: np.ndarray, grow_steps: int = 2, fragment_px: int = FRAGMENT_PX
              ) -> tuple[np.ndarray, int]:
    """The segmenter's per-pixel classes (0 background, 1 interior, 2 boundary, optionally 3
    core) → particles. Without cores: the interior regions, labelled. With cores: each core
    region seeds one particle and takes the interior around it, so two touching particles
    whose interiors the model let run together (a neck with no boundary across it) still
    count as two, their cores being apart; an interior region holding no core is one particle
    (small or faint ones whose core the model missed). Grown over the foreground; with cores,
    fragments (under ``fragment_px``, touching a larger particle) then join their
    neighbour."""
    runs = label_runs((classes == INTERIOR) | (classes == CORE))
    core = classes == CORE
    if not core.any():
        return grow(paint(runs, runs.ids), classes != BACKGROUND, grow_steps), runs.n
    regions, n = _seeded(runs, core)
    regions = grow(regions, classes != BACKGROUND, grow_steps)
    return join_fragments(regions, n, fragment_px), n


def _seeded(regions: Runs, core: np.ndarray) -> tuple[np.ndarray, int]:
    """Per interior region: one core (of at least ``MIN_CORE_PX``) → the region is that
    particle; none → the region is one particle too; two or more → the cores are grown over
    the region, each pixel going to the core that reaches it first. Worked out on the row
    runs: an image is painted once per result, not gathered per region."""
    cores = label_runs(core)
    size = np.bincount(cores.ids, weights=cores.ends - cores.starts, minlength=cores.n + 1)
    big = size >= MIN_CORE_PX
    big[0] = False
    seed_of = np.where(big, np.cumsum(big), 0).astype(np.int32)[cores.ids]  # per core run
    n = int(big.sum())
    # a core lies inside one interior region: the interior run holding its first pixel
    width = regions.shape[1] + 1
    inside = np.searchsorted(regions.rows * width + regions.starts,
                             cores.rows * width + cores.starts, side="right") - 1
    region_of_run = regions.ids[inside]
    region_of = np.zeros(n + 1, np.int64)
    at = seed_of > 0
    region_of[seed_of[at]] = region_of_run[at]
    cores_in = np.bincount(region_of[1:], minlength=regions.n + 1)
    whole = np.zeros(regions.n + 1, np.int32)  # region → its particle, unless split
    whole[region_of[1:]] = np.arange(1, n + 1)
    lone = cores_in == 0
    lone[0] = False
    whole[lone] = n + np.arange(1, int(lone.sum()) + 1)
    n += int(lone.sum())
    split = cores_in > 1
    if not split.any():
        return paint(regions, whole[regions.ids]), n
    split_run = split[regions.ids]
    out = paint(regions, np.where(split_run, 0, whole[regions.ids]))
    seeds = paint(cores, np.where(split[region_of_run], seed_of, 0))
    grown = grow(seeds, paint(regions, split_run.astype(np.int32)) > 0, CORE_GROW_STEPS)
    return out + grown, n  # grown is 0 outside the split regions, out 0 inside


def join_fragments(labels: np.ndarray, n: int, fragment_px: int) -> np.ndarray:
    """Each particle under ``fragment_px`` pixels that has a 4-neighbour in a particle of at
    least that size takes that particle's label (numbers stay ≤ n; the joined ones empty)."""
    small = np.bincount(labels.ravel(), minlength=n + 1) < fragment_px
    small[0] = False
    inside = np.flatnonzero(small[labels.ravel()])
    if not len(inside):
        return labels
    padded = framed(labels)
    width, flat = padded.shape[1], padded.ravel()
    at = inside + width + 1 + 2 * (inside // labels.shape[1])  # the same pixel, padded
    new = np.arange(n + 1, dtype=labels.dtype)
    for step in (-width, width, -1, 1):
        other = flat[at + step]
        ok = (other > 0) & ~small[other]
        new[flat[at[ok]]] = other[ok]
    return new[labels]


def size_particles(probs: np.ndarray, um_per_px: float, min_area_px: int = 6,
                   grow_steps: int = 2) -> tuple[dict[str, Any], np.ndarray]:
    """The segmenter's (H, W, 3) class scores, or (H, W, 4) with a core class, → (payload
    fields, instance labels). Regions smaller than ``min_area_px`` (noise specks) are
    dropped."""
    if not um_per_px or um_per_px <= 0:
        raise ValueError(f"um_per_px: the calibration must be > 0, got {um_per_px!r}")
    labels, n = instances(classes_of(probs), grow_steps)
    m = measure(labels, n, um_per_px)
    small = m["area_px"] < min_area_px
    ecd, aspect = m["ecd_um"][~small], m["aspect"][~small]
    counts, _ = np.histogram(np.clip(ecd, HIST_EDGES_UM[0], HIST_EDGES_UM[-1]),
                             bins=HIST_EDGES_UM)
    fields = distribution(ecd) | {
        "um_per_px": um_per_px,
        "ecd_um": [round(float(v), 2) for v in ecd],
        "aspect_ratio": [round(float(v), 3) for v in aspect],
        "aspect_median": float(np.median(aspect)) if len(aspect) else float("nan"),
        "histogram": {"edges_um": list(HIST_EDGES_UM), "counts": counts.tolist()}}
    return {k: None if isinstance(v, float) and np.isnan(v) else v  # JSON has no NaN
            for k, v in fields.items()}, labels
