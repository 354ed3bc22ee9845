"""int8 calibration (representative) windows, drawn evenly across the plant's operating modes.

Why stratify: int8 fixes every activation's range from these windows. A plant that spends 5 %
of its time in a rare mode (start-up, a second product grade, a bypass valve open) gets about
5 % of a random sample — a handful of windows, or none — and the activations that only that
mode drives are clipped on the gateway, silently. Training windows are clustered by operating
mode (k-means on each window's tag means) and the sample is drawn
evenly across modes; each tag's extreme windows, and those stretched by ``QUANT_HEADROOM``
(a plant drifts past its training range), are always added.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REPRESENTATIVE_WINDOWS = 256
QUANT_HEADROOM = 1.5
MODES = 8  # k-means clusters (strata) over the per-window tag means
FIT_WINDOWS = 5000  # k-means is fitted on at most this many windows


def operating_modes(train_x: np.ndarray, seed: int, modes: int = MODES) -> np.ndarray:
    """Mode label per window: k-means (k = ``modes``) on per-window tag means. A fixed k
    over-splits a plant with one broad mode, which costs nothing (the draw then simply spreads
    over its range); a rare mode away from the bulk gets a cluster, and so its share."""
    from sklearn.cluster import KMeans

    means = train_x.reshape(len(train_x), -1, train_x.shape[-1]).mean(axis=1)
    k = min(modes, len(np.unique(means.round(6), axis=0)))
    if k < 2:
        return np.zeros(len(means), dtype=int)
    rng = np.random.default_rng(seed)
    fit = means[rng.choice(len(means), min(FIT_WINDOWS, len(means)), replace=False)]
    return KMeans(k, n_init=4, random_state=seed).fit(fit).predict(means)


def even_draw(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices: ``n`` in all, an equal share per mode (a mode smaller than its share gives all
    its windows and the rest is shared among the larger ones)."""
    modes, sizes = np.unique(labels, return_counts=True)
    picked, left = [], min(n, len(labels))
    for i, m in enumerate(modes[np.argsort(sizes)]):  # smallest first
        members = np.flatnonzero(labels == m)
        take = min(len(members), left // (len(modes) - i))
        picked.append(rng.choice(members, take, replace=False))
        left -= take
    return np.sort(np.concatenate(picked))


def representative_windows(train_x: np.ndarray, seed: int, n: int = REPRESENTATIVE_WINDOWS,
                           stratify: bool = True) -> tuple[np.ndarray, dict]:
    """Calibration windows and a record of how they were drawn (modes, counts, extremes)."""
    flat = train_x.reshape(len(train_x), -1, train_x.shape[-1])
    extremes = np.unique(np.concatenate([flat.max(axis=1).argmax(axis=0),
                                         flat.min(axis=1).argmin(axis=0)]))
    rng = np.random.default_rng(seed)
    labels = (operating_modes(train_x, seed) if stratify
              else np.zeros(len(train_x), dtype=int))
    sample = even_draw(labels, n, rng)
    pick = np.unique(np.concatenate([extremes, sample]))
    windows = np.concatenate([train_x[pick], train_x[extremes] * QUANT_HEADROOM])
    modes = np.unique(labels)
    sampling = {
        "method": (f"k-means (k={MODES}) on per-window tag means, even draw per mode"
                   if stratify else "uniform random"),
        "training_windows": len(train_x), "modes": len(modes),
        "mode_windows": [int(np.sum(labels == m)) for m in modes],
        "mode_sampled": [int(np.sum(labels[sample] == m)) for m in modes],
        "extreme_windows": len(extremes), "headroom": QUANT_HEADROOM,
        "headroom_windows": len(extremes), "total": len(windows), "seed": seed,
    }
    return windows.astype(np.float32), sampling


def save_representative(run_dir: Path, train_x: np.ndarray, seed: int) -> dict:
    """Write ``representative.npz`` (``x`` and the ``sampling`` record as JSON text)."""
    windows, sampling = representative_windows(train_x, seed)
    np.savez_compressed(Path(run_dir) / "representative.npz", x=windows,
                        sampling=np.array(json.dumps(sampling)))
    return sampling


def load_sampling(npz: Path) -> dict:
    """The sampling record of a ``representative.npz`` ({} for files written before it)."""
    with np.load(npz) as data:
        return json.loads(str(data["sampling"])) if "sampling" in data.files else {}
