"""What the forecasting contract tests share: a family trained tiny on the simulator, and the
check that its edge outputs match Keras within the contract's tolerances.

Tolerance, in scaled units (a tag's training std is 1.0): mean |edge − Keras| ≤ 0.05, 99th
percentile ≤ 0.25, max ≤ 1.0 — on top of the parity gate's +2 % MSE budget that ``build_auto``
enforces (int8 LSTMs show single outliers near 0.5 on a barely trained model)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from edge_runtime.interpreter import EdgeModel
from edge_runtime.tasks.forecast import forecast_outputs
from training.config import TrainConfig
from training.registry import get_family
from training.train import train

# Each family's registered ``small`` arguments keep it training in seconds; recurrent models
# unroll this window. Seed 0 keeps the test split inside the training range (int8 clips what
# calibration never saw).
CANDIDATES = ("int8", "dynamic", "fp32")  # auto order, minus 16x8/fp16 to stay fast
MEAN_ABS_TOL, P99_ABS_TOL, MAX_ABS_TOL = 0.05, 0.25, 1.0


def tiny_forecast(family: str, out: Path, **model_kw) -> Path:
    config = TrainConfig.model_validate({
        "name": f"contract_{family}", "task": "forecast", "family": family,
        "model": get_family(family, "forecast").small | model_kw,
        "data": {"source": "simulator", "simulator": {"steps": 600, "seed": 0}},
        "window": {"period_s": 5, "length": 8, "max_gap_s": 15},
        "horizon": 3, "targets": ["temperature", "level"],
        "fit": {"epochs": 3, "batch_size": 32, "patience": 2, "learning_rate": 0.005},
        "output_dir": str(out),
    })
    return train(config)


def assert_edge_matches_keras(run_dir: Path, bundle, detail: str) -> np.ndarray:
    """The contract's tolerances and the +2 % MSE budget; returns the edge outputs."""
    heldout = np.load(run_dir / "heldout.npz")
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    ref = forecast_outputs(listed(model.predict(heldout["x"], verbose=0)))[0]
    got = forecast_outputs(EdgeModel(bundle.model_path).predict(heldout["x"]))[0]
    levels = bundle.manifest.output.quantiles
    assert got.shape == ref.shape == heldout["y"].shape + ((len(levels),) if levels else ())
    err = np.abs(got - ref)
    assert err.mean() <= MEAN_ABS_TOL, detail
    assert np.quantile(err, 0.99) <= P99_ABS_TOL, detail
    assert err.max() <= MAX_ABS_TOL, detail
    edge, keras_m = bundle.manifest.metrics["edge"], bundle.manifest.metrics["keras"]
    assert edge["mse"] <= keras_m["mse"] * 1.02 + 1e-9
    return got


def listed(out) -> list[np.ndarray]:
    return [np.asarray(o) for o in out] if isinstance(out, list | tuple) else [np.asarray(out)]


