"""The classical references a classification soft sensor must beat, on the same test labels
and the same leak-checked splits as the network:

- **logistic regression** (scikit-learn, multinomial) on the flattened scaled windows, fitted
  on the training labels only; its inverse regularisation ``C`` is the one of :data:`C_GRID`
  with the lowest cross-entropy on the validation labels (the test labels never choose it) —
  the linear classifier of the chemometrics literature (PLS-DA's better-calibrated cousin);
- **last measured class**: the newest lab class already known at the process time of each
  test label (:func:`training.soft_references.last_value`, the regression rule); labels with
  none before them are left out (``last_class_n`` says how many were scored);
- **majority class**: the most frequent training class, for every window (what a model that
  learned nothing scores; accuracy alone flatters it on an imbalanced grade, balanced accuracy
  and macro F1 do not).

Each is reported as ``<name>_accuracy``, ``<name>_balanced_accuracy`` and ``<name>_f1_macro``;
with a group split also pooled over every fold held out once (:func:`cross_validated`), as the
regression references are.
"""

from __future__ import annotations

import warnings

import numpy as np

from training.soft_references import last_value

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)  # strong to weak regularisation
METRICS = ("accuracy", "balanced_accuracy", "f1_macro")


def label_metrics(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy, balanced accuracy (mean recall over the classes present in ``labels``) and
    macro F1 of predicted class indices ``pred``."""
    from sklearn.metrics import balanced_accuracy_score, f1_score

    labels = np.asarray(labels).reshape(-1).astype(int)
    pred = np.asarray(pred).reshape(-1).astype(int)
    if not len(labels):
        return {"accuracy": float("nan"), "balanced_accuracy": float("nan"), "f1_macro": 0.0}
    with warnings.catch_warnings():  # a class predicted but absent from `labels` has no recall
        warnings.simplefilter("ignore", UserWarning)
        balanced = balanced_accuracy_score(labels, pred)
    return {"accuracy": float(np.mean(pred == labels)), "balanced_accuracy": float(balanced),
            "f1_macro": float(f1_score(labels, pred, labels=range(n_classes),
                                       average="macro", zero_division=0))}


def cross_entropy(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean −log p(true class) of probabilities ``probs`` (N, C), ``y`` class indices (the
    loss every classification soft sensor is chosen and explained by)."""
    picked = np.asarray(probs)[np.arange(len(y)), np.asarray(y).reshape(-1).astype(int)]
    return float(-np.log(np.clip(picked, 1e-7, 1.0)).mean())


def _probabilities(model, x: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, n_classes) from a fitted classifier that may have seen only some classes."""
    out = np.zeros((len(x), n_classes))
    out[:, model.classes_.astype(int)] = model.predict_proba(x)
    return out


def logistic(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray,
             val_y: np.ndarray, test_x: np.ndarray, n_classes: int
             ) -> tuple[np.ndarray, float | None]:
    """(test probabilities (N, n_classes), the chosen C): one fit per C of :data:`C_GRID` on
    the training windows (C rising, each fit starting from the one before: the path costs
    little more than its last fit), the lowest validation cross-entropy wins. One class in
    training: that class, no C (None)."""
    from sklearn.linear_model import LogisticRegression

    flat = lambda a: np.asarray(a, np.float64).reshape(len(a), -1)  # noqa: E731
    y = np.asarray(train_y).reshape(-1).astype(int)
    val = np.asarray(val_y).reshape(-1).astype(int)
    if len(np.unique(y)) < 2:  # one training class: it is the answer, there is nothing to fit
        out = np.zeros((len(test_x), n_classes))
        out[:, y[0]] = 1.0
        return out, None
    model = LogisticRegression(max_iter=500, warm_start=True)
    best = (np.inf, None, None)
    for c in sorted(C_GRID):
        with warnings.catch_warnings():  # few labels, many features: lbfgs may stop early
            warnings.simplefilter("ignore")
            model.set_params(C=c).fit(flat(train_x), y)
        probs = _probabilities(model, flat(val_x), n_classes)
        loss = cross_entropy(probs, val)
        if loss < best[0]:
            best = (loss, _probabilities(model, flat(test_x), n_classes), c)
    return best[1], best[2]


def reference_metrics(stamps: np.ndarray, values: np.ndarray, dead_time_s: float,
                      splits, arrays: tuple, n_classes: int) -> dict[str, float]:
    """``logistic_*``, ``last_class_*`` and ``majority_*`` (:data:`METRICS`) on the test
    labels; ``values``: class index per label; ``splits``: the run's
    :class:`training.label_splits.LabelSplits`; ``arrays``: the scaled (x, y, val_x, val_y,
    test_x, test_y) the network was trained and scored on."""
    x, y, val_x, val_y, test_x, _ = arrays
    test_labels = values[splits.test].astype(int)
    out: dict[str, float] = {}
    probs, c = logistic(x, y, val_x, val_y, test_x, n_classes)
    out |= _named("logistic", label_metrics(test_labels, probs.argmax(1), n_classes))
    if c is not None:
        out["logistic_C"] = c
    scored, last = last_value(stamps, values, dead_time_s, splits.test)
    out["last_class_n"] = float(len(scored))
    if len(scored):
        out |= _named("last_class", label_metrics(values[scored], last, n_classes))
    train_labels = values[splits.train].astype(int)
    majority = int(np.bincount(train_labels, minlength=n_classes).argmax())
    out |= _named("majority", label_metrics(test_labels, np.full(len(test_labels), majority),
                                            n_classes))
    return out


def cross_validated(x: np.ndarray, values: np.ndarray, stamps: np.ndarray,
                    dead_time_s: float, folds: list, c: float | None,
                    n_classes: int) -> dict[str, float]:
    """The three references pooled over every fold held out once (``folds``:
    :class:`training.label_splits.LabelSplits` with train and test; ``x``: the scaled window
    of every label): ``logistic_cv_*`` (``C`` as chosen on the configured validation split,
    the flat windows standardised on each fold's training labels only), ``last_class_cv_*``,
    ``majority_cv_*`` (each fold's own training majority), and ``cv_folds``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    labels = values.astype(int)
    truth, logistic_pred, last_truth, last_pred, majority_pred = [], [], [], [], []
    for fold in folds:
        flat = x[fold.train].reshape(len(fold.train), -1)
        scaler = StandardScaler().fit(flat)
        test = scaler.transform(x[fold.test].reshape(len(fold.test), -1))
        train_labels = labels[fold.train]
        majority = int(np.bincount(train_labels, minlength=n_classes).argmax())
        if c is None or len(np.unique(train_labels)) < 2:
            logistic_pred.append(np.full(len(fold.test), majority))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = LogisticRegression(C=c, max_iter=500).fit(scaler.transform(flat),
                                                                  train_labels)
            logistic_pred.append(model.predict(test))
        majority_pred.append(np.full(len(fold.test), majority))
        truth.append(labels[fold.test])
        scored, last = last_value(stamps, values, dead_time_s, fold.test)
        last_truth.append(labels[scored])
        last_pred.append(last)
    out = {"cv_folds": float(len(folds))}
    for name, t, pred in (("logistic_cv", truth, logistic_pred),
                          ("last_class_cv", last_truth, last_pred),
                          ("majority_cv", truth, majority_pred)):
        out |= _named(name, label_metrics(np.concatenate(t), np.concatenate(pred), n_classes))
    return out


def _named(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in metrics.items()}
