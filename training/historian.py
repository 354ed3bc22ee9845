"""Historian exports and the simulator, both turned into rows on the bundle's time grid.

The alignment is :func:`edge_runtime.windowing.hold_resample`, the function the gateway uses
live, so what a model sees in training is what it will see in the plant.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from edge_runtime.windowing import grid_between, hold_resample
from training.config import DataConfig, WindowConfig
from training.simulator import simulate


@dataclass
class GridData:
    grid_s: np.ndarray  # grid times, epoch seconds (N,)
    rows: np.ndarray  # (N, F) engineering units, NaN where a gap is longer than max_gap_s
    tags: list[str]
    units: list[str]

    def fingerprint(self, upto: int | None = None) -> str:
        """SHA-256 of the rows a model was fitted on (recorded in the bundle)."""
        block = np.ascontiguousarray(self.rows[:upto], dtype=np.float64)
        return hashlib.sha256(block.tobytes() + ",".join(self.tags).encode()).hexdigest()


def read_export(path: Path, timestamp_column: str) -> pd.DataFrame:
    """A CSV or Parquet export: one timestamp column, one column per tag."""
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if timestamp_column not in frame.columns:
        raise ValueError(f"{path}: no timestamp column {timestamp_column!r}")
    frame[timestamp_column] = pd.to_datetime(frame[timestamp_column], utc=True)
    return frame.sort_values(timestamp_column)


def epoch_seconds(timestamps: pd.Series) -> np.ndarray:
    """UTC timestamps → float epoch seconds, whatever resolution pandas chose."""
    ns = timestamps.dt.tz_convert(None).to_numpy().astype("datetime64[ns]").astype(np.int64)
    return ns / 1e9


def align(frame: pd.DataFrame, timestamp_column: str, tags: list[str], window: WindowConfig):
    """Hold-resample every tag onto the common grid, each from its own non-missing samples."""
    seconds = epoch_seconds(frame[timestamp_column])
    grid = grid_between(seconds[0], seconds[-1], window.period_s)
    columns = []
    for tag in tags:
        values = pd.to_numeric(frame[tag], errors="coerce").to_numpy(dtype=np.float64)
        columns.append(hold_resample(seconds, values, grid, window.max_gap_s))
    return grid, np.stack(columns, axis=1)


def load_grid(data: DataConfig, window: WindowConfig) -> GridData:
    """Rows on the grid from the configured source (simulator or historian export)."""
    if data.source == "simulator":
        run = simulate(data.simulator.steps, window.period_s, seed=data.simulator.seed)
        frame = pd.DataFrame(run.values, columns=run.tag_names)
        frame["timestamp"] = pd.to_datetime(run.timestamps, unit="s", utc=True)
        units = dict(run.tags) | data.units
        timestamp_column = "timestamp"
    else:
        frame = read_export(data.path, data.timestamp_column)
        units = data.units
        timestamp_column = data.timestamp_column
    tags = data.tags or [c for c in frame.columns if c != timestamp_column]
    missing = [t for t in tags if t not in frame.columns]
    if missing:
        raise ValueError(f"tags not in the data: {missing}")
    grid, rows = align(frame, timestamp_column, tags, window)
    return GridData(grid, rows, tags, [units.get(t, "") for t in tags])
