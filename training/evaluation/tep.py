"""``procedge eval tep --root PATH``: fault detection on the Tennessee Eastman Process.

Train on ``d00.dat`` (stored 52×500, transposed on load), calibrate the alarm limit on
held-apart normal data at each ``--levels`` (default 95 % and 99 %), then report per fault the
detection rate (% of faulty samples flagged) and the false-alarm rate on normal data.

* With test files (``d00_te.dat`` … ``d21_te.dat``) in the root — the published protocol:
  fit on all of ``d00.dat``, limit and FAR from ``d00_te.dat``, faults from sample 161 of
  each ``dXX_te.dat`` (samples 1–160 are normal lead-in; their alarm share is ``far_lead``).
* Otherwise (development): fit on rows 0–299 of ``d00.dat``, limit on rows 300–399, FAR on
  rows 400–499; each training fault file ``dXX.dat`` (all 480 samples faulty) is scored after
  those 100 normal rows as lead-in, so windows and smoothing start from normal operation.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.scaling import StandardScaler
from training.evaluation import common
from training.pca_monitor import PCAMonitor

log = logging.getLogger(__name__)
FAULTS = tuple(range(1, 22))
HARD = (3, 9, 15)
TE_ONSET = 160  # fault introduced at the 161st sample of every dXX_te.dat


@dataclass
class TepData:
    protocol: str  # "published" or "development"
    fit: np.ndarray  # normal rows to fit scaler and model
    calib: np.ndarray  # normal rows (with lead-in history) to calibrate the limit
    far: np.ndarray  # normal rows (with lead-in history) for the false-alarm rate
    faults: dict[int, np.ndarray]  # fault id → rows (lead-in + faulty)
    onset: dict[int, int]  # fault id → index of the first faulty row
    lead: int  # rows of history at the start of calib/far that are not scored


def _load(path: Path) -> np.ndarray:
    rows = np.loadtxt(path)
    return rows.T if rows.shape[0] == 52 and rows.shape[1] != 52 else rows


def load_tep(root: Path, window: int) -> TepData:
    root = Path(root)
    d00 = _load(root / "d00.dat")
    lead = max(window - 1, 0)
    if (root / "d00_te.dat").is_file():
        te = _load(root / "d00_te.dat")
        faults = {k: _load(root / f"d{k:02d}_te.dat") for k in FAULTS
                  if (root / f"d{k:02d}_te.dat").is_file()}
        rows_te = np.concatenate([d00[-lead:], te]) if lead else te
        return TepData("published", d00, rows_te, rows_te, faults,
                       dict.fromkeys(faults, TE_ONSET), lead)
    lead_in = d00[400:500]
    faults = {k: np.concatenate([lead_in, _load(root / f"d{k:02d}.dat")]) for k in FAULTS
              if (root / f"d{k:02d}.dat").is_file()}
    return TepData("development", d00[:300], d00[300 - lead:400], d00[400 - lead:500],
                   faults, dict.fromkeys(faults, len(lead_in)), lead)


class Scorer:
    """One detector's score per row of any block of rows (scaled)."""

    def __init__(self, name: str, data: TepData, s: common.Settings, scaler, edge):
        self.name, self.s = name, s
        fit = scaler.transform(data.fit)
        self.variants: list[tuple[str, str, object]] = []
        if name.startswith("pca"):
            pca = PCAMonitor.fit(fit, s.pca_variance)
            self.variants.append(("numpy", "float64", pca))
            return
        model = common.fit_family(name, fit, s)
        self.variants.append(("keras", "float32", model))
        if s.edge_mode != "none" and name in s.edge_families:
            self.variants.append(("edge", s.edge_mode, edge(model, fit, s.window, s.seed)))

    def stats(self, obj, rows: np.ndarray) -> list[np.ndarray]:
        """Score streams that each get a limit; a row is flagged if any stream alarms."""
        if isinstance(obj, PCAMonitor):
            return {"pca_t2": [obj.t2(rows)], "pca_spe": [obj.spe(rows)],
                    "pca_t2_spe": [obj.t2(rows), obj.spe(rows)]}[self.name]
        if hasattr(obj, "op_names"):  # LiteRT EdgeModel
            return [common.edge_scores(obj, rows, self.s.window).score]
        return [common.keras_scores(obj, rows, self.s.window).score]


