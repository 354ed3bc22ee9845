"""QAT and pruning through tensorflow-model-optimization, in its own tf-keras child process."""

from __future__ import annotations

import numpy as np
import pytest

from converters.optimize import run_tfmot
from converters.tflite import ConversionError
from edge_runtime.interpreter import EdgeModel


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(2)
    out = tmp_path_factory.mktemp("tfmot")
    inputs = keras.Input((8, 3))
    x = keras.layers.Conv1D(8, 3, padding="causal", activation="relu")(inputs)
    x = keras.layers.Dense(16, activation="tanh")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, keras.layers.Reshape((8, 3))(keras.layers.Dense(24)(x)))
    model.save(out / "m.keras")
    windows = np.random.default_rng(0).normal(size=(128, 8, 3)).astype(np.float32)
    np.savez(out / "rep.npz", x=windows)
    return out, model, windows


def test_qat_gives_a_full_int8_model_close_to_float(tiny):
    out, model, windows = tiny
    info = run_tfmot(out / "m.keras", out / "rep.npz", out / "qat", qat=True)
    assert info["route"] == "qat" and info["wrapped_layers"] >= 3  # Conv1D + 2 Dense at least
    edge = EdgeModel(out / "qat" / "int8.tflite")
    assert edge._input["dtype"] == np.float32  # float I/O, int8 inside
    ref = model.predict(windows[:32], verbose=0)
    got = edge.predict(windows[:32])[0]
    assert np.mean(np.abs(got - ref)) / np.mean(np.abs(ref)) < 0.15


def test_pruning_zeroes_the_kernels_and_returns_a_keras3_model(tiny):
    import keras

    out, _, _ = tiny
    info = run_tfmot(out / "m.keras", out / "rep.npz", out / "prune", sparsity=0.5)
    assert info["kernel_sparsity"] == pytest.approx(0.5, abs=0.05)
    pruned = keras.models.load_model(info["path"])
    dense = pruned.layers[-2]
    assert np.mean(dense.get_weights()[0] == 0) >= 0.45
    with pytest.raises(ConversionError, match="between 0 and 1"):
        run_tfmot(out / "m.keras", out / "rep.npz", out / "bad", sparsity=1.5)
