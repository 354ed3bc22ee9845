"""A soft sensor's labels: lab or analyzer values at their own times, sparse, each paired with
the window of process tags its dead time points at (:func:`edge_runtime.soft_sensing.
window_ends`, the rule the gateway uses for residuals).

From a historian export the target is a column that holds a value only at the rows of its
samples (empty elsewhere): each non-empty cell is one label, stamped with its row's time.
From the simulator it is the tank's conversion (:func:`training.simulator.lab_samples`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.soft_sensing import window_ends
from edge_runtime.validation import ConfigError
from training.config import DataConfig, TrainConfig, export_columns
from training.historian import GridData, epoch_seconds, import_export
from training.simulator import LAB_TAG, lab_samples, simulate


@dataclass
class Labels:
    """Lab values (engineering units) with their stamps and, for group splits, group ids."""

    stamps: np.ndarray  # epoch seconds, when each value became known
    values: np.ndarray
    groups: np.ndarray | None
    unit: str


@dataclass
class Paired:
    """The labels that have a complete, gap-free window: ``ends`` index the grid rows."""

    labels: Labels
    ends: np.ndarray
    dropped_no_window: int  # before the first window, or off the grid
    dropped_gap: int  # their window holds a gap (longer than window.max_gap_s) not filled


def fail(field: str, message: str) -> None:
    raise ConfigError(f"invalid training config\n  {field}: {message}")


def input_data(config: TrainConfig) -> DataConfig:
    """``data`` with its tags set to the model inputs: ``data.tags``, or every column but the
    timestamp, the target and the group column."""
    data = config.data
    if data.tags or data.source == "simulator":
        return data
    columns = export_columns(data.path, lambda m: fail("data.path", m))
    skip = {data.timestamp_column, config.soft_sensor.target, config.split.group_column}
    return data.model_copy(update={"tags": [c for c in columns if c not in skip]})


def load_labels(config: TrainConfig) -> Labels:
    """The lab values of the configured source, in time order."""
    s, data = config.soft_sensor, config.data
    if s.kind == "classification":
        from training.lab_classes import load_class_labels

        return load_class_labels(config, fail)
    if data.source == "simulator":
        if s.target != LAB_TAG[0]:
            fail("soft_sensor.target", f"the simulator's lab value is {LAB_TAG[0]!r}, "
                 f"not {s.target!r}")
        run = simulate(data.simulator.steps, config.window.period_s, seed=data.simulator.seed)
        stamps, values = lab_samples(run, s.lab_every_s, s.dead_time_s, s.lab_noise,
                                     data.simulator.seed)
        return Labels(stamps, values, None, s.unit or LAB_TAG[1])
    group = config.split.group_column if config.split.by == "group" else None
    export = import_export(data.path, data.timestamp_column, [s.target, *([group] if group
                           else [])], sep=data.sep, decimal=data.decimal,
                           timestamp_format=data.timestamp_format, timezone=data.timezone,
                           bad_values=data.bad_values)
    frame = export.frame
    values = frame[s.target].to_numpy(np.float64)
    has = np.isfinite(values)
    stamps = epoch_seconds(frame[data.timestamp_column])[has]
    groups = None
    if group:
        groups = frame[group].to_numpy(np.float64)[has]
        if not np.isfinite(groups).all():
            fail("split.group_column", f"{int((~np.isfinite(groups)).sum())} of {len(groups)} "
                 f"labels have no readable group id in {group!r} (numbers only)")
    return Labels(stamps, values[has], groups, s.unit or data.units.get(s.target, ""))


def pair(labels: Labels, grid: GridData, config: TrainConfig) -> Paired:
    """Each label with the window ending where its dead time points; labels without a
    complete gap-free window are dropped (counted). None left is an error naming the field,
    before any training."""
    s, w = config.soft_sensor, config.window
    ends = window_ends(grid.grid_s, labels.stamps, s.dead_time_s, w.period_s)
    on_grid = ends >= w.length - 1
    finite = np.isfinite(grid.rows).all(axis=1)
    bad_rows = np.concatenate([[0], np.cumsum(~finite)])  # gaps among rows [0, i)
    gap = np.zeros(len(ends), bool)
    e = ends[on_grid]
    gap[on_grid] = bad_rows[e + 1] - bad_rows[e + 1 - w.length] > 0
    if s.missing != "hold":  # filled as at the edge, unless a tag is silent all window long
        for i in np.flatnonzero(gap):
            part = grid.rows[ends[i] - w.length + 1:ends[i] + 1]
            gap[i] = not np.isfinite(part).any(axis=0).all()
    keep = on_grid & ~gap
    if not keep.any():
        span = (f"{_iso(labels.stamps.min())} .. {_iso(labels.stamps.max())}"
                if len(labels.stamps) else "none")
        fail("soft_sensor.target", f"none of the {len(labels.stamps)} values of "
             f"{s.target!r} (stamped {span}) aligns with a complete window of the inputs "
             f"({_iso(grid.grid_s[0])} .. {_iso(grid.grid_s[-1])}; window "
             f"{w.length} x {w.period_s:g} s, soft_sensor.dead_time_s {s.dead_time_s:g} s)")
    kept = Labels(labels.stamps[keep], labels.values[keep],
                  None if labels.groups is None else labels.groups[keep], labels.unit)
    return Paired(kept, ends[keep], int((~on_grid).sum()), int(gap.sum()))


def _iso(epoch_s: float) -> str:
    from edge_runtime.payloads import iso_ms

    return iso_ms(float(epoch_s))
