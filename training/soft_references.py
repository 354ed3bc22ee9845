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
