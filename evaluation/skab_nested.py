"""``procedge eval skab --protocol nested``: SKAB figures whose settings never saw the files
they are reported on (leave one group out).

Files are grouped by their folder (``valve1``, ``valve2``, …). For each group in turn, every
candidate of a small fixed grid — monitor, scaling, EWMA, limit level and margin — is scored
on the *other* groups' files; the best by :data:`CRITERION` (F1 with FAR ≤ 13 %) is then
reported on the held-out group. Every file is commissioned alone by :func:`skab.commission`
(scaler and limits from its first 400 anomaly-free rows, SKAB's rule), so flags never depend
on labels; labels enter only the choosing metric (of the choosing files) and the report.

Scalings: ``file`` (SKAB's per-file ``StandardScaler``) and ``fleet`` (each file's own mean,
the std pooled over the choosing files' first 400 rows — fixed in development and shipped,
:func:`skab.pooled_scale`). Autoencoders are trained under ``fleet`` only (cost: one training
per file and direction); the classical monitors under both. The overall pick, when it uses an
autoencoder, is rerun with each held-out file's model converted (``--edge-mode``).
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evaluation import common, skab
from evaluation.monitors import MonitorGrid, MonitorSet, uses_autoencoder
from evaluation.nested import (
    PICK_COLUMNS,
    Alarm,
    Candidate,
    Criterion,
    alarm_flags,
    alarm_grid,
    choose,
    print_markdown,
)
from training.metrics import detection_metrics

log = logging.getLogger(__name__)
# pre-registered in bench/HISTORY.md (2026-12-02) before any nested figure was run
ALARMS = alarm_grid(ewmas=(1.0, 0.2, 0.05), levels=(0.99, 0.999), margins=(1.0, 1.5, 2.0))
CRITERION = Criterion("f1", far_max=13.0)
LAGS = 2  # autoencoders and epochs: skab.py's --nested-aes dense_ae:30, 20 epochs


@dataclass
class Flags:
    """Alarm flags of every (monitor, alarm) per file, for one scaling; commissioned files
    kept for plots and the edge re-run."""

    by_file: list[dict[tuple[str, Alarm], np.ndarray]] = field(default_factory=list)
    commissioned: list[skab.Commissioned] = field(default_factory=list)


def flag_files(files: list[skab.SkabFile], grid: MonitorGrid,
               scale: np.ndarray | None) -> Flags:
    """Commission every file and flag all its rows for every candidate; no label is read."""
    out, names, start = Flags(), grid.names(), time.time()
    for i, f in enumerate(files):
        c = skab.commission(f.rows[:skab.TRAIN_ROWS], lambda x: MonitorSet.fit(x, grid),
                            ALARMS, names, scale, tags=f.tags)
        streams = c.monitors.streams(c.scaler.transform(f.rows), "keras", names)
        cache = {m: {} for m in names}  # each stream filtered once per EWMA
        out.by_file.append({key: alarm_flags(specs, streams[key[0]], cache[key[0]])
                            for key, specs in c.specs.items()})
        out.commissioned.append(c)
        log.warning("commissioned %s (%d/%d, %.0f s)", f.path, i + 1, len(files),
                    time.time() - start)
    return out


def metrics(files: list[skab.SkabFile], flags: list[np.ndarray]) -> dict:
    """SKAB's pooled metrics over the test parts of ``files`` (their labels only)."""
    pool = skab.Pool()
    for f, fl in zip(files, flags, strict=True):
        pool.add(f, fl)
    return pool.metrics()


def per_file(files: list[skab.SkabFile], flags: list[np.ndarray]) -> dict:
    test = slice(skab.TRAIN_ROWS, None)
    return {_name(f): {k: round(v, 2) for k, v in detection_metrics(
        f.anomaly[test], fl[test]).items()} for f, fl in zip(files, flags, strict=True)}


def _name(f: skab.SkabFile) -> str:
    return f"{f.path.parent.name}/{f.path.stem}"


