"""How good generated images are, measured in the feature space of procedge's own trained
tile classifier (its penultimate layer: the globally pooled last feature map, the input of
the ``logits`` layer) rather than looked at:

- ``frechet_distance``: the Fréchet distance between Gaussians fitted to real and generated
  features (Heusel et al. 2017). It is *not* Inception's FID: the features are those of a
  small classifier trained on the tiles, so values compare generators on these tiles only,
  never with FIDs published elsewhere;
- ``precision_recall``: improved precision and recall (Kynkäänniemi et al. 2019): each real
  feature vector's ball reaches its k-th nearest real neighbour (k = 3); precision is the
  share of generated images inside some real ball (fidelity), recall the share of real images
  inside some generated ball, the balls then drawn among generated features (diversity);
- ``class_coverage``: per class, the share of real images whose k-NN ball holds a generated
  image of that class (Naeem et al. 2020): a class the generator collapsed reads near 0;
- ``copy_ratio``: how near generated images sit to the generator's *training* images,
  against how near unseen real images sit to them (medians of nearest-neighbour
  distances): about 1 for new images of the same kind, near 0 for copies, which precision
  and recall against held-apart images would both reward.
"""

from __future__ import annotations

import numpy as np

from training.generative_quality import _sq_dists
from training.generative_quality import coverage as _coverage

K = 3


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """‖μr − μf‖² + Tr(Σr + Σf − 2 (Σr Σf)^½) over feature rows (n, d)."""
    from scipy import linalg

    a, b = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    mu = a.mean(0) - b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(sa @ sb)
    if not np.isfinite(root).all():  # singular product: nudge both (the FID reference fix)
        eps = np.eye(len(sa)) * 1e-6
        root = linalg.sqrtm((sa + eps) @ (sb + eps))
    return float(mu @ mu + np.trace(sa) + np.trace(sb) - 2.0 * np.trace(root.real))


def _radii(x: np.ndarray, k: int) -> np.ndarray:
    """Squared distance of every row to its k-th nearest other row."""
    return np.sort(_sq_dists(x, x), axis=1)[:, min(k, len(x) - 1)]  # column 0: itself


def _inside(points: np.ndarray, centres: np.ndarray, k: int) -> float:
    """Share of ``points`` inside the union of the k-NN balls of ``centres``."""
    radius = _radii(centres, k)
    return float((_sq_dists(points, centres) <= radius[None, :]).any(axis=1).mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = K) -> dict[str, float]:
    """Improved precision and recall of ``fake`` against ``real`` (feature rows)."""
    a, b = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    return {"precision": _inside(b, a, k), "recall": _inside(a, b, k)}


def class_coverage(real: np.ndarray, real_c: np.ndarray, fake: np.ndarray, fake_c: np.ndarray,
                   k: int = K) -> dict[int, float]:
    """Coverage per class present in the real images (NaN where a class has < 2 real)."""
    return {int(c): _coverage(real[real_c == c], fake[fake_c == c], k)
            for c in np.unique(real_c)}


def copy_ratio(train: np.ndarray, real: np.ndarray, fake: np.ndarray) -> float:
    """Median distance of ``fake`` rows to their nearest ``train`` row over the same median
    for ``real`` (held-apart) rows."""
    def median_nn(x: np.ndarray) -> float:
        return float(np.median(np.sqrt(_sq_dists(np.asarray(x, np.float64),
                                                 np.asarray(train, np.float64)).min(1))))

    return median_nn(fake) / median_nn(real)


def feature_model(classifier):
    """The classifier up to its penultimate layer (the input of ``logits``)."""
    import keras

    return keras.Model(classifier.inputs, classifier.get_layer("logits").input)


def features(extractor, images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Features of images in [-1, 1], normalised as the classifier's inputs were."""
    x = ((np.asarray(images, np.float32) + 1.0) / 2.0 - mean) / std
    return np.asarray(extractor.predict(x, verbose=0, batch_size=128), np.float64)


def scores(real_f: np.ndarray, real_c: np.ndarray, fake_f: np.ndarray, fake_c: np.ndarray,
           names: list[str], k: int = K) -> dict[str, float]:
    """FD, precision, recall (all classes pooled), coverage per class and its minimum."""
    row = {"fd": frechet_distance(real_f, fake_f)} | precision_recall(real_f, fake_f, k)
    cover = class_coverage(real_f, real_c, fake_f, fake_c, k)
    row |= {f"coverage_{names[c]}": v for c, v in cover.items()}
    finite = [v for v in cover.values() if np.isfinite(v)]
    row["coverage_min"] = float(min(finite)) if finite else float("nan")
    return row
