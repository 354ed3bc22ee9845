"""The contract every soft-sensor family passes: train tiny on the simulator's lab-like
conversion → convert (auto: the smallest mode that passes the parity gate) → run in the LiteRT
interpreter → the edge pipeline publishes the estimate in engineering units.

Tolerance, in scaled target units (the training labels' std is 1.0): mean |edge − Keras| ≤
0.05, max ≤ 0.5, on top of the parity gate's +2 % MSE budget that ``build_auto`` enforces.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from converters.build import OfflineOnlyError, build_auto
from edge_runtime.interpreter import EdgeModel
from edge_runtime.pipelines import ModelPipeline
from edge_runtime.scaling import StandardScaler
from tests.helpers import tiny_soft_sensor
from training.registry import families, get_family

SOFT_SENSORS = sorted(f.name for f in families("soft_sensor"))
CANDIDATES = ("int8", "dynamic", "fp32")
MEAN_ABS_TOL, MAX_ABS_TOL = 0.05, 0.5


def test_every_family_is_covered():
    assert {"simple_rnn", "lstm", "gru", "cnn1d", "attention_rnn", "bigru",
            "bilstm"} <= set(SOFT_SENSORS)


@pytest.mark.parametrize("family", SOFT_SENSORS)
def test_train_convert_run_publishes_the_estimate(family, tmp_path):
    run_dir = tiny_soft_sensor(family, tmp_path / "runs")
    offline = get_family(family, "soft_sensor").offline_only
    if offline:  # bidirectional: refused for deployment unless asked for
        with pytest.raises(OfflineOnlyError, match="offline-only"):
            build_auto(run_dir, tmp_path / "bundles")
    bundle, attempts = build_auto(run_dir, tmp_path / "bundles", CANDIDATES,
                                  allow_offline=offline)
    manifest = bundle.manifest
    detail = f"{family} ({manifest.quantization}; {attempts})"
    heldout = np.load(run_dir / "heldout.npz")
    ref = keras.models.load_model(run_dir / "model.keras", compile=False).predict(
        heldout["x"], verbose=0)
    got = EdgeModel(bundle.model_path).predict(heldout["x"])[0]
    assert got.shape == ref.shape == heldout["y"].shape == (len(heldout["x"]), 1), detail
    err = np.abs(got - ref)
    assert err.mean() <= MEAN_ABS_TOL and err.max() <= MAX_ABS_TOL, detail
    assert manifest.metrics["edge"]["mse"] <= manifest.metrics["keras"]["mse"] * 1.02 + 1e-9
    # the references are stored beside the model's own test metrics
    trained = manifest.metrics["training"]
    for key in ("rmse", "r2", "pls_rmse", "last_value_rmse", "labels_test"):
        assert np.isfinite(trained[key]), (key, trained)
    # the edge pipeline: one window in engineering units → the estimate in the target's unit
    spec = manifest.soft_sensor
    assert spec.target == "conversion" and spec.unit == "%" and spec.dead_time_s == 20
    window = StandardScaler.from_spec(manifest.scaler).inverse(heldout["x"][0])
    [output] = ModelPipeline("ss", bundle).infer(1.8e9, window)
    payload = output.payload
    assert payload["target"] == "conversion" and payload["bias"] == 0.0
    assert payload["estimate"] == pytest.approx(spec.to_units(got[0, 0]), abs=1e-3)
    print(f"{family}: shipped {manifest.quantization}; rmse {trained['rmse']:.3f}, "
          f"pls {trained['pls_rmse']:.3f}, last value {trained['last_value_rmse']:.3f}")
