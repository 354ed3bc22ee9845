"""How good synthetic windows are, measured against held-apart real windows rather than looked
at (Yoon et al. 2019, TimeGAN, for the first two; Gretton et al. 2012; Naeem et al. 2020):

- ``discriminative_score``: a small classifier learns real vs synthetic on one half of each,
  and is scored on the other half: |accuracy − 0.5| (0: indistinguishable, 0.5: trivially
  told apart);
- ``predictive_scores``: a small next-step forecaster trained on synthetic windows and tested
  on real ones (TSTR), against the same forecaster trained on real training windows (TRTR);
- ``mmd2``: squared maximum mean discrepancy with an RBF kernel, bandwidth by the median
  heuristic (unbiased estimate; 0 when both come from one distribution);
- ``coverage``: per class, the share of real windows whose k-nearest-neighbour ball (among
  real windows of that class) holds a generated window of that class: a collapsed mode has
  coverage near 0 while its samples may still look fine.

All work on scaled windows (n, L, F). The two learned scores are Keras models, seeded.
"""

from __future__ import annotations

import numpy as np


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float64).reshape(len(x), -1)


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def mmd2(real: np.ndarray, fake: np.ndarray, max_n: int = 1000, seed: int = 0) -> float:
    """Unbiased MMD² with a Gaussian kernel whose bandwidth is the median pairwise distance of
    the pooled samples (at most ``max_n`` of each, drawn with ``seed``)."""
    rng = np.random.default_rng(seed)
    a, b = _flat(real), _flat(fake)
    a = a[rng.permutation(len(a))[:max_n]]
    b = b[rng.permutation(len(b))[:max_n]]
    pooled = np.concatenate([a, b])
    d = _sq_dists(pooled, pooled)
    sigma2 = float(np.median(d[np.triu_indices(len(pooled), 1)]))
    k = np.exp(-d / max(sigma2, 1e-12))
    n, m = len(a), len(b)
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
                 + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2.0 * kxy.mean())


def coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> float:
    """Share of real windows with a generated window inside their k-NN radius (Naeem et al.
    2020); both of one class. Pass real windows that do not overlap: overlapping ones are
    each other's nearest neighbours and make every radius tiny."""
    a, b = _flat(real), _flat(fake)
    k = min(k, len(a) - 1)  # fewer real windows than k + 1: the largest k there is
    if k < 1 or len(b) == 0:
        return float("nan")
    radius = np.sort(_sq_dists(a, a), axis=1)[:, k]  # column 0 is the point itself
    return float((_sq_dists(a, b).min(axis=1) <= radius).mean())


def class_coverage(real: np.ndarray, real_c: np.ndarray, fake: np.ndarray, fake_c: np.ndarray,
                   k: int = 5) -> dict[int, float]:
    """:func:`coverage` per class present in the real windows."""
    return {int(c): coverage(real[real_c == c], fake[fake_c == c], k)
            for c in np.unique(real_c)}


def _classifier(window: int, features: int, units: int):
    import keras

    return keras.Sequential([keras.Input((window, features)),
                             keras.layers.GRU(units),
                             keras.layers.Dense(1, activation="sigmoid")])


def discriminative_score(real: np.ndarray, fake: np.ndarray, seed: int = 0, epochs: int = 20,
                         units: int = 16) -> float:
    """|accuracy − 0.5| of a GRU classifier of real vs synthetic on held-out halves (equal
    numbers of each, so 0.5 is chance)."""
    import keras

    from training.keras_compile import compile_for_fit

    n = min(len(real), len(fake))
    rng = np.random.default_rng(seed)
    real = real[rng.permutation(len(real))[:n]]
    fake = fake[rng.permutation(len(fake))[:n]]
    half = n // 2
    x_train = np.concatenate([real[:half], fake[:half]]).astype(np.float32)
    y_train = np.r_[np.ones(half), np.zeros(half)].astype(np.float32)
    x_test = np.concatenate([real[half:], fake[half:]]).astype(np.float32)
    y_test = np.r_[np.ones(n - half), np.zeros(n - half)].astype(np.float32)
    keras.utils.set_random_seed(seed)
    model = _classifier(real.shape[1], real.shape[2], units)
    compile_for_fit(model, keras.optimizers.Adam(1e-3), "binary_crossentropy")
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0, shuffle=True)
    accuracy = float(((model.predict(x_test, verbose=0)[:, 0] > 0.5) == y_test).mean())
    return abs(accuracy - 0.5)


def _next_step_mae(train: np.ndarray, test: np.ndarray, seed: int, epochs: int,
                   units: int) -> float:
    """A GRU reads steps 1..L−1 of a window and predicts step L (every tag); its MAE on
    ``test``."""
    import keras

    from training.keras_compile import compile_for_fit

    keras.utils.set_random_seed(seed)
    features = train.shape[2]
    model = keras.Sequential([keras.Input((train.shape[1] - 1, features)),
                              keras.layers.GRU(units), keras.layers.Dense(features)])
    compile_for_fit(model, keras.optimizers.Adam(1e-3), "mae")
    model.fit(train[:, :-1], train[:, -1], epochs=epochs, batch_size=64, verbose=0,
              shuffle=True)
    return float(np.abs(model.predict(test[:, :-1], verbose=0) - test[:, -1]).mean())


def predictive_scores(real_train: np.ndarray, fake: np.ndarray, real_test: np.ndarray,
                      seed: int = 0, epochs: int = 20, units: int = 32) -> dict[str, float]:
    """TSTR and TRTR next-step MAE on ``real_test`` (scaled units), and their ratio."""
    tstr = _next_step_mae(fake.astype(np.float32), real_test, seed, epochs, units)
    trtr = _next_step_mae(real_train.astype(np.float32), real_test, seed, epochs, units)
    return {"tstr_mae": tstr, "trtr_mae": trtr, "tstr_over_trtr": tstr / trtr}
