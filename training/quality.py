"""The data-quality report of a training run: what the import found (rows, span, time zone,
rows out of order, duplicate timestamps, bad values and gaps per tag) and what the training
part holds (flat-lined tags). Printed by ``procedge train``, saved in the run record
(``data_quality``, carried into the bundle manifest) and drawn as ``data_quality.png``;
with ``--strict`` (``data.strict``) any warning is an error naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def finish(report: dict, rows: np.ndarray, tags: list[str], train: slice | np.ndarray
           ) -> dict:
    """Add the flat-lined check on the training rows, then the warnings."""
    part = rows[train]
    for i, tag in enumerate(tags):
        values = part[:, i][np.isfinite(part[:, i])]
        entry = report["tags"][tag]
        entry["flat"] = bool(len(values) == 0 or np.ptp(values) == 0)
        entry["flat_value"] = float(values[0]) if entry["flat"] and len(values) else None
    report["warnings"] = warnings(report)
    return report


def warnings(report: dict) -> list[str]:
    out = []
    if report["bad_timestamps"]:
        out.append(f"{report['bad_timestamps']} timestamps unreadable (e.g. "
                   f"{report['bad_timestamp_examples']}), rows dropped")
    if report["timezone_assumed"]:
        out.append("timestamps without a zone taken as UTC (set data.timezone)")
    if report["unsorted_rows"]:
        out.append(f"{report['unsorted_rows']} rows out of time order (sorted)")
    if report["duplicate_timestamps"]:
        out.append(f"{report['duplicate_timestamps']} duplicate timestamps "
                   "(kept the last row of each)")
    for tag, t in report["tags"].items():
        if t["bad_values"]:
            out.append(f"{tag}: {t['bad_values']} bad values {t['bad_tokens']}")
        if t["unreadable"]:
            out.append(f"{tag}: {t['unreadable']} unreadable values "
                       f"(e.g. {t['unreadable_examples']})")
        if t.get("gaps"):
            out.append(f"{tag}: {t['gaps']} gaps longer than max_gap_s "
                       f"{report['max_gap_s']:g} s (longest {t['longest_gap_s']:g} s)")
        if t.get("flat"):
            out.append(f"{tag}: flat-lined over the training part"
                       + (f" (constant {t['flat_value']:g})" if t["flat_value"] is not None
                          else " (no valid value)"))
    return out


def table(report: dict) -> str:
    """A compact text table of the report."""
    hours = report["span_s"] / 3600
    zone = report["timezone"] + (" (assumed)" if report["timezone_assumed"] else "")
    lines = [f"data quality: {report['source']}: {report['rows']} rows, {report['start']} .. "
             f"{report['end']} ({hours:.3g} h), zone {zone}",
             f"  timestamps: {report['bad_timestamps']} unreadable, {report['unsorted_rows']} "
             f"out of order (sorted), {report['duplicate_timestamps']} duplicated (last kept)"]
    width = max([len("tag"), *map(len, report["tags"])])
    lines.append(f"  {'tag':<{width}}  {'bad':>5}  {'unread':>6}  "
                 f"{'gaps>' + format(report['max_gap_s'], 'g') + 's':>9}  {'longest':>9}  "
                 f"{'valid':>6}  flat")
    for tag, t in report["tags"].items():
        lines.append(f"  {tag:<{width}}  {t['bad_values']:>5}  {t['unreadable']:>6}  "
                     f"{t['gaps']:>9}  {t['longest_gap_s']:>8.4g}s  "
                     f"{t['valid_share']:>6.1%}  {'yes' if t['flat'] else 'no'}")
    lines += [f"  warning: {w}" for w in report["warnings"]]
    return "\n".join(lines)


def check(report: dict, strict: bool) -> None:
    """With ``strict``, any warning is an error naming the file and what failed."""
    if strict and report["warnings"]:
        raise ValueError(f"{report['source']}: data-quality check failed (strict): "
                         + "; ".join(report["warnings"]))


def review(report: dict, grid_s: np.ndarray, rows: np.ndarray, tags: list[str],
           train: slice | np.ndarray, strict: bool, picture: Path | None) -> None:
    """What every training run does with its report, before any training: :func:`finish` it
    on the training rows, print it, stop on a warning with ``strict``, draw it to
    ``picture`` (when given)."""
    finish(report, rows, tags, train)
    print(table(report), flush=True)
    check(report, strict)
    if picture is not None:
        from training import plots  # matplotlib only when drawing

        plots.data_quality(report, grid_s, rows, tags, picture)