def evaluate(data: TepData, s: common.Settings, levels: list[float]) -> list[dict]:
    scaler = StandardScaler.fit(data.fit)
    calib, far = scaler.transform(data.calib), scaler.transform(data.far)
    faults = {k: scaler.transform(v) for k, v in data.faults.items()}
    edge = common.EdgeConverter(s.edge_mode)
    names = [n for n in s.families if n != common.PCA_NAME]
    if common.PCA_NAME in s.families:
        names = ["pca_t2", "pca_spe", "pca_t2_spe", *names]
    results = []
    for name in names:
        scorer = Scorer(name, data, s, scaler, edge)
        for variant, mode, obj in scorer.variants:
            calib_stats = [st[data.lead:] for st in scorer.stats(obj, calib)]
            far_stats = scorer.stats(obj, far)
            fault_stats = {k: scorer.stats(obj, rows) for k, rows in faults.items()}
            for level in levels:
                ls = common.Settings(**{**vars(s), "level": level})
                specs = [ls.spec(st) for st in calib_stats]
                far_flags = _flags(specs, far_stats)[data.lead:]
                per_fault, lead_alarms = {}, []
                for k, stats in fault_stats.items():
                    flags = _flags(specs, stats)
                    per_fault[k] = 100.0 * float(flags[data.onset[k]:].mean())
                    if data.protocol == "published":
                        lead_alarms.append(flags[:data.onset[k]])
                row = {"model": name, "variant": variant, "mode": mode, "level": level,
                       **_summary(per_fault), "far": 100.0 * float(far_flags.mean())}
                if lead_alarms:
                    row["far_lead"] = 100.0 * float(np.concatenate(lead_alarms).mean())
                results.append(row)
    edge.close()
    return results


def _flags(specs, stats: list[np.ndarray]) -> np.ndarray:
    flags = np.zeros(len(stats[0]), dtype=bool)
    for spec, st in zip(specs, stats, strict=True):
        flags |= common.flags_from(spec, st)
    return flags


def _summary(per_fault: dict[int, float]) -> dict:
    rest = [v for k, v in per_fault.items() if k not in HARD]
    return {"detection_rate": float(np.mean(list(per_fault.values()))),
            "detection_rate_excl_3_9_15": float(np.mean(rest)),
            "per_fault": {f"{k:02d}": round(v, 2) for k, v in per_fault.items()}}


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="procedge eval tep", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True, help="folder with d00.dat, d01.dat …")
    p.add_argument("--levels", type=float, nargs="+", default=[0.95, 0.99])
    common.add_settings_args(p, window=10, level=0.95)
    args = p.parse_args(argv)
    s = common.settings_from_args(args)
    data = load_tep(args.root, s.window)
    start = time.time()
    rows = evaluate(data, s, args.levels)
    print(f"TEP ({data.protocol} protocol): {len(data.faults)} faults under {args.root},"
          f" {time.time() - start:.0f} s")
    common.print_table(rows, ["level", "detection_rate", "detection_rate_excl_3_9_15", "far"])
    print("\nper fault (%):")
    keys = list(rows[0]["per_fault"]) if rows else []
    print("| model | variant | level | " + " | ".join(keys) + " |")
    print("|" + "---|" * (len(keys) + 3))
    for r in rows:
        print(f"| {r['model']} | {r['variant']} | {r['level']} | "
              + " | ".join(f"{r['per_fault'][k]:.0f}" for k in keys) + " |")
    common.write_json(args.json, rows, vars(s) | {"levels": args.levels,
                                                  "protocol": data.protocol})
