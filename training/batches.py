"""Batch-end soft sensors from a historian export of batches (``data.batch``): one target per
batch (a batch-end quality or yield), estimated from the batch *so far*.

**Batches.** Consecutive rows with one value of ``data.batch.id_column`` are one batch; each
batch is put on its own grid (sample-and-hold within the batch, never across), so no window
ever holds rows of two batches. An id that comes back after another batch is an error.

**Target.** Per batch: the ``data.batch.targets`` table (id column, target column), or the
last value of the target column within the batch's rows. Batches without one are dropped
(counted).

**Early prediction.** Each batch gives one sample per share K of ``soft_sensor.early_percent``:
its first ``ceil(K/100 · nominal)`` rows (``nominal``: the median batch length on the grid),
made a window by :func:`edge_runtime.batch_tracker.early_window` (the gateway's own function:
the last ``window.length`` rows plus a progress channel, front-padded while shorter).

**Splits.** Whole batches: ``split.by: group`` (GroupKFold on the batch id, the existing
:mod:`training.label_splits`), or ``split.by: time`` (batches in start order, the fractions
cut between batches). The samples sit on a *virtual grid* — every batch preceded by
``window.length − 1`` padding rows of its own — so the existing purge and leak check apply
unchanged, and :func:`check_within_batches` fails the run if a window reaches across a batch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from edge_runtime.batch_tracker import PROGRESS, BatchSpec, early_rows, early_window
from edge_runtime.validation import ConfigError
from training.config import TrainConfig, export_columns
from training.historian import align, epoch_seconds, gaps, import_export
from training.label_splits import LabelSplits, LeakError, check_no_leak, split_labels


def fail(field: str, message: str) -> None:
    raise ConfigError(f"invalid training config\n  {field}: {message}")


@dataclass
class Batch:
    """One batch on its own grid: rows (n, F) in engineering units, NaN in gaps."""

    id: float
    start_s: float
    rows: np.ndarray
    target: float  # NaN: none


@dataclass
class BatchData:
    batches: list[Batch]  # with a target, in start order
    tags: list[str]  # model inputs from the export (the phase included), not the progress
    units: list[str]
    unit: str  # the target's
    nominal_rows: int
    without_target: int
    report: dict


@dataclass
class Samples:
    """Every (batch, K) sample: windows (N, L, F + 1) in engineering units, the batch-end
    value, the batch id, K, and the window's last row on the virtual grid."""

    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    percent: np.ndarray
    stamps: np.ndarray  # the batch's start (epoch s): time splits order batches by it
    ends: np.ndarray
    grid_s: np.ndarray  # virtual grid times (padding rows before each batch's start)
    row_batch: np.ndarray  # batch id of each virtual grid row


def input_tags(config: TrainConfig) -> list[str]:
    """``data.tags`` (plus the phase column when declared), or every export column but the
    timestamp, the batch id and the target."""
    data, batch = config.data, config.data.batch
    if data.tags:
        extra = [batch.phase_column] if batch.phase_column and \
            batch.phase_column not in data.tags else []
        return [*data.tags, *extra]
    skip = {data.timestamp_column, batch.id_column, config.soft_sensor.target}
    return [c for c in export_columns(data.path, lambda m: fail("data.path", m))
            if c not in skip]


