"""The data a tuning trial sees: training and validation windows of a soft sensor, never test.

The labels are paired and split exactly as `procedge train` does (:mod:`training.tasks.
soft_sensor`: same pairing, same split and purge, same leak check, scaler on training rows
only), so the validation set a trial is scored on is the one training will use. Right after
the split the test split is *blanked*: its label values become NaN, and so does every grid
row that no training or validation window covers. Nothing after that can draw on it, and
:func:`blind_windows` refuses a window that holds a blanked value, so a leak would fail the
search instead of flattering it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.scaling import StandardScaler
from edge_runtime.soft_sensing import fill_gaps
from training.config import TrainConfig
from training.historian import GridData, load_grid
from training.lab_labels import Labels, input_data, load_labels, pair
from training.label_splits import check_no_leak, covered_rows, split_labels


class TestSplitRead(RuntimeError):
    """A tuning window reached a blanked (test-split) row or label."""


@dataclass
class TrialData:
    """Scaled windows and targets of the training and validation labels for one window
    length (a classifier's targets: class indices, unscaled), the target's scale (val RMSE in
    engineering units = sqrt(val MSE) · scale; 1 for classes), and how many test labels were
    blanked."""

    x: np.ndarray
    y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    scale: float
    blanked_labels: int
    blanked_rows: int


@dataclass
class Blinded:
    """Labels and grid rows with the test split blanked (NaN)."""

    values: np.ndarray
    rows: np.ndarray
    blank: np.ndarray  # bool per row: blanked (covered by no training or validation window)
    train: np.ndarray  # label indices
    val: np.ndarray
    ends: np.ndarray  # grid row of each label's window end
    stamps: np.ndarray  # epoch seconds of each label


class TuneSource:
    """Loads the grid and the labels once; builds :class:`TrialData` per window length
    (cached: a search tries few lengths, many times)."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.grid = load_grid(input_data(config), config.window)
        self.labels = load_labels(config)
        self._cache: dict[int, TrialData] = {}

    def get(self, length: int) -> TrialData:
        if length not in self._cache:
            self._cache[length] = self._build(length)
        return self._cache[length]

    def _build(self, length: int) -> TrialData:
        config = self.config.model_copy(deep=True)
        config.window.length = length
        blinded = blind(self.labels, self.grid, config)
        rows, L = blinded.rows, length
        train_rows = covered_rows(blinded.ends[blinded.train], L, len(rows))
        scaler = StandardScaler.fit(rows[train_rows])
        scaled = scaler.transform(rows)
        values = blinded.values[blinded.train]
        mean, scale = float(values.mean()), float(values.std())
        scale = scale if scale > 1e-12 else 1.0
        if config.soft_sensor.kind == "classification":  # class indices, as training keeps them
            mean, scale = 0.0, 1.0
        missing = config.soft_sensor.missing

        def windows(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            x = blind_windows(scaled, blinded.ends[idx], L, missing, blinded.blank)
            y = ((blinded.values[idx] - mean) / scale).astype(np.float32)[:, None]
            if not np.isfinite(y).all():
                raise TestSplitRead("a blanked (test-split) label reached a trial")
            return x, y

        (x, y), (val_x, val_y) = windows(blinded.train), windows(blinded.val)
        return TrialData(x, y, val_x, val_y, scale,
                         int(np.isnan(blinded.values).sum()),
                         int(blinded.blank.sum()))


def blind(labels: Labels, grid: GridData, config: TrainConfig) -> Blinded:
    """Pair, split and leak-check as training does; then blank the test split."""
    L = config.window.length
    paired = pair(labels, grid, config)
    lab = paired.labels
    splits = split_labels(paired.ends, lab.stamps, lab.groups, config.split, L)
    check_no_leak(splits, paired.ends, L, grid.grid_s, lab.groups)
    values = np.asarray(lab.values, np.float64).copy()
    values[splits.test] = np.nan
    seen = covered_rows(paired.ends[np.concatenate([splits.train, splits.val])], L,
                        len(grid.rows))
    rows = np.asarray(grid.rows, np.float64).copy()
    rows[~seen] = np.nan
    return Blinded(values, rows, ~seen, splits.train, splits.val, paired.ends, lab.stamps)


def blind_windows(scaled: np.ndarray, ends: np.ndarray, length: int, missing: str,
                  blank: np.ndarray) -> np.ndarray:
    """The windows ending at ``ends``, gaps filled as at the edge; a window holding a blanked
    row is refused."""
    out = []
    for e in ends:
        part = scaled[e - length + 1:e + 1]
        if blank[e - length + 1:e + 1].any():
            raise TestSplitRead(f"the window ending at grid row {e} holds a test-split row")
        out.append(fill_gaps(part, missing, 0.0))
    return np.stack(out).astype(np.float32)
