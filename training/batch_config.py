"""``data.batch``: a historian export of batches (task soft_sensor, batch-end targets).

Kept apart from :mod:`training.config` (which only refers to it) so that the batch work stays
in its own modules; the checks that need the whole config are :func:`check_batch_config`,
called by :func:`training.config.check_train_config` before TensorFlow loads.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator

from edge_runtime.contract import Strict


class BatchColumns(Strict):
    """Which export columns say which batch (and phase) a row belongs to, and where each
    batch's end value comes from."""

    id_column: str = Field(description="The batch id (a number per row): consecutive rows "
                           "with one id are one batch; windows never cross batches.")
    phase_column: str | None = Field(default=None, description="The batch phase (a number "
                                     "per row), used as a model input.")
    targets: Path | None = Field(default=None, description="A per-batch table (CSV: the id "
                                 "column and the target column); default: the target column "
                                 "of the export, its last value in each batch.")

    @field_validator("targets", mode="before")
    @classmethod
    def _expand(cls, value):
        return None if value is None else Path(os.path.expanduser(os.path.expandvars(value)))


def check_batch_config(config, columns: list[str], where: str, fail) -> None:
    """Cross-field rules of a batch config (``config``: a TrainConfig); ``fail(field, msg)``."""
    batch = config.data.batch
    if batch is None:
        for k in config.soft_sensor.early_percent if config.soft_sensor else []:
            if not 0 < k <= 100:
                fail("soft_sensor.early_percent", f"{k:g} is not a share in (0, 100]")
        return
    if config.task != "soft_sensor" or config.data.source != "historian":
        fail("data.batch", "batches are for task soft_sensor on a historian export "
             "(data.source: historian)")
    for field, name in (("data.batch.id_column", batch.id_column),
                        ("data.batch.phase_column", batch.phase_column)):
        if name is not None and name not in columns:
            fail(field, f"no column {name!r} in {where}")
    if name_in(batch.id_column, config.data.tags):
        fail("data.batch.id_column", f"{batch.id_column!r} is also an input (data.tags): the "
             "batch id says which batch a row is in, it is not a measurement")
    for k in config.soft_sensor.early_percent:
        if not 0 < k <= 100:
            fail("soft_sensor.early_percent", f"{k:g} is not a share in (0, 100]")
    split = config.split
    if split.by == "group" and split.group_column != batch.id_column:
        fail("split.group_column", f"{split.group_column!r}: with data.batch, split by the "
             f"batch id column {batch.id_column!r} (whole batches held out)")
    if batch.targets is not None:
        if not batch.targets.is_absolute():
            fail("data.batch.targets", "a relative path is resolved by load_train_config")
        if not batch.targets.is_file():
            fail("data.batch.targets", f"{batch.targets}: no such file")


def name_in(name: str, names: list[str] | None) -> bool:
    return bool(names) and name in names
