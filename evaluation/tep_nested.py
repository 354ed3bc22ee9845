"""``procedge eval tep --protocol nested``: TEP figures on faults that never informed the
settings.

The faults are split in two fixed halves declared before any run (:data:`SPLITS`: odd and
even fault numbers). Every candidate of a small fixed grid — monitor (PCA, dynamic PCA,
temporal-convolution and recurrent autoencoders, their rank fusion), EWMA and limit level —
is fitted and limited on normal data only, exactly as ``evaluate`` in :mod:`evaluation.tep`
does (development: fit d00 rows 0–299, limit on one normal block, FAR on the other, swapped;
published: fit d00, limit and FAR on d00_te). The best candidate by :data:`CRITERION`
(mean detection rate of the choosing half, with FAR ≤ 5 %) is reported on the other half,
then the halves swap; each fault's held-apart figure comes from the split that held it out.
Flags are computed without labels; a fault's onset (its label) is read only by the metric of
the half it belongs to.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass

import numpy as np

from edge_runtime.scaling import StandardScaler
from evaluation import common
from evaluation.monitors import MonitorGrid, MonitorSet, uses_autoencoder
from evaluation.nested import (
    PICK_COLUMNS,
    Candidate,
    Criterion,
    alarm_flags,
    alarm_grid,
    choose,
    print_markdown,
)
from evaluation.tep import HARD, TepData, load_tep

log = logging.getLogger(__name__)
# pre-registered in bench/HISTORY.md (2026-12-02) before any nested TEP figure was run
ODD, EVEN = tuple(range(1, 22, 2)), tuple(range(2, 22, 2))
SPLITS = ((ODD, EVEN), (EVEN, ODD))  # (choose on, report on)
ALARMS = alarm_grid(ewmas=(1.0, 0.3, 0.1, 0.03), levels=(0.95, 0.99), margins=(1.0,),
                    rule="coverage")
CRITERION = Criterion("detection_rate", far_max=5.0)
LAGS = 2  # autoencoders, epochs: tep.py's --nested-aes conv_ae:10,conv_ae:40,lstm_ae:20
PCA_MONITORS = ("pca_t2_spe", "pca_spe", "dpca_t2_spe", "dpca_spe")


@dataclass
class Scored:
    """Every monitor's streams on every block, for one variant (keras or edge)."""

    calib: list[dict[str, list[np.ndarray]]]  # per fold
    far: list[dict[str, list[np.ndarray]]]  # per fold
    faults: dict[int, dict[str, list[np.ndarray]]]


def score_blocks(data: TepData, monitors: MonitorSet, variant: str,
                 names: list[str]) -> Scored:
    scaler = StandardScaler.fit(data.fit)

    def streams(rows):
        return monitors.streams(scaler.transform(rows), variant, names)

    return Scored([streams(c) for c, _ in data.folds], [streams(f) for _, f in data.folds],
                  {k: streams(v) for k, v in data.faults.items()})


@dataclass
class Flagged:
    """One candidate's alarm flags per fold: FAR on normal rows, and every fault's rows."""

    far: list[float]
    faults: list[dict[int, np.ndarray]]


def flag(data: TepData, sc: Scored, c: Candidate, cache: dict | None = None) -> Flagged:
    """Limits from each fold's normal calibration block; no fault label is read here.
    ``cache`` (one dict per :class:`Scored`) filters each stream once per EWMA."""
    far, faults = [], []

    def memo(*key):
        return None if cache is None else cache.setdefault((*key, c.monitor), {})

    for i, (calib, far_block) in enumerate(zip(sc.calib, sc.far, strict=True)):
        specs = [c.alarm.spec(st[data.lead:]) for st in calib[c.monitor]]
        flags = alarm_flags(specs, far_block[c.monitor], memo(i, "far"))
        far.append(100.0 * float(flags[data.lead:].mean()))
        faults.append({k: alarm_flags(specs, s[c.monitor], memo(i, k))
                       for k, s in sc.faults.items()})
    return Flagged(far, faults)