def load_batches(config: TrainConfig) -> BatchData:
    """The export cut into batches, each on its own grid, with its target."""
    data, batch, target = config.data, config.data.batch, config.soft_sensor.target
    tags = input_tags(config)
    wanted = [*tags, batch.id_column, *([] if batch.targets else [target])]
    export = import_export(data.path, data.timestamp_column, wanted, sep=data.sep,
                           decimal=data.decimal, timestamp_format=data.timestamp_format,
                           timezone=data.timezone, bad_values=data.bad_values)
    frame = export.frame
    ids = pd.to_numeric(frame[batch.id_column], errors="coerce").to_numpy(np.float64)
    if not np.isfinite(ids).all():
        fail("data.batch.id_column", f"{int((~np.isfinite(ids)).sum())} of {len(ids)} rows "
             f"have no readable batch id in {batch.id_column!r} (numbers only)")
    cuts = np.flatnonzero(np.diff(ids) != 0) + 1
    starts, stops = np.r_[0, cuts], np.r_[cuts, len(ids)]
    run_ids = ids[starts]
    if len(np.unique(run_ids)) < len(run_ids):
        again = run_ids[np.flatnonzero(pd.Series(run_ids).duplicated().to_numpy())[0]]
        fail("data.batch.id_column", f"batch {again:g} appears again after another batch: "
             "each batch must be one run of consecutive rows")
    targets = _targets(config, frame, ids, starts, stops)
    batches = []
    for a, b, bid in zip(starts, stops, run_ids, strict=True):
        part = frame.iloc[a:b]
        _, rows = align(part, data.timestamp_column, tags, config.window)
        batches.append(Batch(float(bid), float(epoch_seconds(part[data.timestamp_column])[0]),
                             rows, targets.get(float(bid), np.nan)))
    kept = [b for b in batches if np.isfinite(b.target)]
    if not kept:
        fail("soft_sensor.target", f"none of the {len(batches)} batches has a value of "
             f"{target!r} ({'in ' + str(batch.targets) if batch.targets else 'in its rows'}"
             f"; ids {run_ids[:3].tolist()}…): no batch-end value aligns with a batch")
    nominal = int(np.median([len(b.rows) for b in batches]))
    report = _batch_quality(export.report, frame, data.timestamp_column, tags,
                            list(zip(starts, stops, strict=True)), batches,
                            config.window.max_gap_s)
    return BatchData(kept, tags, [data.units.get(t, "") for t in tags],
                     config.soft_sensor.unit or data.units.get(target, ""), nominal,
                     len(batches) - len(kept), report)


def _batch_quality(report: dict, frame: pd.DataFrame, timestamp_column: str, tags: list[str],
                   bounds: list[tuple[int, int]], batches: list[Batch], max_gap_s: float
                   ) -> dict:
    """The import report completed as for a series export, per batch: gaps counted within
    each batch (the idle time between two batches is not a gap), the valid share over the
    batches' grids. Input tags only: the target column is empty between batch ends by
    design, and unreadable batch ids are refused above."""
    report = report | {"max_gap_s": max_gap_s,
                       "tags": {t: dict(report["tags"][t]) for t in tags}}
    rows = np.concatenate([b.rows for b in batches])
    for i, tag in enumerate(tags):
        within = [gaps(frame.iloc[a:b], timestamp_column, tag, max_gap_s) for a, b in bounds]
        report["tags"][tag] |= {"gaps": sum(g["gaps"] for g in within),
                                "longest_gap_s": max(g["longest_gap_s"] for g in within),
                                "valid_share": float(np.isfinite(rows[:, i]).mean())}
    return report


def _targets(config: TrainConfig, frame: pd.DataFrame, ids: np.ndarray, starts: np.ndarray,
             stops: np.ndarray) -> dict[float, float]:
    batch, target = config.data.batch, config.soft_sensor.target
    if batch.targets is None:
        values = pd.to_numeric(frame[target], errors="coerce").to_numpy(np.float64)
        out = {}
        for a, b in zip(starts, stops, strict=True):
            finite = np.flatnonzero(np.isfinite(values[a:b]))
            if len(finite):
                out[float(ids[a])] = float(values[a + finite[-1]])
        return out
    table = pd.read_csv(batch.targets)
    for column in (batch.id_column, target):
        if column not in table.columns:
            fail("data.batch.targets", f"no column {column!r} in {batch.targets} (there: "
                 f"{list(table.columns)})")
    t = table[[batch.id_column, target]].apply(pd.to_numeric, errors="coerce").dropna()
    return dict(zip(t[batch.id_column].astype(float), t[target].astype(float), strict=True))


