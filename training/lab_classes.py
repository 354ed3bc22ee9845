"""Class labels of a classification soft sensor (``soft_sensor.kind: classification``): a grade,
on-spec/off-spec, one class name per lab sample, in a historian export column that holds a
name only at the rows of its samples (empty elsewhere).

The labels become class indices into ``soft_sensor.classes`` (the order of the model's
outputs and of the bundle's ``classes``); a name not among them is an error naming the field,
before any training (the config check reads the column too)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from training.config import TrainConfig


def read_class_column(config: TrainConfig, columns: list[str]) -> pd.DataFrame:
    """``columns`` of the export as text (empty cells kept as ""), in file order."""
    data = config.data
    if data.path.suffix == ".parquet":
        return pd.read_parquet(data.path, columns=columns)
    return pd.read_csv(data.path, sep=data.sep, dtype=str, keep_default_na=False,
                       na_filter=False, usecols=columns,
                       engine="python" if len(data.sep) > 1 else "c")


def class_indices(names: pd.Series, classes: list[str],
                  fail: Callable[[str, str], None]) -> np.ndarray:
    """Index of each name in ``classes``; names outside it fail on ``soft_sensor.classes``."""
    text = names.astype(str).str.strip()
    unknown = sorted(set(text) - set(classes))
    if unknown:
        counts = ", ".join(f"{u!r} ({int((text == u).sum())})" for u in unknown[:5])
        fail("soft_sensor.classes", f"the target column holds {counts} not in "
             f"soft_sensor.classes {classes}: add the class, or correct the labels")
    lookup = {c: i for i, c in enumerate(classes)}
    return text.map(lookup).to_numpy(np.float64)


def check_classes(config: TrainConfig, fail: Callable[[str, str], None]) -> None:
    """Before training: classification reads an export, and every label is a known class."""
    s = config.soft_sensor
    if config.data.source != "historian":
        fail("soft_sensor.kind", "classification reads class names from a historian export "
             "(data.source: historian); the simulator's lab value is a number")
    frame = read_class_column(config, [s.target])
    text = frame[s.target].astype(str).str.strip()
    class_indices(text[text != ""], s.classes, fail)


def load_class_labels(config: TrainConfig, fail: Callable[[str, str], None]):
    """The class labels as :class:`training.lab_labels.Labels` (values: class indices), in
    time order, the last of duplicated stamps kept."""
    from training.historian import _timestamps
    from training.lab_labels import Labels

    s, data = config.soft_sensor, config.data
    if data.source != "historian":
        check_classes(config, fail)  # names the field
    group = config.split.group_column if config.split.by == "group" else None
    frame = read_class_column(config, [data.timestamp_column, s.target, *([group] if group
                                                                           else [])])
    text = frame[s.target].astype(str).str.strip()
    frame = frame[text != ""]
    seconds, _, _ = _timestamps(data.path, frame[data.timestamp_column], data.timestamp_format,
                                data.timezone)
    ok = np.isfinite(seconds)
    frame, seconds = frame[ok], seconds[ok]
    order = np.argsort(seconds, kind="stable")
    frame, seconds = frame.iloc[order], seconds[order]
    last = np.append(seconds[1:] != seconds[:-1], True)
    frame, seconds = frame[last], seconds[last]
    values = class_indices(frame[s.target], s.classes, fail)
    groups = None
    if group:
        groups = pd.to_numeric(frame[group], errors="coerce").to_numpy(np.float64)
        if not np.isfinite(groups).all():
            fail("split.group_column", f"{int((~np.isfinite(groups)).sum())} of {len(groups)} "
                 f"labels have no readable group id in {group!r} (numbers only)")
    return Labels(seconds, values, groups, "")