def metrics(data: TepData, fl: Flagged, faults: tuple[int, ...]) -> dict:
    """Detection rate per fault of ``faults`` (their onsets only), mean over folds."""
    per = {k: float(np.mean([f[k][data.onset[k]:].mean() * 100 for f in fl.faults]))
           for k in faults if k in data.faults}
    rest = [v for k, v in per.items() if k not in HARD]
    return {"detection_rate": float(np.mean(list(per.values()))),
            "detection_rate_excl_3_9_15": float(np.mean(rest)) if rest else float("nan"),
            "far": float(np.mean(fl.far)), "far_folds": [round(v, 2) for v in fl.far],
            "per_fault": {f"{k:02d}": round(v, 2) for k, v in per.items()}}


def main(args: argparse.Namespace) -> None:
    aes = args.nested_aes  # ((family, window), …), parsed by nested.autoencoders
    grid = MonitorGrid(autoencoders=aes, lags=LAGS, epochs=args.nested_epochs, seed=args.seed,
                       pca=PCA_MONITORS)
    window = max([w for _, w in aes] + [LAGS + 1])
    data = load_tep(args.root, window)
    start = time.time()
    scaler = StandardScaler.fit(data.fit)
    fit_rows = scaler.transform(data.fit)
    monitors = MonitorSet.fit(fit_rows, grid)
    names = grid.names()
    keras_scored = score_blocks(data, monitors, "keras", names)
    cands = [Candidate(m, a, "fit") for m in names for a in ALARMS]
    cache: dict = {}
    flagged = {c: flag(data, keras_scored, c, cache) for c in cands}
    log.warning("TEP nested: %d candidates flagged, %.0f s", len(cands), time.time() - start)
    rows, held, edge_cache = [], {}, {}
    for choose_on, test_on in SPLITS:
        picks = [("overall", *choose(cands, lambda c, f=choose_on: metrics(
            data, flagged[c], f), CRITERION))]
        for m in names:
            own = [c for c in cands if c.monitor == m]
            picks.append(("monitor", *choose(own, lambda c, f=choose_on: metrics(
                data, flagged[c], f), CRITERION)))
        for pick, c, on_choose in picks:
            base = {"model": c.monitor, "selection": "nested", "pick": pick,
                    "choose_on": _faults(choose_on), "test_on": _faults(test_on),
                    **c.describe(), "choose_detection": round(on_choose["detection_rate"], 2),
                    "choose_far": round(on_choose["far"], 2)}
            ae = uses_autoencoder(c.monitor)
            m = metrics(data, flagged[c], test_on)
            spe = metrics(data, flagged[Candidate("pca_spe", c.alarm, "fit")], test_on)
            rows.append({**base, "variant": "keras" if ae else "numpy",
                         "mode": "float32" if ae else "float64", **m,
                         "pca_spe_same_alarm": spe["per_fault"],
                         "below_pca_spe_by_5": [k for k, v in m["per_fault"].items()
                                                if v < spe["per_fault"][k] - 5]})
            if pick == "overall":
                held.update({k: v for k, v in m["per_fault"].items()})
                held.setdefault("_far", []).append(m["far"])
                if args.plots:
                    plot_split(data, keras_scored, c, test_on, args.plots)
            if ae and args.edge_mode != "none":
                e = edge_metrics(data, monitors, fit_rows, c, test_on, args.edge_mode,
                                 edge_cache)
                rows.append({**base, "variant": "edge", "mode": args.edge_mode, **e})
    for conv in edge_cache.values():
        conv["converter"].close()
    far = held.pop("_far")
    per = {k: held[k] for k in sorted(held)}
    rest = [v for k, v in per.items() if int(k) not in HARD]
    rows.append({"model": "overall picks", "variant": "mixed", "mode": "float",
                 "selection": "nested", "pick": "overall", "choose_on": "the other half",
                 "test_on": "all (each fault from the split that held it out)",
                 "detection_rate": float(np.mean(list(per.values()))),
                 "detection_rate_excl_3_9_15": float(np.mean(rest)),
                 "far": float(np.mean(far)), "per_fault": per})
    report(rows, data, args, time.time() - start, aes)