def make_samples(data: BatchData, config: TrainConfig) -> Samples:
    """One window per batch and share K; a batch shorter than the largest K needs is an
    error naming ``soft_sensor.early_percent``."""
    L, period = config.window.length, config.window.period_s
    percents = sorted(config.soft_sensor.early_percent)
    need = early_rows(percents[-1], data.nominal_rows)
    short = [b for b in data.batches if len(b.rows) < need]
    if short:
        fail("soft_sensor.early_percent", f"{percents[-1]:g} % of the nominal batch "
             f"({data.nominal_rows} rows of {period:g} s) is {need} rows, but "
             f"{len(short)} batch(es) are shorter (batch {short[0].id:g}: "
             f"{len(short[0].rows)} rows): lower the share, or drop those batches")
    xs, ys, groups, pct, stamps, ends, grid, row_batch = [], [], [], [], [], [], [], []
    offset = 0
    for b in data.batches:
        n = len(b.rows)
        grid.append(b.start_s + period * np.arange(-(L - 1), n))
        row_batch.append(np.full(L - 1 + n, b.id))
        for k in percents:
            rows = early_rows(k, data.nominal_rows)
            xs.append(early_window(b.rows[:rows], L, data.nominal_rows))
            ys.append(b.target)
            groups.append(b.id)
            pct.append(k)
            stamps.append(b.start_s)
            ends.append(offset + L - 1 + rows - 1)
        offset += L - 1 + n
    return Samples(np.stack(xs), np.array(ys), np.array(groups), np.array(pct),
                   np.array(stamps), np.array(ends, np.int64), np.concatenate(grid),
                   np.concatenate(row_batch))


def split_batches(s: Samples, config: TrainConfig) -> LabelSplits:
    """Whole batches to each set (group: GroupKFold; time: by start, cut between batches),
    then the leak check and the within-batch check (before any training)."""
    L = config.window.length
    if config.split.by == "group":
        splits = split_labels(s.ends, s.stamps, s.groups, config.split, L)
    else:
        splits = time_split_batches(s, config.split.train, config.split.val)
    check_no_leak(splits, s.ends, L, s.grid_s, s.groups)
    check_within_batches(s.ends, L, s.row_batch, s.grid_s)
    return splits


def time_split_batches(s: Samples, train: float, val: float) -> LabelSplits:
    order = np.unique(s.stamps)  # batch starts, ascending
    a, b = int(len(order) * train), int(len(order) * (train + val))
    parts = [np.flatnonzero(np.isin(s.stamps, order[i:j])) for i, j in
             ((0, a), (a, b), (b, len(order)))]
    for name, idx in zip(("train", "val", "test"), parts, strict=True):
        if not len(idx):
            fail("split", f"no {name} batches ({len(order)} batches): more batches, or "
                 "other split fractions")
    return LabelSplits(*parts)


def check_within_batches(ends: np.ndarray, window: int, row_batch: np.ndarray,
                         grid_s: np.ndarray) -> None:
    """Fail (:class:`LeakError`) when a window holds rows of two batches."""
    first = ends - window + 1
    if (first < 0).any():
        i = int(np.argmax(first < 0))
        raise LeakError(f"leak: the window ending at row {ends[i]} starts before the data")
    crossing = row_batch[first] != row_batch[ends]
    if crossing.any():
        i = int(np.flatnonzero(crossing)[0])
        from edge_runtime.payloads import iso_ms

        raise LeakError(f"leak: the window ending at {iso_ms(grid_s[ends[i]])} (batch "
                        f"{row_batch[ends[i]]:g}) starts in batch {row_batch[first[i]]:g}: "
                        f"{int(crossing.sum())} window(s) cross a batch boundary")


def batch_spec(config: TrainConfig, data: BatchData) -> BatchSpec:
    batch = config.data.batch
    return BatchSpec(id_tag=batch.id_column, phase_tag=batch.phase_column,
                     nominal_rows=data.nominal_rows,
                     early_percent=sorted(config.soft_sensor.early_percent))


def model_tags(data: BatchData) -> tuple[list[str], list[str]]:
    """The model's input channels and units: the export's inputs, then the progress."""
    return [*data.tags, PROGRESS], [*data.units, "fraction"]


def fingerprint(x: np.ndarray, y: np.ndarray, tags: list[str]) -> str:
    """SHA-256 of the training windows and batch-end values (recorded in the bundle)."""
    return hashlib.sha256(np.ascontiguousarray(x, np.float64).tobytes()
                          + np.asarray(y, np.float64).tobytes()
                          + ",".join(tags).encode()).hexdigest()
