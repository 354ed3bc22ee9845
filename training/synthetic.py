"""Synthetic windows of a generative run written as a historian export
(``procedge generate``): a ``timestamp`` column (ISO 8601, UTC), one column per tag in
engineering units, ``window_id``, and the condition column (the run's
``generative.condition_column``, or ``condition``) holding each window's class.

Windows are laid end to end on the run's grid, starting at 2026-01-01T00:00:00Z, with a
silence longer than the run's ``max_gap_s`` between two windows, so that an import of the file
(``procedge train``, the gateway's windowing) never joins two synthetic windows into one.
Every file says it is synthetic: a sidecar ``<out>.json`` (``"synthetic": true``, the run,
family, seed, classes), and for Parquet the same JSON in the file's schema metadata under the
key ``procedge``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

START_S = 1767225600.0  # 2026-01-01T00:00:00Z
FORMATS = (".csv", ".parquet")


def sidecar(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def class_indices(meta: dict, n: int, condition: str | None) -> np.ndarray:
    """``n`` windows of class ``condition`` (a class name of the run), or ``n`` of each."""
    names = meta["class_names"]
    if condition is None:
        return np.repeat(np.arange(len(names)), n)
    if condition not in names:
        raise ValueError(f"--condition {condition!r} is not a class of this run "
                         f"(classes: {', '.join(names)})")
    return np.full(n, names.index(condition))


def generate(run_dir: Path, n: int, condition: str | None, seed: int) -> tuple[pd.DataFrame,
                                                                                 dict]:
    """The windows as a historian frame, and the metadata the files carry."""
    from edge_runtime.bundle import RunRecord
    from edge_runtime.scaling import StandardScaler
    from training.generative import load_generator

    record = RunRecord.load(run_dir)
    gen, meta = load_generator(run_dir)
    classes = class_indices(meta, n, condition)
    scaled = gen.sample(classes, seed=seed)
    values = StandardScaler.from_spec(record.scaler).inverse(scaled)  # (n, L, F) in units
    spec, (count, length, _) = record.input, values.shape
    period = spec.period_s
    # a grid point between two windows holds a value older than max_gap_s: a gap
    pause = period * (math.floor(spec.max_gap_s / period + 1e-9) + 2)
    offsets = np.arange(length) * period
    starts = START_S + np.arange(count) * (length * period - period + pause)
    stamps = (starts[:, None] + offsets[None, :]).ravel()
    column = meta.get("condition_column") or "condition"
    frame = pd.DataFrame(values.reshape(count * length, -1), columns=spec.tag_names)
    frame.insert(0, "timestamp", pd.to_datetime(stamps, unit="s", utc=True)
                 .strftime("%Y-%m-%dT%H:%M:%S.%fZ").str.replace(".000000Z", "Z"))
    frame["window_id"] = np.repeat(np.arange(count), length)
    frame[column] = np.repeat(np.asarray(meta["class_names"])[classes], length)
    info = {"synthetic": True, "run": record.name, "run_dir": str(run_dir),
            "family": meta["family"], "seed": seed, "windows": int(count),
            "window": int(length), "period_s": period, "condition_column": column,
            "classes": {name: int((classes == i).sum())
                        for i, name in enumerate(meta["class_names"]) if (classes == i).any()},
            "tags": spec.tag_names, "units": [t.unit for t in spec.tags]}
    return frame, info


def write(frame: pd.DataFrame, info: dict, out: Path) -> Path:
    """CSV or Parquet by the suffix of ``out``, plus the sidecar JSON; returns the sidecar."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        metadata = (table.schema.metadata or {}) | {b"procedge": json.dumps(info).encode()}
        pq.write_table(table.replace_schema_metadata(metadata), out)
    else:
        frame.to_csv(out, index=False)
    side = sidecar(out)
    side.write_text(json.dumps(info, indent=2) + "\n")
    return side
