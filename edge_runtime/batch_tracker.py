"""Batch-end soft sensors: the early-prediction window, one definition for training and for
the gateway (numpy only; no TensorFlow here).

A batch-end model estimates a value known only when the batch ends (yield, quality) from the
batch *so far*. Its window is the last ``length`` rows of the current batch — never a row of
another batch — with one channel appended, the **batch progress**: row i (0-based) of the
batch carries ``(i + 1) / nominal_rows``. While the batch is shorter than the window, the
window is padded in front with copies of its first row whose progress is 0 (so the model can
tell padding from process). Training builds each sample from the first K % of a batch
(``ceil(K / 100 · nominal_rows)`` rows) with :func:`early_window`; the gateway builds the
window of the batch it is tracking the same way, every period, once K_min % is reached.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from edge_runtime.contract import Strict

PROGRESS = "batch_progress"  # the appended channel's name in the bundle's input tags


class BatchSpec(Strict):
    """What the gateway needs to track batches and build a batch-end model's window."""

    id_tag: str = Field(description="The tag whose value names the running batch; a change "
                        "starts a new batch (the window restarts).")
    phase_tag: str | None = Field(default=None, description="The batch phase tag (a model "
                                  "input like any other), when declared.")
    nominal_rows: int = Field(gt=0, description="Rows of a typical batch on the grid (the "
                              "training batches' median): progress = rows so far / this.")
    early_percent: list[float] = Field(min_length=1, description="The batch shares (%) the "
                                       "model was trained on; estimates start at the first.")

    @property
    def first_rows(self) -> int:
        """Rows of the batch before the first estimate."""
        return early_rows(min(self.early_percent), self.nominal_rows)


def early_rows(percent: float, nominal_rows: int) -> int:
    """Rows in the first ``percent`` % of a batch of ``nominal_rows`` rows (at least one)."""
    return max(1, math.ceil(percent / 100.0 * nominal_rows - 1e-9))


def early_window(batch_rows: np.ndarray, length: int, nominal_rows: int,
                 rows_before: int = 0) -> np.ndarray:
    """(length, F + 1): the last ``length`` of ``batch_rows`` ((n, F): the batch's rows from
    its row ``rows_before`` on, 0 = its first) with the progress channel appended;
    front-padded with the first row (progress 0) while the batch is shorter than the window."""
    rows = np.asarray(batch_rows, np.float64)
    n = len(rows)
    if n == 0:
        raise ValueError("a batch window needs at least one row of the batch")
    progress = (rows_before + np.arange(1, n + 1, dtype=np.float64))[:, None] / nominal_rows
    x = np.concatenate([rows, progress], axis=1)[-length:]
    if len(x) < length:
        if rows_before:
            raise ValueError("rows_before > 0 needs at least `length` rows")
        pad = np.repeat(x[:1], length - len(x), axis=0)
        pad[:, -1] = 0.0
        x = np.concatenate([pad, x])
    return x


@dataclass
class BatchInfo:
    """Which batch a window belongs to, and how far it had run."""

    batch_id: float
    rows: int
    progress_pct: float


class BatchTracker:
    """The gateway's view of the running batch, one grid row at a time (the model's input
    tags, then the batch id tag). A new id value starts a new batch: the rows kept so far are
    dropped, so no window ever holds two batches. Rows without an id (between batches, or a
    silent id tag) belong to no batch and are counted. From the ``first_rows``-th row of a
    batch on, every row gives the early window of the batch so far."""

    def __init__(self, spec: BatchSpec, tags: list[str], window: int):
        self.spec, self.window = spec, window
        self.inputs = [t for t in tags if t != PROGRESS]
        self.buffer_tags = [*self.inputs, spec.id_tag]
        self.batch_id: float | None = None
        self.count = 0  # rows of the current batch so far
        self._tail: deque[np.ndarray] = deque(maxlen=window)
        self.batches_started = 0
        self.rows_without_id = 0
        self._info: dict[float, BatchInfo] = {}

    def add(self, grid_t: float, row: np.ndarray) -> np.ndarray | None:
        """One grid row (inputs..., id); the window to estimate from, or None (no batch, or
        fewer than ``first_rows`` rows of it yet)."""
        bid = float(row[-1])
        if not math.isfinite(bid):
            self.rows_without_id += 1
            return None
        if bid != self.batch_id:
            self.batch_id, self.count = bid, 0
            self._tail.clear()
            self.batches_started += 1
        self._tail.append(np.asarray(row[:-1], np.float64))
        self.count += 1
        if self.count < self.spec.first_rows:
            return None
        kept = len(self._tail)
        self._info[grid_t] = BatchInfo(bid, self.count,
                                       100.0 * self.count / self.spec.nominal_rows)
        if len(self._info) > 4 * self.window + 64:  # the payloads read them within a flush
            for t in sorted(self._info)[: len(self._info) // 2]:
                del self._info[t]
        return early_window(np.stack(self._tail), self.window, self.spec.nominal_rows,
                            self.count - kept).astype(np.float32)

    def info(self, grid_t: float) -> BatchInfo | None:
        return self._info.get(grid_t)


def batch_tracker(manifest) -> BatchTracker | None:
    """The tracker of a batch-end bundle (``soft_sensor.batch``), else None."""
    spec = getattr(manifest.soft_sensor, "batch", None) if manifest.soft_sensor else None
    if spec is None:
        return None
    return BatchTracker(spec, manifest.input.tag_names, manifest.input.window)
