"""Historian exports and the simulator, both turned into rows on the bundle's time grid.

The alignment is :func:`edge_runtime.windowing.hold_resample`, the function the gateway uses
live, so what a model sees in training is what it will see in the plant.

Nothing in an export is fixed up silently: rows out of order, duplicate timestamps, bad-value
tokens, unreadable cells and timestamps, gaps and the time zone assumed are counted in the
data-quality report (:mod:`training.quality`) that training prints and records.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from edge_runtime.windowing import grid_between, hold_resample
from training.config import BAD_VALUES, DataConfig, WindowConfig
from training.simulator import simulate

# an offset or "Z" at the end of a timestamp: it carries its own zone
_ZONED = r"(?:Z|z|[+-]\d\d:?\d\d|UTC|GMT)$"


@dataclass
class GridData:
    grid_s: np.ndarray  # grid times, epoch seconds (N,)
    rows: np.ndarray  # (N, F) engineering units, NaN where a gap is longer than max_gap_s
    tags: list[str]
    units: list[str]
    quality: dict = field(default_factory=dict)  # the import part of the data-quality report

    def fingerprint(self, upto: int | None = None) -> str:
        """SHA-256 of the rows a model was fitted on (recorded in the bundle)."""
        block = np.ascontiguousarray(self.rows[:upto], dtype=np.float64)
        return hashlib.sha256(block.tobytes() + ",".join(self.tags).encode()).hexdigest()


@dataclass
class Export:
    """An export read: UTC timestamps sorted, one row per timestamp (the last of duplicates),
    tag columns as floats (NaN = missing), and what was found on the way."""

    frame: pd.DataFrame
    timestamp_column: str
    tags: list[str]
    report: dict


def import_export(path: Path, timestamp_column: str = "timestamp",
                  tags: list[str] | None = None, *, sep: str = ",", decimal: str = ".",
                  timestamp_format: str = "ISO8601", timezone: str | None = None,
                  bad_values: list[str] | tuple[str, ...] = BAD_VALUES) -> Export:
    """Read a CSV or Parquet export (one timestamp column, one column per tag) and count its
    defects: unreadable timestamps (dropped), rows out of order (sorted), duplicate
    timestamps (the last row kept), bad-value tokens and unreadable cells per tag (missing)."""
    path = Path(path)
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False,
                            engine="python" if len(sep) > 1 else "c")
    frame.columns = [str(c).strip() for c in frame.columns]
    if timestamp_column not in frame.columns:
        raise ValueError(f"{path}: no timestamp column {timestamp_column!r} "
                         f"(columns read with sep {sep!r}: {list(frame.columns)[:4]})"
                         + _sep_hint(path, sep))
    tags = tags or [c for c in frame.columns if c != timestamp_column]
    missing = [t for t in tags if t not in frame.columns]
    if missing:
        raise ValueError(f"{path}: tags not in the data: {missing}")
    seconds, naive_rows, ts_report = _timestamps(path, frame[timestamp_column],
                                                 timestamp_format, timezone)
    values, tag_reports = {}, {}
    for tag in tags:
        values[tag], tag_reports[tag] = _values(frame[tag], decimal, set(bad_values))
    n_rows = len(frame)
    ok = np.isfinite(seconds)
    seconds = seconds[ok]
    columns = {t: v[ok] for t, v in values.items()}
    unsorted = int((np.diff(seconds) < 0).sum())
    order = np.argsort(seconds, kind="stable")  # file order kept among equal timestamps
    seconds = seconds[order]
    last = np.append(seconds[1:] != seconds[:-1], True) if len(seconds) else np.array([], bool)
    duplicates = int((~last).sum())
    seconds = seconds[last]
    columns = {t: v[order][last] for t, v in columns.items()}
    if not len(seconds):
        raise ValueError(f"{path}: no row with a readable timestamp")
    out = pd.DataFrame(columns)
    out.insert(0, timestamp_column, pd.to_datetime(seconds, unit="s", utc=True))
    report = {
        "source": str(path), "rows": n_rows,
        "start": _iso(seconds[0]), "end": _iso(seconds[-1]),
        "span_s": float(seconds[-1] - seconds[0]),
        "timestamp_format": timestamp_format,
        "timezone": timezone or "UTC",
        "timezone_assumed": bool(timezone is None and naive_rows > 0),
        **ts_report,
        "unsorted_rows": unsorted,
        "duplicate_timestamps": duplicates,
        "duplicates_resolved": "kept the last row of each duplicated timestamp (file order)",
        "tags": tag_reports,
    }
    return Export(out, timestamp_column, list(tags), report)


def read_export(path: Path, timestamp_column: str = "timestamp", **options) -> pd.DataFrame:
    """The frame of :func:`import_export` (timestamp column as UTC datetimes)."""
    return import_export(path, timestamp_column, **options).frame


def _sep_hint(path: Path, sep: str) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            header = handle.readline()
    except OSError:
        return ""
    for other, name in ((";", "semicolon"), ("\t", "tab"), (",", "comma"), ("|", "pipe")):
        if other != sep and other in header:
            return (f"; the header holds {other!r}: for a {name}-separated export set "
                    f"data.sep: {other!r} (and data.decimal: ',' if numbers use a decimal comma)")
    return ""


def _timestamps(path: Path, column: pd.Series, fmt: str, timezone: str | None):
    """Epoch seconds per row (NaN where unreadable), rows without a zone, and counts."""
    zone = timezone or "UTC"
    if pd.api.types.is_datetime64_any_dtype(column):  # Parquet: already typed
        stamps = column
        naive = 0
        if stamps.dt.tz is None:
            naive = len(stamps)
            stamps = stamps.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
        seconds = _seconds(stamps)
        return seconds, naive, {"bad_timestamps": int(np.isnan(seconds).sum()),
                                "bad_timestamp_examples": []}
    text = column.astype(str).str.strip()
    kwargs = ({"format": "ISO8601"} if fmt == "ISO8601" else
              {"dayfirst": True} if fmt == "dayfirst" else
              {"dayfirst": False} if fmt == "monthfirst" else {"format": fmt})
    zoned = text.str.contains(_ZONED, regex=True).to_numpy()
    seconds = np.full(len(text), np.nan)
    if zoned.any():
        seconds[zoned] = _seconds(pd.to_datetime(text[zoned], utc=True, errors="coerce",
                                                 **kwargs))
    if (~zoned).any():
        local = pd.to_datetime(text[~zoned], errors="coerce", **kwargs)
        if local.dt.tz is None:  # a strftime format with %z gives zoned stamps
            local = local.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
        seconds[~zoned] = _seconds(local)
    bad = np.isnan(seconds)
    examples = list(dict.fromkeys(text[bad]))[:3]
    if bad.sum() > len(text) / 2:
        raise ValueError(
            f"{path}: {int(bad.sum())} of {len(text)} timestamps not readable as "
            f"timestamp_format {fmt!r} (e.g. {examples}): set data.timestamp_format to "
            "'dayfirst' (01.02.2026 = 1 February), 'monthfirst', or a strftime format such "
            "as '%d.%m.%Y %H:%M:%S'")
    return seconds, int((~zoned).sum()), {"bad_timestamps": int(bad.sum()),
                                          "bad_timestamp_examples": examples}


def _seconds(stamps: pd.Series) -> np.ndarray:
    utc = stamps.dt.tz_convert("UTC")
    return ((utc - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(
        dtype=np.float64, na_value=np.nan)


def _values(column: pd.Series, decimal: str, bad_values: set[str]) -> tuple[np.ndarray, dict]:
    """Floats (NaN = missing), counting bad-value tokens and other unreadable cells."""
    if not (pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        missing = ~np.isfinite(values)
        values[missing] = np.nan
        return values, {"bad_values": int(missing.sum()), "bad_tokens":
                        {"NaN": int(missing.sum())} if missing.any() else {},
                        "unreadable": 0, "unreadable_examples": []}
    text = column.astype(str).str.strip()
    bad = text.isin(bad_values).to_numpy()
    numbers = text if decimal == "." else text.str.replace(decimal, ".", regex=False)
    values = pd.to_numeric(numbers.where(~bad), errors="coerce").to_numpy(dtype=np.float64,
                                                                      copy=True)
    unreadable = ~np.isfinite(values) & ~bad
    values[bad | unreadable] = np.nan
    tokens = Counter(text[bad])
    return values, {"bad_values": int(bad.sum()),
                    "bad_tokens": {k: tokens[k] for k in sorted(tokens)},
                    "unreadable": int(unreadable.sum()),
                    "unreadable_examples": list(dict.fromkeys(text[unreadable]))[:3]}


def _iso(epoch_s: float) -> str:
    return pd.Timestamp(epoch_s, unit="s", tz="UTC").isoformat().replace("+00:00", "Z")


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


def gaps(frame: pd.DataFrame, timestamp_column: str, tag: str, max_gap_s: float) -> dict:
    """Intervals between a tag's successive valid samples longer than ``max_gap_s``."""
    seconds = epoch_seconds(frame[timestamp_column])
    valid = seconds[np.isfinite(frame[tag].to_numpy(dtype=np.float64))]
    steps = np.diff(valid)
    long = steps[steps > max_gap_s + 1e-9]
    return {"gaps": int(len(long)), "longest_gap_s": float(steps.max()) if len(steps) else 0.0}


