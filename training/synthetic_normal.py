"""Synthetic normal operation against a trained anomaly model: windows sampled from a
generative run (a CVAE conditioned on a normal mode, or on its one class) are scored by the
anomaly run's own edge graph and limit, and the share over the limit is set beside the same
share on the anomaly run's real held-out normal windows. A limit that holds on real normal data
should hold on plausible synthetic normal data too; a large difference says the generator (or
the limit) is off.

The comparison is per window (score ≥ ``raise_at``): synthetic windows are independent draws,
so the on/off delays and smoothing, which act on a sequence of windows, do not apply to them.

``python -m training.synthetic_normal --generator RUN --anomaly RUN [--n N] [--condition C]``
prints both shares and the anomaly run's calibrated test false-alarm rate.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge_runtime.bundle import RunRecord
from edge_runtime.scaling import StandardScaler
from edge_runtime.scoring import window_scores


def _scores(anomaly_run: Path, record: RunRecord, x_scaled: np.ndarray) -> np.ndarray:
    import keras

    graph = keras.models.load_model(anomaly_run / "model.keras", compile=False,
                                    safe_mode=False)
    out = graph.predict(x_scaled.astype(np.float32), verbose=0, batch_size=256)
    return window_scores(x_scaled, out if isinstance(out, list) else [out],
                         record.thresholds.score)


def flagged_shares(generator_run: Path, anomaly_run: Path, n: int = 2000,
                   condition: str | None = None, seed: int = 0) -> dict[str, float]:
    """Share of ``n`` synthetic windows, and of the anomaly run's real normal held-out windows,
    whose score reaches the anomaly limit; plus the run's calibrated test false-alarm rate."""
    from training.generative import load_generator
    from training.synthetic import class_indices

    generator_run, anomaly_run = Path(generator_run), Path(anomaly_run)
    gen_record, record = RunRecord.load(generator_run), RunRecord.load(anomaly_run)
    if gen_record.input.tag_names != record.input.tag_names or (
            gen_record.input.window != record.input.window):
        raise ValueError("the generator and the anomaly model must share tags and window "
                         f"length ({gen_record.input.tag_names} × {gen_record.input.window} "
                         f"vs {record.input.tag_names} × {record.input.window})")
    gen, meta = load_generator(generator_run)
    units = StandardScaler.from_spec(gen_record.scaler).inverse(
        gen.sample(class_indices(meta, n, condition), seed=seed))
    synthetic = StandardScaler.from_spec(record.scaler).transform(
        units.reshape(-1, units.shape[2])).reshape(units.shape)
    held = np.load(anomaly_run / "heldout.npz")
    real = held["x"][~held["labels"].astype(bool)]
    limit = record.thresholds.raise_at
    return {"synthetic_over_limit": float((_scores(anomaly_run, record, synthetic)
                                           >= limit).mean()),
            "real_over_limit": float((_scores(anomaly_run, record, real) >= limit).mean()),
            "synthetic_windows": float(n), "real_windows": float(len(real)),
            "test_far": record.metrics["keras"].get("test_far", float("nan")) / 100.0}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.synthetic_normal",
                                description=__doc__.splitlines()[0])
    p.add_argument("--generator", type=Path, required=True, help="generative run directory")
    p.add_argument("--anomaly", type=Path, required=True, help="anomaly run directory")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--condition", help="the generator's class to sample (default: every)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    shares = flagged_shares(args.generator, args.anomaly, args.n, args.condition, args.seed)
    print(json.dumps(shares, indent=2))


if __name__ == "__main__":
    main()
