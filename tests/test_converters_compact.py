"""The compaction pass drops only bytes the interpreter never reads: the compacted model is
smaller and LiteRT returns bit-identical outputs; int8 convolutions go per tensor only when
measured as close to Keras as per channel; a fixed batch of one folds the shape ops away."""

from __future__ import annotations

import numpy as np
import pytest

from converters import worker
from converters.compact import compact
from converters.footprint import footprint
from converters.ops import model_ops
from edge_runtime.interpreter import EdgeModel

L, F = 16, 3


def _conv_model(seed: int = 0):
    """Conv1D down, UpSampling + Conv1D back, a Dense head: the shapes of the conv_ae family
    (ExpandDims/Conv2D/Squeeze, dynamic-batch shape ops), with trained-like biases."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((L, F))
    x = layers.Conv1D(8, 3, strides=2, padding="same", activation="tanh")(inputs)
    x = layers.UpSampling1D(2)(x)
    x = layers.Conv1D(4, 3, padding="same", activation="tanh")(x)
    model = keras.Model(inputs, layers.Dense(F)(x))
    rng = np.random.default_rng(seed)
    for w in model.trainable_weights:
        w.assign(rng.normal(scale=0.3, size=tuple(w.shape)).astype(np.float32))
    return model


def _tensors(data: bytes) -> list:
    from ai_edge_litert import schema_py_generated as schema

    return schema.ModelT.InitFromPackedBuf(bytearray(data), 0).subgraphs[0].tensors


@pytest.fixture(scope="module")
def windows():
    return np.random.default_rng(1).normal(size=(64, L, F)).astype(np.float32)


@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_compacted_model_is_smaller_and_bit_identical(mode, windows, tmp_path):
    raw = worker.to_tflite(_conv_model(), mode, windows)
    small = compact(raw)
    (tmp_path / "raw.tflite").write_bytes(raw)
    (tmp_path / "small.tflite").write_bytes(small)
    assert len(small) < len(raw) - 2000, (len(raw), len(small))
    assert footprint(tmp_path / "raw.tflite").name_bytes > 0
    assert footprint(tmp_path / "small.tflite").name_bytes == 0
    assert model_ops(tmp_path / "small.tflite") == model_ops(tmp_path / "raw.tflite")
    before, after = EdgeModel(tmp_path / "raw.tflite"), EdgeModel(tmp_path / "small.tflite")
    assert after._batched and after._input["dtype"] == before._input["dtype"]  # batch stays -1
    x = np.random.default_rng(2).normal(size=(8, L, F)).astype(np.float32)
    assert np.array_equal(after.predict(x)[0], before.predict(x)[0])  # a batch of 8
    assert np.array_equal(after.predict_each(x[:1])[0], before.predict_each(x[:1])[0])
    assert compact(small) == small  # nothing left to drop
    ranked = [[bool(t.hasRank) for t in _tensors(data) if t.shape is not None and len(t.shape)]
              for data in (raw, small)]
    assert any(ranked[0]) and not any(ranked[1])  # has_rank: never read, shape gives the rank


def test_int8_convolutions_go_per_tensor_when_as_close(windows):
    model = _conv_model()
    per_channel = worker.to_tflite(model, "int8", windows)
    data, info = worker.int8_granularity(model, model, per_channel, windows, False)
    errors = info["int8_rel_error"]
    assert info["int8_granularity"] == "per-tensor"  # channels alike: one scale is enough
    assert errors["per_tensor"] <= errors["per_channel"] * (1 + worker.PER_TENSOR_SLACK)
    assert len(compact(data)) < len(compact(per_channel))


def test_int8_convolutions_stay_per_channel_when_per_tensor_is_worse(windows, monkeypatch):
    model = _conv_model()
    per_channel = worker.to_tflite(model, "int8", windows)
    # The choice itself, with per-tensor measured 20 % worse than per channel.
    measured = iter([0.010, 0.012])
    monkeypatch.setattr(worker, "_relative_error", lambda *args: next(measured))
    data, info = worker.int8_granularity(model, model, per_channel, windows, False)
    assert info["int8_granularity"] == "per-channel" and data == per_channel


@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_batch_one_export_folds_the_shape_ops_and_loops_over_a_batch(mode, windows, tmp_path):
    from converters.ops import input_batch

    model = _conv_model()
    paths = {}
    for batch, made in (("dynamic", model), ("one", worker.fixed_batch(model))):
        paths[batch] = tmp_path / f"{batch}.tflite"
        paths[batch].write_bytes(compact(worker.to_tflite(made, mode, windows)))
    one, dynamic = EdgeModel(paths["one"]), EdgeModel(paths["dynamic"])
    assert input_batch(paths["one"]) == "one" and input_batch(paths["dynamic"]) == "dynamic"
    assert "SHAPE" in model_ops(paths["dynamic"])  # UpSampling1D's reshape, from the batch
    assert "SHAPE" not in model_ops(paths["one"])
    assert len(one.ops()) < len(dynamic.ops())
    assert paths["one"].stat().st_size < paths["dynamic"].stat().st_size
    assert not one._batched
    x = np.random.default_rng(3).normal(size=(8, L, F)).astype(np.float32)
    got = one.predict(x)[0]  # a batch of 8 on a batch-1 model: one invoke per window
    assert got.shape == (8, L, F)
    assert np.array_equal(got[5:6], one.predict_each(x[5:6])[0])
    first = one.predict_each(x[:1])[0]  # an output the caller owns: the next invoke keeps it
    kept = first.copy()
    one.predict_each(x[1:2])
    assert np.array_equal(first, kept) and not np.array_equal(first, got[1:2])
    tolerance = 1e-5 if mode == "fp32" else 0.1 * float(np.mean(np.abs(got)))
    assert float(np.mean(np.abs(got - model.predict(x, verbose=0)))) < tolerance
    if mode == "fp32":  # same arithmetic as the dynamic-batch graph
        assert np.allclose(got, dynamic.predict(x)[0], atol=1e-6)


@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_constant_data_stays_16_byte_aligned(mode, windows):
    """As the converter writes it (schema ``force_align: 16``): a gateway's SIMD kernels may
    load weights with aligned loads."""
    from ai_edge_litert import schema_py_generated as schema

    data = compact(worker.to_tflite(_conv_model(), mode, windows))
    model = schema.Model.GetRootAs(data, 0)
    starts = []
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        if buffer.DataLength():
            starts.append(buffer._tab.Vector(buffer._tab.Offset(4)))  # field 0: data
    assert len(starts) >= 4 and all(s % 16 == 0 for s in starts), starts


def _lstm_twin():
    """A two-output LSTM model's tf-keras twin (the fused route's input to the converter)."""
    import keras
    from keras import layers

    from converters.twin import tf_keras_twin

    keras.utils.set_random_seed(0)
    inputs = keras.Input((L, F))
    x = layers.LSTM(6)(inputs)
    model = keras.Model(inputs, [layers.Dense(2, name="b")(x), layers.Dense(1, name="a")(x)])
    return tf_keras_twin(model, batch_size=1)


@pytest.mark.parametrize(("make", "mode"), [(_conv_model, "int8"), (_lstm_twin, "dynamic")],
                         ids=["keras3-int8", "tf_keras-twin-dynamic"])
def test_one_export_converts_exactly_as_from_keras_model(make, mode, windows):
    """The worker exports each model once and converts every mode from that SavedModel; the
    flatbuffer (names dropped) is the one TFLiteConverter.from_keras_model writes, outputs
    and their order included."""
    import tensorflow as tf

    model = make()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.exclude_conversion_metadata = True
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    worker.mode_settings(mode)(converter, tf, windows, False, True)
    assert compact(worker.to_tflite(model, mode, windows)) == compact(converter.convert())
    assert worker.saved_model(model) == worker.saved_model(model)  # exported once
