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


def early_window(batch_rows: np.ndarray, length: int, nominal_rows: int) -> np.ndarray:
    """(length, F + 1): the last ``length`` of ``batch_rows`` (the batch from its first row
    on, (n, F)) with the progress channel appended; front-padded with the first row (progress
    0) while the batch is shorter than the window."""
    rows = np.asarray(batch_rows, np.float64)
    n = len(rows)
    if n == 0:
        raise ValueError("a batch window needs at least one row of the batch")
    progress = np.arange(1, n + 1, dtype=np.float64)[:, None] / nominal_rows
    x = np.concatenate([rows, progress], axis=1)[-length:]
    if n < length:
        pad = np.repeat(x[:1], length - n, axis=0)
        pad[:, -1] = 0.0
        x = np.concatenate([pad, x])
    return x
