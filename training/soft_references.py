"""The classical references a soft sensor must beat, on the same test labels:

- **last measured value**: what the operator knows without a soft sensor — for a label
  describing the process at ``τ``, the newest lab value already known at ``τ`` (stamped before
  it). Labels with none before them are left out (``last_value_n`` says how many
  were scored);
- **PLS** (scikit-learn ``PLSRegression``) on the flattened scaled windows, fitted on the
  training labels only — the linear soft sensor of the chemometrics literature.
"""

from __future__ import annotations

import numpy as np

from training.metrics import regression_metrics


def last_value(stamps: np.ndarray, values: np.ndarray, dead_time_s: float,
               test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(test label indices scored, their last-known-value predictions)."""
    order = np.argsort(stamps, kind="stable")
    sorted_stamps = stamps[order]
    # strictly before the process time: with no dead time a label must not predict itself
    known = np.searchsorted(sorted_stamps, stamps[test] - dead_time_s, side="left") - 1
    ok = known >= 0
    return test[ok], values[order[known[ok]]]


def pls_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                components: int) -> np.ndarray:
    from sklearn.cross_decomposition import PLSRegression

    flat = train_x.reshape(len(train_x), -1)
    n = max(1, min(components, flat.shape[1], len(flat) - 1))
    pls = PLSRegression(n_components=n, scale=False).fit(flat, train_y)
    return pls.predict(test_x.reshape(len(test_x), -1)).reshape(-1)


def cross_validated(x: np.ndarray, values: np.ndarray, stamps: np.ndarray, dead_time_s: float,
                    folds: list, components: int) -> dict[str, float]:
    """PLS and last-value RMSE and R² pooled over every fold held out once (``folds``:
    :class:`training.label_splits.LabelSplits` with train and test), PLS standardising on
    each fold's training labels only (``scale=True``): ``pls_cv_*``, ``last_value_cv_*``."""
    from sklearn.cross_decomposition import PLSRegression

    truth, pls_pred, last_truth, last_pred = [], [], [], []
    for fold in folds:
        flat = x[fold.train].reshape(len(fold.train), -1)
        n = max(1, min(components, flat.shape[1], len(flat) - 1))
        pls = PLSRegression(n_components=n, scale=True).fit(flat, values[fold.train])
        pls_pred.append(pls.predict(x[fold.test].reshape(len(fold.test), -1)).reshape(-1))
        truth.append(values[fold.test])
        scored, last = last_value(stamps, values, dead_time_s, fold.test)
        last_truth.append(values[scored])
        last_pred.append(last)
    out = {"cv_folds": float(len(folds))}
    for name, t, p in (("pls_cv", truth, pls_pred), ("last_value_cv", last_truth, last_pred)):
        m = regression_metrics(np.concatenate(t), np.concatenate(p))
        out |= {f"{name}_rmse": m["rmse"], f"{name}_r2": m["r2"]}
    return out


def reference_metrics(stamps: np.ndarray, values: np.ndarray, dead_time_s: float,
                      test: np.ndarray, train_x: np.ndarray, train_y: np.ndarray,
                      test_x: np.ndarray, components: int
                      ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """``pls_*`` and ``last_value_*`` RMSE, MAE and R² on the test labels (engineering
    units; ``train_y``/``values`` in them too), and each reference's estimates of the test
    labels (NaN where the last value had none), for the plot."""
    out: dict[str, float] = {}
    pls = pls_predict(train_x, train_y, test_x, components)
    for key, value in regression_metrics(values[test], pls).items():
        if key != "mse":
            out[f"pls_{key}"] = value
    scored, last = last_value(stamps, values, dead_time_s, test)
    out["last_value_n"] = float(len(scored))
    if len(scored):
        for key, value in regression_metrics(values[scored], last).items():
            if key != "mse":
                out[f"last_value_{key}"] = value
    last_all = np.full(len(test), np.nan)
    last_all[np.isin(test, scored)] = last
    return out, {"PLS": pls, "last lab value": last_all}
