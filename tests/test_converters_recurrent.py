"""Recurrent layers convert automatically: LSTM → fused UNIDIRECTIONAL_SEQUENCE_LSTM via a
tf-keras twin (batch 1, full int8), GRU → unrolled clone; the edge loops over windows and
resets the fused LSTM's state before each invoke."""

from __future__ import annotations

import numpy as np
import pytest

from converters.tflite import convert_many
from edge_runtime.interpreter import EdgeModel

L, F = 12, 2


def _model(kind: str):
    import keras
    from keras import layers

    keras.utils.set_random_seed(1)
    rnn = layers.LSTM if kind == "lstm" else layers.GRU
    inputs = keras.Input((L, F))  # dynamic batch, as the training families build them
    x = rnn(8, unroll=kind == "lstm")(inputs)  # the lstm family's default: still fused
    return keras.Model(inputs, layers.Reshape((3, 2))(layers.Dense(6)(x)))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("rnn")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, L, F)).astype(np.float32)
    np.savez(out / "rep.npz", x=x)
    results = {}
    for kind in ("lstm", "gru"):
        model = _model(kind)
        model.save(out / f"{kind}.keras")
        modes = ("fp32", "int8") if kind == "lstm" else ("int8",)  # int8: the mode that crashes
        infos = convert_many(out / f"{kind}.keras", out / kind, modes, out / "rep.npz")
        results[kind] = (model.predict(x[:16], verbose=0), infos)
    return x[:16], results


@pytest.mark.parametrize("kind,route,marker,mode,tolerance", [
    ("lstm", "fused", "UNIDIRECTIONAL_SEQUENCE_LSTM", "fp32", 1e-4),
    ("lstm", "fused", "UNIDIRECTIONAL_SEQUENCE_LSTM", "int8", 0.08),
    ("gru", "unroll", "FULLY_CONNECTED", "int8", 0.08),
])
def test_recurrent_model_converts(converted, kind, route, marker, mode, tolerance):
    x, results = converted
    ref, infos = results[kind]
    info = infos[mode]
    assert "error" not in info, info.get("error")
    assert info["route"] == route and info["recurrent"] == [kind.upper()]
    assert marker in info["ops"] and "WHILE" not in info["ops"]
    edge = EdgeModel(info["path"])
    got = edge.predict(x)[0]
    assert np.abs(got - ref).max() / np.abs(ref).max() < tolerance
    assert np.array_equal(edge.predict(x)[0], got)  # same input, same output, every call


def test_fused_lstm_runs_batch_one_and_needs_its_state_reset(converted):
    from ai_edge_litert.interpreter import Interpreter

    x, results = converted
    path = results["lstm"][1]["int8"]["path"]
    edge = EdgeModel(path)
    assert edge._stateful and not edge._batched  # fixed batch 1: the edge loops
    # Without a reset, the kernel's variable tensors carry state into the next invoke.
    raw = Interpreter(model_path=path)
    raw.allocate_tensors()
    inp, out = raw.get_input_details()[0], raw.get_output_details()[0]
    scale, zero = inp["quantization"]
    q = np.clip(np.round(x[:1] / scale + zero), -128, 127).astype(inp["dtype"]) if scale else x[:1]
    outputs = []
    for _ in range(2):
        raw.set_tensor(inp["index"], q)
        raw.invoke()
        outputs.append(raw.get_tensor(out["index"]).copy())
    assert not np.array_equal(outputs[0], outputs[1])
    assert np.array_equal(edge.predict(x[:1])[0], edge.predict(x[:1])[0])