@dataclass
class Direction:
    """One leave-one-group-out split and the flags of its two scalings."""

    test_group: str
    files: list[skab.SkabFile]
    choose_idx: list[int]
    test_idx: list[int]
    scalings: dict[str, Flags]
    fleet_scale: np.ndarray
    edge_sets: dict[tuple[str, int], MonitorSet] = field(default_factory=dict)

    def flags(self, c: Candidate, idx: list[int]) -> list[np.ndarray]:
        return [self.scalings[c.scale].by_file[i][(c.monitor, c.alarm)] for i in idx]

    def on(self, c: Candidate, idx: list[int]) -> dict:
        return metrics([self.files[i] for i in idx], self.flags(c, idx))


def candidates(grids: dict[str, MonitorGrid]) -> list[Candidate]:
    return [Candidate(m, a, scale) for scale, g in grids.items() for m in g.names()
            for a in ALARMS]


def run_direction(d: Direction, cands: list[Candidate]) -> list[tuple[str, Candidate, dict]]:
    """The overall pick and each monitor's own pick, all chosen on the choosing files."""
    picks = [("overall", *choose(cands, lambda c: d.on(c, d.choose_idx), CRITERION))]
    for monitor in dict.fromkeys(c.monitor for c in cands):
        own = [c for c in cands if c.monitor == monitor]
        picks.append(("monitor", *choose(own, lambda c: d.on(c, d.choose_idx), CRITERION)))
    return picks


def edge_flags(d: Direction, c: Candidate, converter) -> list[np.ndarray]:
    """Flags of the test files with every autoencoder run as its converted LiteRT model,
    each file commissioned again on the edge model's own scores (as a gateway would)."""
    out = []
    for i in d.test_idx:
        f, kept = d.files[i], d.scalings[c.scale].commissioned[i]
        scale = d.fleet_scale if c.scale == "fleet" else None

        def converted(x, key=(c.scale, i), kept=kept):  # one conversion per file serves all
            if key not in d.edge_sets:
                d.edge_sets[key] = kept.monitors.convert(converter, x)
            return d.edge_sets[key]

        e = skab.commission(f.rows[:skab.TRAIN_ROWS], converted, [c.alarm], [c.monitor],
                            scale, variant="edge", tags=f.tags)
        streams = e.monitors.streams(e.scaler.transform(f.rows), "edge", [c.monitor])
        out.append(alarm_flags(e.specs[(c.monitor, c.alarm)], streams[c.monitor]))
    return out


def plot_direction(d: Direction, c: Candidate, plot_dir: Path) -> None:
    """Score / limit of the pick on every held-out file, labelled anomaly shaded."""
    from evaluation.nested import limit_ratio
    from training import plots

    plot_dir.mkdir(parents=True, exist_ok=True)
    for i in d.test_idx:
        f, kept = d.files[i], d.scalings[c.scale].commissioned[i]
        streams = kept.monitors.streams(kept.scaler.transform(f.rows), "keras", [c.monitor])
        ratio = limit_ratio(kept.specs[(c.monitor, c.alarm)], streams[c.monitor])
        flags = d.scalings[c.scale].by_file[i][(c.monitor, c.alarm)]
        plots.score_over_limit(ratio, f.anomaly, flags,
                               plot_dir / f"nested_{f.path.parent.name}_{f.path.stem}.png",
                               f"{_name(f)} {c.monitor} ({c.scale})", skab.TRAIN_ROWS)


