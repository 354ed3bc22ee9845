"""Splits of a soft sensor's labels that never leak, and the check that fails a run when one
would.

``split.by: time``: labels in time order, the first ``train`` share for training, the next
``val`` share for validation (early stopping), the rest for test. ``split.by: group``:
GroupKFold (scikit-learn) over ``split.group_column`` — whole groups (batches, campaigns,
grades) held out; fold ``test_fold`` is the test set, the fold before it the validation set.

Windows reach back ``window`` rows, so a held-out label's window can share input rows with a
training label's window at a boundary: such held-out labels are purged (counted). The leak
check then holds the three sets to: no group in two sets, no window in two sets, no input row
in the windows of two sets. Any breach is a :class:`LeakError` that fails the run before
training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.payloads import iso_ms
from edge_runtime.validation import ConfigError
from training.config import SplitConfig

SETS = ("train", "val", "test")


class LeakError(ValueError):
    """A group, a window or an input row is on both sides of a split."""


@dataclass
class LabelSplits:
    """Label indices of each set, and how many held-out labels were purged."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    purged: int = 0

    def sets(self) -> dict[str, np.ndarray]:
        return {"train": self.train, "val": self.val, "test": self.test}


def split_labels(ends: np.ndarray, stamps: np.ndarray, groups: np.ndarray | None,
                 split: SplitConfig, window: int) -> LabelSplits:
    """The configured split, purged; errors name the field (before any training)."""
    by_group = split.by == "group"
    splits = group_split(groups, split) if by_group else time_split(stamps, split)
    splits = purge(splits, ends, window)
    for name, idx in splits.sets().items():
        if not len(idx):
            raise ConfigError(f"invalid training config\n  split: no {name} labels left "
                              f"({len(ends)} labels, {splits.purged} purged at boundaries): "
                              "more labels, or other split fractions")
    return splits


def time_split(stamps: np.ndarray, split: SplitConfig) -> LabelSplits:
    order = np.argsort(stamps, kind="stable")
    n = len(order)
    a, b = int(n * split.train), int(n * (split.train + split.val))
    return LabelSplits(order[:a], order[a:b], order[b:])


def group_split(groups: np.ndarray | None, split: SplitConfig) -> LabelSplits:
    from sklearn.model_selection import GroupKFold

    field = f"split.group_column {split.group_column!r}"
    distinct = np.unique(groups) if groups is not None else np.array([])
    if len(distinct) < 2:
        raise ConfigError(f"invalid training config\n  split.group_column: {field} holds "
                          f"{len(distinct)} group(s) among the labels: a group split needs "
                          "several (or split by time)")
    if len(distinct) < split.folds:
        raise ConfigError(f"invalid training config\n  split.folds: {split.folds} folds but "
                          f"{field} holds {len(distinct)} groups: at most {len(distinct)}")
    placeholder = np.zeros((len(groups), 1))
    folds = [test for _, test in GroupKFold(n_splits=split.folds).split(placeholder,
                                                                         groups=groups)]
    t = split.test_fold % split.folds
    v = (t - 1) % split.folds
    train = np.sort(np.concatenate([f for i, f in enumerate(folds) if i not in (t, v)]))
    return LabelSplits(train, np.sort(folds[v]), np.sort(folds[t]))


def group_folds(ends: np.ndarray, groups: np.ndarray, split: SplitConfig,
                window: int) -> list[LabelSplits]:
    """Every GroupKFold fold held out once against all the others (no validation set), its
    labels purged where their windows touch the others' rows: the cross-validation of the
    references over the whole data (the network is scored on the configured split only)."""
    from sklearn.model_selection import GroupKFold

    placeholder = np.zeros((len(groups), 1))
    empty = np.array([], dtype=np.int64)
    return [purge(LabelSplits(np.sort(train), empty, np.sort(test)), ends, window)
            for train, test in GroupKFold(n_splits=split.folds).split(placeholder,
                                                                      groups=groups)]


def covered_rows(ends: np.ndarray, window: int, n_rows: int) -> np.ndarray:
    """Boolean (n_rows,): rows inside any of the windows ending at ``ends``."""
    marks = np.zeros(n_rows + 1, np.int64)
    np.add.at(marks, ends - window + 1, 1)
    np.add.at(marks, ends + 1, -1)
    return np.cumsum(marks)[:n_rows] > 0


def purge(splits: LabelSplits, ends: np.ndarray, window: int) -> LabelSplits:
    """Drop validation labels whose window shares a row with a training window, and test
    labels whose window shares one with a training or validation window."""
    n_rows = int(ends.max()) + 1 if len(ends) else 0
    taken = covered_rows(ends[splits.train], window, n_rows)
    kept = {"train": splits.train}
    purged = 0
    for name in ("val", "test"):
        idx = getattr(splits, name)
        hits = np.concatenate([[0], np.cumsum(taken)])
        e = ends[idx]
        clash = hits[e + 1] - hits[e + 1 - window] > 0
        kept[name] = idx[~clash]
        purged += int(clash.sum())
        taken = taken | covered_rows(ends[kept[name]], window, n_rows)
    return LabelSplits(kept["train"], kept["val"], kept["test"], purged)


def check_no_leak(splits: LabelSplits, ends: np.ndarray, window: int, grid_s: np.ndarray,
                  groups: np.ndarray | None = None) -> None:
    """Fail (:class:`LeakError`) when a group, a window or an input row is in two sets."""
    sets = splits.sets()
    n_rows = len(grid_s)
    for i, a in enumerate(SETS):
        for b in SETS[i + 1:]:
            if groups is not None:
                both = np.intersect1d(groups[sets[a]], groups[sets[b]])
                if len(both):
                    raise LeakError(f"leak: group(s) {both[:5].tolist()} of the group column "
                                    f"are in both {a} and {b}")
            same = np.intersect1d(ends[sets[a]], ends[sets[b]])
            if len(same):
                raise LeakError(f"leak: the window ending at {iso_ms(grid_s[same[0]])} (row "
                                f"{same[0]}) is in both {a} and {b} ({len(same)} such)")
            rows = (covered_rows(ends[sets[a]], window, n_rows)
                    & covered_rows(ends[sets[b]], window, n_rows))
            if rows.any():
                first = int(np.argmax(rows))
                raise LeakError(f"leak: input row {first} ({iso_ms(grid_s[first])}) is in "
                                f"windows of both {a} and {b} ({int(rows.sum())} rows)")