def edge_metrics(data: TepData, monitors: MonitorSet, fit_rows: np.ndarray, c: Candidate,
                 test_on: tuple[int, ...], mode: str, cache: dict) -> dict:
    """The pick with its autoencoders run in LiteRT, limits recalibrated on the edge model's
    own normal scores (converted once per run)."""
    if "set" not in cache.setdefault("edge", {}):
        converter = common.EdgeConverter(mode)
        cache["edge"] = {"converter": converter, "set": monitors.convert(converter, fit_rows)}
    edge_set = cache["edge"]["set"]
    sc = score_blocks(data, edge_set, "edge", [c.monitor])
    return metrics(data, flag(data, sc, c), test_on)


def plot_split(data: TepData, sc: Scored, c: Candidate, test_on: tuple[int, ...],
               plot_dir) -> None:
    """Score / limit (fold 1's limit) of the pick on each held-apart fault, faulty rows
    shaded, so a fault that stays under the line is seen."""
    from evaluation.nested import limit_ratio
    from training import plots

    plot_dir.mkdir(parents=True, exist_ok=True)
    specs = [c.alarm.spec(st[data.lead:]) for st in sc.calib[0][c.monitor]]
    for k in test_on:
        if k not in data.faults:
            continue
        streams = sc.faults[k][c.monitor]
        labels = np.arange(len(streams[0])) >= data.onset[k]
        plots.score_over_limit(limit_ratio(specs, streams), labels,
                               alarm_flags(specs, streams),
                               plot_dir / f"nested_tep_fault{k:02d}.png",
                               f"TEP fault {k} {c.monitor} (ewma {c.alarm.ewma})")


def _faults(faults: tuple[int, ...]) -> str:
    return ",".join(str(k) for k in faults)


def report(rows: list[dict], data: TepData, args, seconds: float, aes: tuple) -> None:
    print(f"TEP nested ({data.protocol} data): {len(data.faults)} faults under {args.root},"
          f" {seconds:.0f} s; settings chosen on one half of the faults, reported on the other")
    print_markdown(rows, PICK_COLUMNS + [
        ("ewma", lambda r: r.get("ewma", "")), ("level", lambda r: r.get("level", "")),
        ("choose det.", lambda r: r.get("choose_detection", "")),
        ("choose FAR", lambda r: r.get("choose_far", "")),
        ("detection", lambda r: f"{r['detection_rate']:.2f}"),
        ("excl. 3,9,15", lambda r: f"{r['detection_rate_excl_3_9_15']:.2f}"),
        ("FAR", lambda r: f"{r['far']:.2f}"),
        ("below PCA SPE by >5", lambda r: r.get("below_pca_spe_by_5", ""))])
    print("\nper fault (%), overall picks and PCA SPE with the same alarm:")
    for r in rows:
        if r["pick"] == "overall" and "pca_spe_same_alarm" in r:
            keys = list(r["per_fault"])
            print(f"\n{r['model']} ({r['variant']}) on faults {r['test_on']}:")
            print("| | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1))
            print("| pick | " + " | ".join(f"{r['per_fault'][k]:.1f}" for k in keys) + " |")
            print("| PCA SPE | " + " | ".join(f"{r['pca_spe_same_alarm'][k]:.1f}"
                                             for k in keys) + " |")
    settings = {"selection": "nested (fault halves)", "protocol": data.protocol,
                "splits": SPLITS, "criterion": vars(CRITERION),
                "alarms": [vars(a) for a in ALARMS], "lags": LAGS, "seed": args.seed,
                "autoencoders": aes, "epochs": args.nested_epochs,
                "edge_mode": args.edge_mode, "seconds": round(seconds, 1)}
    common.write_json(args.json, rows, settings)
