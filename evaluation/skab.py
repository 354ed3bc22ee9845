"""``procedge eval skab --root PATH``: SKAB's published protocol (data README).

For every ``;``-separated CSV under the root (recursively; files without ``anomaly`` labels,
such as ``anomaly-free.csv``, are skipped): the first 400 rows fit a fresh scaler and model,
the rest is test. Test parts of all files are pooled: F1/FAR/MAR on ``anomaly`` (one confusion
matrix) and the NAB standard score on ``changepoint`` (60 s windows to the right of each true
change point; detected change points = switches of the anomaly flag). The Keras float model and
its converted edge model (LiteRT) are scored with the same alarm limits, next to PCA T²+SPE.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from edge_runtime.commissioning import check_rows
from edge_runtime.scaling import StandardScaler
from edge_runtime.smoothing import smooth_scores
from evaluation import common, nested
from training.metrics import detection_metrics
from training.nab import NabTally, changepoints_from_flags, nab_tally
from training.pca_monitor import PCAMonitor
from training.progress import progress

if TYPE_CHECKING:
    from collections.abc import Callable

    from edge_runtime.bundle import ThresholdSpec
    from evaluation.monitors import MonitorSet
    from evaluation.nested import Alarm

log = logging.getLogger(__name__)
TRAIN_ROWS = 400
LABELS = ("anomaly", "changepoint")


@dataclass
class SkabFile:
    path: Path
    tags: list[str]
    rows: np.ndarray  # (N, F) engineering units
    times_s: np.ndarray  # (N,)
    anomaly: np.ndarray  # (N,) bool
    changepoint: np.ndarray  # (N,) bool


def load_skab(root: Path, exclude: tuple[str, ...] = ()) -> list[SkabFile]:
    """Every labelled CSV under ``root``; ``exclude`` drops tag columns by name."""
    files = []
    for path in sorted(Path(root).rglob("*.csv")):
        df = pd.read_csv(path, sep=";", index_col="datetime", parse_dates=True)
        if not set(LABELS) <= set(df.columns):
            log.info("skip %s: no anomaly/changepoint labels", path)
            continue
        tags = [c for c in df.columns if c not in LABELS and c not in exclude]
        times = (df.index - df.index[0]).total_seconds().to_numpy()
        files.append(SkabFile(path, tags, df[tags].to_numpy(np.float64), times,
                              df["anomaly"].to_numpy() > 0, df["changepoint"].to_numpy() > 0))
    if not files:
        raise FileNotFoundError(f"no labelled SKAB CSV under {root}")
    return files


def drift_ratios(files: list[SkabFile]) -> dict[str, float]:
    """Per tag: spread of its level between experiments / its spread within one, on the
    first 400 rows of every file only (the training parts; nothing of the test parts).

    A per-file model sees 400 s of each tag; a tag whose level wanders between experiments
    by many times its 400-s spread (a slow thermal state) leaves that range during the test
    part whatever the fault, so it cannot be monitored by such a model."""
    fit = np.stack([f.rows[:TRAIN_ROWS] for f in files])  # (files, 400, F)
    between = fit.mean(axis=1).std(axis=0)
    within = np.median(fit.std(axis=1), axis=0)
    return {t: float(b / max(w, 1e-12)) for t, b, w in zip(files[0].tags, between, within,
                                                          strict=True)}


def drop_tags(files: list[SkabFile], tags: set[str]) -> list[SkabFile]:
    keep = [i for i, t in enumerate(files[0].tags) if t not in tags]
    return [SkabFile(f.path, [f.tags[i] for i in keep], f.rows[:, keep], f.times_s,
                     f.anomaly, f.changepoint) for f in files]


def screen_drifting(files: list[SkabFile], max_ratio: float) -> tuple[list[SkabFile], dict]:
    """Drop tags whose :func:`drift_ratios` exceeds ``max_ratio`` (0: keep all)."""
    if len(files) < 2 or any(f.tags != files[0].tags for f in files):
        raise ValueError("--drift-screen needs at least two files with the same tag columns")
    ratios = drift_ratios(files)
    dropped = {t for t, r in ratios.items() if max_ratio and r > max_ratio}
    if len(dropped) == len(ratios):
        raise ValueError(f"--drift-screen {max_ratio} would drop every tag: {ratios}")
    return drop_tags(files, dropped), {"ratios": ratios, "dropped": sorted(dropped)}


def pooled_scale(files: list[SkabFile]) -> np.ndarray:
    """Per tag: standard deviation over the training parts (first 400 rows) of all files
    together, about their common mean — the tag's normal spread across every experiment.

    Why (``--scale pooled``): a per-file scale from 400 s of a slow thermal state is its
    sensor noise, so normal drift later in the file reads as many "standard deviations".
    The spread over all training parts includes how far the tag's level moves between
    experiments (a slow tag's normal range); for a fast tag it is close to the per-file
    one. No cutoff, nothing read from the test parts. Each file keeps its own mean."""
    if any(f.tags != files[0].tags for f in files):
        raise ValueError("--scale pooled needs the same tag columns in every file")
    pooled = np.concatenate([f.rows[:TRAIN_ROWS] for f in files]).std(axis=0)
    return np.where(pooled > 1e-12, pooled, 1.0)


@dataclass
class Pool:
    """Test-part flags and labels of every file, pooled per (model, variant)."""

    labels: list[np.ndarray] = field(default_factory=list)
    flags: list[np.ndarray] = field(default_factory=list)
    nab: NabTally = field(default_factory=NabTally)

    def add(self, f: SkabFile, flags: np.ndarray) -> None:
        test = slice(TRAIN_ROWS, None)
        self.labels.append(f.anomaly[test])
        self.flags.append(flags[test])
        self.nab = self.nab + nab_tally(f.times_s[test], f.changepoint[test],
                                        changepoints_from_flags(flags[test]))

    def metrics(self) -> dict[str, float]:
        m = detection_metrics(np.concatenate(self.labels), np.concatenate(self.flags))
        return m | {"nab_standard": self.nab.normalised()}


@dataclass
class Commissioned:
    """One file commissioned: its scaler, its fitted monitors and their alarm limits."""

    scaler: StandardScaler
    monitors: MonitorSet
    specs: dict[tuple[str, Alarm], list[ThresholdSpec]]  # (monitor, alarm) → one per stream


def commission(normal_rows: np.ndarray, fit: Callable[[np.ndarray], MonitorSet],
               alarms: list[Alarm], names: list[str], scale: np.ndarray | None = None,
               variant: str = "keras", tags: list[str] | None = None) -> Commissioned:
    """Per-file commissioning, SKAB's rule: scaler from the file's anomaly-free first rows
    (their mean; their std too unless a fleet ``scale`` is given), monitors fitted on them by
    ``fit``, and for every monitor in ``names`` and every alarm setting one limit per score
    stream, from the scores of those same rows.

    Every nested SKAB figure calibrates a file here and nowhere else, so that the gateway's
    own commissioning code can take this body's place and the figures follow it.

    It does: the rows pass the gateway's refusal check
    (:func:`edge_runtime.commissioning.check_rows`: no NaN, no flat-lined tag), the scaler
    is the gateway's, and every limit comes from the gateway's rule
    (:func:`edge_runtime.commissioning.limit_on`, through :meth:`Alarm.spec`). What stays
    evaluation-only is the per-file monitor fit, SKAB's protocol (a plant keeps its
    bundle's weights)."""
    check_rows(normal_rows, tags or [f"column {i}" for i in range(normal_rows.shape[1])])
    scaler = StandardScaler.fit(normal_rows)
    if scale is not None:
        scaler = StandardScaler(scaler.mean, scale)
    scaled = scaler.transform(normal_rows)
    monitors = fit(scaled)
    streams = monitors.streams(scaled, variant, names)
    specs = {(n, a): [a.spec(st) for st in streams[n]] for n in names for a in alarms}
    return Commissioned(scaler, monitors, specs)


def evaluate_file(f: SkabFile, s: common.Settings, pools: dict, edge: common.EdgeConverter,
                  calib_rows: int, plot_dir: Path | None,
                  scale: np.ndarray | None = None) -> None:
    """Fit on the file's first 400 rows and pool its test flags; ``scale`` replaces the
    per-file standard deviation (see :func:`pooled_scale`)."""
    scaler = StandardScaler.fit(f.rows[:TRAIN_ROWS])
    if scale is not None:
        scaler = StandardScaler(scaler.mean, scale)
    rows = scaler.transform(f.rows)
    fit_end = TRAIN_ROWS - calib_rows
    for name in s.families:
        if name == common.PCA_NAME:
            flags = _pca_flags(rows, fit_end, s)
            pools.setdefault((name, "numpy", "float64"), Pool()).add(f, flags)
            continue
        model = common.fit_family(name, rows[:fit_end], s)
        ks = common.keras_scores(model, rows, s.window, s.score)
        spec = s.spec(_calibration_scores(ks.score, fit_end, calib_rows))
        flags = common.flags_from(spec, ks.score)
        pools.setdefault((name, "keras", "float32"), Pool()).add(f, flags)
        if plot_dir is not None:
            _plots(f, name, ks, spec, flags, plot_dir)
        if s.edge_mode != "none" and name in s.edge_families:
            es = common.edge_scores(edge(model, rows[:fit_end], s.window, s.seed, s.score),
                                    rows, s.window, s.score)
            pools.setdefault((name, "edge", s.edge_mode), Pool()).add(
                f, common.flags_from(spec, es.score))


def _calibration_scores(scores: np.ndarray, fit_end: int, calib_rows: int) -> np.ndarray:
    """Normal scores for the limit: the held-apart tail of the 400 rows, or (calib_rows=0)
    the training rows themselves (the published SKAB rule)."""
    part = scores[fit_end:TRAIN_ROWS] if calib_rows else scores[:TRAIN_ROWS]
    return part[np.isfinite(part)]


def _pca_flags(rows: np.ndarray, fit_end: int, s: common.Settings) -> np.ndarray:
    """T² or SPE above its own limit (each calibrated like the deep models' score)."""
    pca = PCAMonitor.fit(rows[:fit_end], s.pca_variance)
    calib = slice(fit_end, TRAIN_ROWS) if fit_end < TRAIN_ROWS else slice(0, TRAIN_ROWS)
    flags = np.zeros(len(rows), dtype=bool)
    for stat in (pca.t2(rows), pca.spe(rows)):
        flags |= common.flags_from(s.spec(stat[calib]), stat)
    return flags


def _plots(f: SkabFile, name: str, ks: common.RowScores, spec, flags: np.ndarray,
           plot_dir: Path) -> None:
    from training import plots

    stem = f"{f.path.parent.name}_{f.path.stem}_{name}"
    plot_dir.mkdir(parents=True, exist_ok=True)
    filtered = np.full(len(ks.score), np.nan)
    ok = np.isfinite(ks.score)
    filtered[ok] = smooth_scores(spec, ks.score[ok])
    plots.score_vs_threshold(ks.score, f.anomaly, spec, plot_dir / f"{stem}_score.png",
                             filtered)
    alarms = np.flatnonzero(flags[TRAIN_ROWS:])
    if len(alarms):
        t = TRAIN_ROWS + alarms[0]
        plots.contribution_bar(ks.per_tag[t], f.tags, plot_dir / f"{stem}_contrib.png",
                               f"{stem}: first alarm (row {t})")


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="procedge eval skab", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True, help="folder of SKAB CSV files")
    p.add_argument("--calib-rows", type=int, default=0,
                   help="calibrate on the last N of the 400 normal rows (0: on all 400)")
    p.add_argument("--plot-files", type=int, default=1, help="plot the first N files")
    p.add_argument("--exclude-tags", default="", help="comma list of tag columns to drop")
    p.add_argument("--drift-screen", type=float, default=0.0, metavar="RATIO",
                   help="drop tags whose level spread between files' training parts exceeds"
                        " RATIO x their spread within one (0: off); see drift_ratios")
    p.add_argument("--scale", default="file", choices=["file", "pooled"],
                   help="tag scale: std of the file's 400 rows (SKAB), or of all files'"
                        " training parts together (see pooled_scale); mean is per file")
    nested.add_protocol_args(p, "file", "leave one folder out, settings chosen on the others"
                             " (evaluation/skab_nested.py)", aes="dense_ae:30", epochs=20)
    common.add_settings_args(p, window=30, level=0.99, margin=2.0, ewma=0.05, epochs=40)
    args = p.parse_args(argv)
    if args.protocol == "nested":
        nested.refuse_development_settings(p, args)
    s = common.settings_from_args(args)
    exclude = tuple(t for t in args.exclude_tags.split(",") if t)
    files = load_skab(args.root, exclude)
    if args.protocol == "nested":
        from evaluation import skab_nested

        skab_nested.main(files, args)
        return
    print("development protocol: the settings given on the command line, applied to every"
          " file; figures are label-informed when those settings were chosen on these files")
    screen = {}
    if args.drift_screen:
        files, screen = screen_drifting(files, args.drift_screen)
        print("drift screen (training parts only): " + ", ".join(
            f"{t} {r:.2f}" for t, r in screen["ratios"].items())
              + f"; dropped (> {args.drift_screen}): {screen['dropped'] or 'none'}")
    scale = pooled_scale(files) if args.scale == "pooled" else None
    if scale is not None:
        print("pooled scale (training parts only): " + ", ".join(
            f"{t} {v:.4g}" for t, v in zip(files[0].tags, scale, strict=True)))
    pools: dict = {}
    edge = common.EdgeConverter(s.edge_mode)
    start = time.time()
    for i, f in progress(enumerate(files), "SKAB files", len(files), unit="file"):
        plot_dir = args.plots if args.plots and i < args.plot_files else None
        evaluate_file(f, s, pools, edge, args.calib_rows, plot_dir, scale)
        log.warning("%s done (%d/%d, %.0f s)", f.path, i + 1, len(files), time.time() - start)
    edge.close()
    rows = [{"model": m, "variant": v, "mode": mode, **pool.metrics()}
            for (m, v, mode), pool in pools.items()]
    n_test = sum(len(f.rows) - TRAIN_ROWS for f in files)
    n_cp = sum(int(f.changepoint[TRAIN_ROWS:].sum()) for f in files)
    print(f"SKAB: {len(files)} files under {args.root}, {n_test} test rows, {n_cp} change"
          f" points, {time.time() - start:.0f} s")
    common.print_table(rows, ["f1", "far", "mar", "nab_standard"])
    meta = {"selection": "development (settings as given)", "calib_rows": args.calib_rows,
            "exclude_tags": exclude, "drift_screen": screen,
            "scale": args.scale,
            "files": [str(f.path) for f in files]}
    common.write_json(args.json, rows, vars(s) | meta)
