"""Experiment: what a commissioning calibration at the edge does on simulated plants.

The demo's tank autoencoder (``configs/tank_anomaly.yaml`` as is, plus a commissioning
section) is trained, converted to int8 and run through LiteRT, as on a gateway. Each "plant"
is a simulator run of another seed (10 plants), optionally with the temperature transmitter
reading ``--bias`` degC high all along (another operating point). Rows 0–399 are the
commissioning samples; rows 400–899 are normal; rows 900–999 hold a +5 degC temperature step
(the fault the daemon tests use). Three variants judge rows 400–999, each with the alarm
replayed exactly as the gateway runs it (smoothing, delays, deadband):

- ``bundle``: the bundle's own scaler and limit;
- ``limit``: the limit fitted on the commissioning samples (``edge_runtime.commissioning.fit``,
  ``fit="limit"``), the bundle's scaler;
- ``both``: scaler and limit fitted on them.

Printed per variant and bias: false-alarm share (windows with the alarm active among those
ending in the normal rows 411–899), median and range over the plants; the share of fault
windows with the alarm active (median) and the plants where the fault raised it at all.

Usage: python bench/bench_commissioning.py [--plants 10] [--bias 0 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from edge_runtime.alarms import replay  # noqa: E402
from edge_runtime.bundle import Bundle, CalibrationSpec  # noqa: E402
from edge_runtime.commissioning import fit, model_scorer  # noqa: E402
from edge_runtime.interpreter import EdgeModel  # noqa: E402
from edge_runtime.scaling import StandardScaler  # noqa: E402
from edge_runtime.windowing import sliding_windows  # noqa: E402

COMMISSION, NORMAL_END, END = 400, 900, 1000
FAULT_DEGC = 5.0


def build(out: Path) -> Path:
    from converters.build import build_auto
    from training.config import load_train_config
    from training.train import train

    config = load_train_config(ROOT / "configs" / "tank_anomaly.yaml")
    config.output_dir = out / "runs"
    config.calibration = CalibrationSpec(mode="commission", samples=COMMISSION, fit="both")
    bundle, _ = build_auto(train(config), out / "bundles", candidates=("int8",))
    return bundle.root


def plant(seed: int, tags: list[str], bias: float) -> np.ndarray:
    from training.simulator import simulate

    run = simulate(END, 5.0, seed=seed)
    rows = run.values[:, [run.tag_names.index(t) for t in tags]].copy()
    col = tags.index("temperature")
    rows[:, col] += bias
    rows[NORMAL_END:, col] += FAULT_DEGC
    return rows


def judge(rows: np.ndarray, scaler: StandardScaler, spec, score, window: int):
    """(false-alarm share on normal windows, alarm share on fault windows) for rows 400+."""
    x, ends = sliding_windows(scaler.transform(rows[COMMISSION:]), window)
    active = replay(spec, score(x))
    fault = ends + COMMISSION >= NORMAL_END
    return float(active[~fault].mean()), float(active[fault].mean())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plants", type=int, default=10)
    p.add_argument("--bias", type=float, nargs="+", default=[0.0, 3.0])
    p.add_argument("--out", type=Path, default=None, help="work folder (default: temporary)")
    args = p.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="procedge-bench-commission-"))
    bundle = Bundle.load(build(out))
    m = bundle.manifest
    score = model_scorer(EdgeModel(bundle.model_path).predict_each, m.thresholds.score)
    tags, window = m.input.tag_names, m.input.window
    print(f"bundle {bundle.root.name}: {m.quantization}, raise_at {m.thresholds.raise_at:.4g}, "
          f"rule: {m.thresholds.rule}")
    print(f"{'bias':>5} {'variant':>7}  {'FA % median':>11} {'FA % range':>13}  "
          f"{'fault % median':>14} {'plants raised':>13}")
    for bias in args.bias:
        results: dict[str, list[tuple[float, float]]] = {"bundle": [], "limit": [], "both": []}
        for seed in range(100, 100 + args.plants):
            rows = plant(seed, tags, bias)
            results["bundle"].append(judge(rows, StandardScaler.from_spec(m.scaler),
                                           m.thresholds, score, window))
            for how in ("limit", "both"):
                b = fit(rows[:COMMISSION], tags=tags, window=window, thresholds=m.thresholds,
                        scaler=m.scaler, score=score, fit=how)
                results[how].append(judge(rows, b.scaler_or(m.scaler),
                                          b.thresholds(m.thresholds), score, window))
        for variant, found in results.items():
            fa = 100 * np.array([r[0] for r in found])
            det = 100 * np.array([r[1] for r in found])
            print(f"{bias:>5g} {variant:>7}  {np.median(fa):>11.1f} "
                  f"{fa.min():>6.1f}–{fa.max():<6.1f}  {np.median(det):>14.1f} "
                  f"{int((det > 0).sum()):>6}/{len(det)}")


if __name__ == "__main__":
    main()