def main(files: list[skab.SkabFile], args: argparse.Namespace) -> None:
    groups = sorted({f.path.parent.name for f in files})
    if len(groups) < 2:
        raise ValueError(f"--protocol nested needs files in at least two folders (groups);"
                         f" found only {groups} under {args.root}")
    aes = args.nested_aes  # ((family, window), …), parsed by nested.autoencoders
    classical = MonitorGrid(lags=LAGS, seed=args.seed)
    fleet_grid = MonitorGrid(autoencoders=aes, lags=LAGS, epochs=args.nested_epochs,
                             seed=args.seed)
    start = time.time()
    by_file_scale = flag_files(files, classical, None)
    rows, held_out = [], {}
    converter = common.EdgeConverter(args.edge_mode) if args.edge_mode != "none" else None
    for group in groups:
        test_idx = [i for i, f in enumerate(files) if f.path.parent.name == group]
        choose_idx = [i for i in range(len(files)) if i not in test_idx]
        fleet = skab.pooled_scale([files[i] for i in choose_idx])
        d = Direction(group, files, choose_idx, test_idx,
                      {"file": by_file_scale, "fleet": flag_files(files, fleet_grid, fleet)},
                      fleet)
        picks = run_direction(d, candidates({"file": classical, "fleet": fleet_grid}))
        chosen_on = ",".join(sorted({files[i].path.parent.name for i in choose_idx}))
        for pick, c, on_choose in picks:
            base = {"model": c.monitor, "selection": "nested", "pick": pick,
                    "choose_on": chosen_on, "test_on": group, **c.describe(),
                    "choose_f1": round(on_choose["f1"], 4),
                    "choose_far": round(on_choose["far"], 2)}
            variant = "keras" if uses_autoencoder(c.monitor) else "numpy"
            flags = d.flags(c, test_idx)
            test_files = [files[i] for i in test_idx]
            rows.append({**base, "variant": variant,
                         "mode": "float32" if variant == "keras" else "float64",
                         **metrics(test_files, flags), "per_file": per_file(test_files, flags)})
            if pick == "overall":
                held_out.update(zip(test_idx, flags, strict=True))
                if args.plots:
                    plot_direction(d, c, args.plots)
            if converter and pick == "overall" and uses_autoencoder(c.monitor):
                eflags = edge_flags(d, c, converter)
                rows.append({**base, "variant": "edge", "mode": args.edge_mode,
                             **metrics(test_files, eflags),
                             "per_file": per_file(test_files, eflags)})
    if converter:
        converter.close()
    order = sorted(held_out)
    rows.append({"model": "overall picks", "variant": "mixed", "mode": "float",
                 "selection": "nested", "pick": "overall", "choose_on": "the other group",
                 "test_on": "all (each file from the split that held it out)",
                 **metrics([files[i] for i in order], [held_out[i] for i in order])})
    report(rows, files, args, time.time() - start, aes)


def report(rows: list[dict], files: list[skab.SkabFile], args, seconds: float,
           aes: tuple) -> None:
    print(f"SKAB nested (leave one group out): {len(files)} files under {args.root},"
          f" {seconds:.0f} s; settings chosen on the other group's files only")
    print_markdown(rows, PICK_COLUMNS + [
        ("scale", lambda r: r.get("scale", "")), ("ewma", lambda r: r.get("ewma", "")),
        ("level", lambda r: r.get("level", "")), ("margin", lambda r: r.get("margin", "")),
        ("choose F1", lambda r: r.get("choose_f1", "")),
        ("choose FAR", lambda r: r.get("choose_far", "")),
        ("F1", lambda r: f"{r['f1']:.3f}"), ("FAR", lambda r: f"{r['far']:.2f}"),
        ("MAR", lambda r: f"{r['mar']:.2f}"), ("NAB", lambda r: f"{r['nab_standard']:.2f}")])
    for r in rows:
        if r["pick"] == "overall" and "per_file" in r:
            print(f"\nper file, overall pick {r['model']} ({r['variant']}, {r['mode']}) on"
                  f" {r['test_on']}:")
            print("| file | F1 | FAR | MAR |\n|---|---|---|---|")
            for name, m in r["per_file"].items():
                print(f"| {name} | {m['f1']:.3f} | {m['far']:.2f} | {m['mar']:.2f} |")
    settings = {"selection": "nested (leave one group out)", "criterion": vars(CRITERION),
                "alarms": [vars(a) for a in ALARMS], "lags": LAGS, "seed": args.seed,
                "autoencoders": aes, "epochs": args.nested_epochs,
                "edge_mode": args.edge_mode, "seconds": round(seconds, 1),
                "files": [str(f.path) for f in files]}
    common.write_json(args.json, rows, settings)
