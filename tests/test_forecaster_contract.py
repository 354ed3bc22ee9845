"""The contract every forecasting family passes: train tiny on the simulator → convert (auto:
the smallest mode that passes the parity gate) → run in the LiteRT interpreter → the edge
outputs match Keras.

Tolerance, in scaled units (a tag's training std is 1.0): mean |edge − Keras| ≤ 0.05, 99th
percentile ≤ 0.25, max ≤ 1.0 — on top of the parity gate's +2 % MSE budget that ``build_auto``
enforces (int8 LSTMs show single outliers near 0.5 on a barely trained model).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from converters.build import OfflineOnlyError, build_auto
from edge_runtime.interpreter import EdgeModel
from training.config import TrainConfig
from training.registry import families
from training.train import train

FORECASTERS = sorted(f.name for f in families("forecast"))
# Kept small so each family trains in seconds; recurrent models unroll this window. Seed 0
# keeps the test split inside the training range (int8 clips what calibration never saw).
SMALL = {"dlinear": {"subtract_last": True, "init": "zeros"},
         "tcn": {"filters": 8, "dilations": [1, 2, 4]}, "lstm": {"units": [8]},
         "gru": {"units": [8]}, "bilstm": {"units": [8]}, "seq2seq": {"units": 8},
         "transformer": {"d_model": 8, "heads": 2, "ff": 16, "blocks": 1}}
CANDIDATES = ("int8", "dynamic", "fp32")  # auto order, minus 16x8/fp16 to stay fast
MEAN_ABS_TOL, P99_ABS_TOL, MAX_ABS_TOL = 0.05, 0.25, 1.0


def tiny_forecast(family: str, out: Path) -> Path:
    config = TrainConfig.model_validate({
        "name": f"contract_{family}", "task": "forecast", "family": family,
        "model": SMALL.get(family, {}),
        "data": {"source": "simulator", "simulator": {"steps": 600, "seed": 0}},
        "window": {"period_s": 5, "length": 8, "max_gap_s": 15},
        "horizon": 3, "targets": ["temperature", "level"],
        "fit": {"epochs": 3, "batch_size": 32, "patience": 2, "learning_rate": 0.005},
        "output_dir": str(out),
    })
    return train(config)


def test_every_family_is_covered():
    assert {"linear", "dlinear", "lstm", "gru", "bilstm", "seq2seq", "transformer",
            "tcn"} <= set(FORECASTERS)


@pytest.mark.parametrize("family", FORECASTERS)
def test_train_convert_run_matches_keras(family, tmp_path):
    run_dir = tiny_forecast(family, tmp_path / "runs")
    offline = family == "bilstm"
    if offline:
        with pytest.raises(OfflineOnlyError, match="offline-only"):
            build_auto(run_dir, tmp_path / "bundles")
    bundle, attempts = build_auto(run_dir, tmp_path / "bundles", CANDIDATES,
                                  allow_offline=offline)
    heldout = np.load(run_dir / "heldout.npz")
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    ref = model.predict(heldout["x"], verbose=0)
    got = EdgeModel(bundle.model_path).predict(heldout["x"])[0]
    assert got.shape == ref.shape == heldout["y"].shape
    err = np.abs(got - ref)
    detail = f"{family} ({bundle.manifest.quantization}; {attempts})"
    assert err.mean() <= MEAN_ABS_TOL, detail
    assert np.quantile(err, 0.99) <= P99_ABS_TOL, detail
    assert err.max() <= MAX_ABS_TOL, detail
    # every family converts to builtin-op int8 (it may still miss the +2 % MSE budget)
    assert attempts[0].startswith("int8:") and "conversion of" not in attempts[0], attempts
    print(f"{family}: shipped {bundle.manifest.quantization}; {attempts}")
    edge, keras_m = bundle.manifest.metrics["edge"], bundle.manifest.metrics["keras"]
    assert edge["mse"] <= keras_m["mse"] * 1.02 + 1e-9


@pytest.mark.parametrize("attention", ["additive", "dot"])
def test_seq2seq_attention_weights_and_heatmap(attention, tmp_path):
    from training import plots
    from training.forecasters import attention_model, seq2seq

    weights = attention_model(seq2seq(12, 3, 4, 1, attention=attention)).predict(
        np.random.default_rng(0).standard_normal((2, 12, 3)).astype(np.float32), verbose=0)
    assert weights.shape == (2, 4, 12)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)  # softmax over the window
    assert plots.attention_heatmap(weights[0], tmp_path / "a.png", "s2s").stat().st_size > 0