def load_grid(data: DataConfig, window: WindowConfig) -> GridData:
    """Rows on the grid from the configured source (simulator or historian export), with the
    import part of the data-quality report."""
    if data.source == "simulator":
        run = simulate(data.simulator.steps, window.period_s, seed=data.simulator.seed)
        frame = pd.DataFrame(run.values, columns=run.tag_names)
        frame["timestamp"] = pd.to_datetime(run.timestamps, unit="s", utc=True)
        units = dict(run.tags) | data.units
        timestamp_column = "timestamp"
        tags = data.tags or run.tag_names
        missing = [t for t in tags if t not in frame.columns]
        if missing:
            raise ValueError(f"tags not in the data: {missing}")
        clean = {"bad_values": 0, "bad_tokens": {}, "unreadable": 0, "unreadable_examples": []}
        seconds = run.timestamps
        report = {"source": "simulator", "rows": len(frame), "start": _iso(seconds[0]),
                  "end": _iso(seconds[-1]), "span_s": float(seconds[-1] - seconds[0]),
                  "timestamp_format": "epoch", "timezone": "UTC", "timezone_assumed": False,
                  "bad_timestamps": 0, "bad_timestamp_examples": [], "unsorted_rows": 0,
                  "duplicate_timestamps": 0, "duplicates_resolved": "",
                  "tags": {t: dict(clean) for t in tags}}
    else:
        export = import_export(data.path, data.timestamp_column, data.tags, sep=data.sep,
                               decimal=data.decimal, timestamp_format=data.timestamp_format,
                               timezone=data.timezone, bad_values=data.bad_values)
        frame, tags, report = export.frame, export.tags, export.report
        units = data.units
        timestamp_column = data.timestamp_column
    grid, rows = align(frame, timestamp_column, tags, window)
    report["max_gap_s"] = window.max_gap_s
    for i, tag in enumerate(tags):
        report["tags"][tag] |= gaps(frame, timestamp_column, tag, window.max_gap_s)
        report["tags"][tag]["valid_share"] = float(np.isfinite(rows[:, i]).mean())
    return GridData(grid, rows, tags, [units.get(t, "") for t in tags], report)
