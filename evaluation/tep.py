"""``procedge eval tep --root PATH``: fault detection on the Tennessee Eastman Process.

Train on ``d00.dat`` (stored 52×500, transposed on load), calibrate the alarm limit on
held-apart normal data at each ``--levels`` (default 95 % and 99 %), then report per fault the
detection rate (% of faulty samples flagged) and the false-alarm rate on normal data.

* With test files (``d00_te.dat`` … ``d21_te.dat``) in the root — the published protocol:
  fit on all of ``d00.dat``, limit and FAR from ``d00_te.dat``, faults from sample 161 of
  each ``dXX_te.dat`` (samples 1–160 are normal lead-in; their alarm share is ``far_lead``).
* Otherwise (development): fit on rows 0–299 of ``d00.dat``; the 200 held-apart normal rows
  300–499 are split in two blocks and used twice (2-fold cross-calibration): limit on rows
  300–399 and FAR on rows 400–499, then the other way round. Detection rates and FAR are the
  mean of the two folds (``far_folds`` keeps both): 100 autocorrelated samples give a FAR that
  swings by several points with the block, and one block alone reads 0 % or 15 % by chance.
  Each training fault file ``dXX.dat`` (all 480 samples faulty) is scored after rows 400–499
  as lead-in, so windows and smoothing start from normal operation.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.scaling import StandardScaler
from evaluation import common, nested
from training.pca_monitor import PCAMonitor
from training.progress import progress

log = logging.getLogger(__name__)
FAULTS = tuple(range(1, 22))
HARD = (3, 9, 15)
TE_ONSET = 160  # fault introduced at the 161st sample of every dXX_te.dat


@dataclass
class TepData:
    protocol: str  # "published" or "development"
    fit: np.ndarray  # normal rows to fit scaler and model
    folds: list[tuple[np.ndarray, np.ndarray]]  # (limit rows, FAR rows), each with lead-in
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
        return TepData("published", d00, [(rows_te, rows_te)], faults,
                       dict.fromkeys(faults, TE_ONSET), lead)
    lead_in = d00[400:500]
    faults = {k: np.concatenate([lead_in, _load(root / f"d{k:02d}.dat")]) for k in FAULTS
              if (root / f"d{k:02d}.dat").is_file()}
    a, b = d00[300 - lead:400], d00[400 - lead:500]
    return TepData("development", d00[:300], [(a, b), (b, a)], faults,
                   dict.fromkeys(faults, len(lead_in)), lead)


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
            converted = edge(model, fit, s.window, s.seed, s.score)
            self.variants.append(("edge", s.edge_mode, converted))

    def stats(self, obj, rows: np.ndarray) -> list[np.ndarray]:
        """Score streams that each get a limit; a row is flagged if any stream alarms."""
        if isinstance(obj, PCAMonitor):
            return {"pca_t2": [obj.t2(rows)], "pca_spe": [obj.spe(rows)],
                    "pca_t2_spe": [obj.t2(rows), obj.spe(rows)]}[self.name]
        if hasattr(obj, "op_names"):  # LiteRT EdgeModel
            return [common.edge_scores(obj, rows, self.s.window, self.s.score).score]
        return [common.keras_scores(obj, rows, self.s.window, self.s.score).score]


def evaluate(data: TepData, s: common.Settings, levels: list[float],
             rules: list[str] | None = None) -> list[dict]:
    """One row per detector, variant, limit rule (default: ``s.rule``) and level; the rules
    and levels are applied to the same scores, so they compare limits, not trainings."""
    scaler = StandardScaler.fit(data.fit)
    folds = [(scaler.transform(c), scaler.transform(f)) for c, f in data.folds]
    faults = {k: scaler.transform(v) for k, v in data.faults.items()}
    edge = common.EdgeConverter(s.edge_mode)
    names = [n for n in s.families if n != common.PCA_NAME]
    if common.PCA_NAME in s.families:
        names = ["pca_t2", "pca_spe", "pca_t2_spe", *names]
    results = []
    for name in progress(names, "TEP models", unit="model"):
        scorer = Scorer(name, data, s, scaler, edge)
        for variant, mode, obj in scorer.variants:
            fold_stats = [([st[data.lead:] for st in scorer.stats(obj, c)],
                           scorer.stats(obj, f)) for c, f in folds]
            fault_stats = {k: scorer.stats(obj, rows) for k, rows in faults.items()}
            for rule, level in itertools.product(rules or [s.rule], levels):
                ls = common.Settings(**{**vars(s), "rule": rule, "level": level})
                runs = [_score_fold(data, [ls.spec(st) for st in calib], far, fault_stats)
                        for calib, far in fold_stats]
                per_fault = {k: float(np.mean([r[0][k] for r in runs])) for k in fault_stats}
                row = {"model": name, "variant": variant, "mode": mode, "rule": rule,
                       "level": level, **_summary(per_fault),
                       "far": float(np.mean([r[1] for r in runs]))}
                if len(runs) > 1:
                    row["far_folds"] = [round(r[1], 2) for r in runs]
                if data.protocol == "published":
                    row["far_lead"] = runs[0][2]
                results.append(row)
    edge.close()
    return results


def _score_fold(data: TepData, specs, far_stats, fault_stats) -> tuple[dict, float, float]:
    """Detection rate per fault, FAR, and lead-in alarm share under one set of limits."""
    far = 100.0 * float(nested.alarm_flags(specs, far_stats)[data.lead:].mean())
    per_fault, lead_alarms = {}, []
    for k, stats in fault_stats.items():
        flags = nested.alarm_flags(specs, stats)
        per_fault[k] = 100.0 * float(flags[data.onset[k]:].mean())
        lead_alarms.append(flags[:data.onset[k]])
    lead = 100.0 * float(np.concatenate(lead_alarms).mean()) if lead_alarms else 0.0
    return per_fault, far, lead


def _summary(per_fault: dict[int, float]) -> dict:
    rest = [v for k, v in per_fault.items() if k not in HARD]
    return {"detection_rate": float(np.mean(list(per_fault.values()))),
            "detection_rate_excl_3_9_15": float(np.mean(rest)),
            "per_fault": {f"{k:02d}": round(v, 2) for k, v in per_fault.items()}}


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="procedge eval tep", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, required=True, help="folder with d00.dat, d01.dat …")
    p.add_argument("--levels", type=float, nargs="+", default=[0.95, 0.99])
    p.add_argument("--rules", nargs="+", choices=["quantile", "coverage", "kde"],
                   help="several limit rules on the same scores (default: --rule)")
    nested.add_protocol_args(p, "fault", "chosen on one half of the faults, reported on the"
                             " other (tep_nested.py)", aes="conv_ae:10,conv_ae:40,lstm_ae:20",
                             epochs=30)
    common.add_settings_args(p, window=10, level=0.95)
    args = p.parse_args(argv)
    if args.protocol == "nested":
        nested.refuse_development_settings(p, args)
        from evaluation import tep_nested

        tep_nested.main(args)
        return
    print("development protocol: the settings given on the command line, on every fault;"
          " figures are label-informed when those settings were chosen on these faults")
    s = common.settings_from_args(args)
    data = load_tep(args.root, s.window)
    start = time.time()
    rows = evaluate(data, s, args.levels, args.rules)
    print(f"TEP ({data.protocol} protocol): {len(data.faults)} faults under {args.root},"
          f" {time.time() - start:.0f} s")
    keys = ["rule", "level", "detection_rate", "detection_rate_excl_3_9_15", "far"]
    common.print_table(rows, keys + ["far_folds"] * (len(data.folds) > 1))
    print("\nper fault (%):")
    keys = list(rows[0]["per_fault"]) if rows else []
    print("| model | variant | rule | level | " + " | ".join(keys) + " |")
    print("|" + "---|" * (len(keys) + 4))
    for r in rows:
        print(f"| {r['model']} | {r['variant']} | {r['rule']} | {r['level']} | "
              + " | ".join(f"{r['per_fault'][k]:.0f}" for k in keys) + " |")
    common.write_json(args.json, rows, vars(s) | {"levels": args.levels, "rules": args.rules,
                                                  "protocol": data.protocol,
                                                  "selection": "development (as given)"})
