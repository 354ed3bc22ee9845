"""Converter: auto mode measures every candidate through LiteRT, falls back when int8 misses
its budget, ships nothing when no mode passes, and refuses Flex ops by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from converters.build import ConvertOptions, build, choose
from converters.footprint import footprint
from converters.tflite import ConversionError, check_builtin_ops, convert
from edge_runtime.bundle import Bundle
from edge_runtime.interpreter import EdgeModel
from tests.helpers import tiny_config
from training.train import train

# Mean output error each mode may show against Keras on held-out windows (scaled units).
TOLERANCE = {"fp32": 1e-5, "fp16": 1e-3, "dynamic": 1e-2, "int16x8": 1e-2, "int8": 0.1}


@pytest.fixture(scope="module")
def forecast_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("conv")
    config = tiny_config("tank_forecast", out)
    config.data.simulator.steps = 1500
    config.fit.epochs = 4
    return train(config)


def test_auto_measures_every_candidate_and_ships_the_choice(forecast_run, tmp_path):
    bundle, report = build(forecast_run, tmp_path)
    rows = {r["mode"]: r for r in report["candidates"]}
    assert set(rows) == {"int8", "int16x8", "dynamic", "fp16", "fp32"}
    for mode, row in rows.items():  # parity of every mode auto may choose, measured in LiteRT
        assert row["parity"]["output_mean_abs_error"] < TOLERANCE[mode], mode
        assert row["edge_p50_ms"] > 0 and row["bytes"] > 0
    assert rows["fp32"]["passed"] and rows["fp32"]["parity"]["output_max_abs_error"] < 1e-4
    chosen = rows[report["choice"]]
    assert chosen["passed"] and bundle.manifest.quantization == report["choice"]
    # A tcn (no recurrent layer): fixed batch of one by default, recorded and in the file.
    assert report["batch"] == "one" and {r["batch"] for r in rows.values()} == {"one"}
    assert bundle.manifest.batch == "one" and "SHAPE" not in chosen["ops"]
    # auto's rule on the rows it measured: the smallest passing file within 10 % (or
    # 0.01 ms) of the fastest
    fastest = min(r["edge_p50_ms"] for r in rows.values() if r["passed"])
    assert chosen["bytes"] == min(r["bytes"] for r in rows.values() if r["passed"]
                                  and r["edge_p50_ms"] <= max(1.1 * fastest, fastest + 0.01))
    for name in ("conversion.json", "conversion.md", "parity.json"):
        assert name in bundle.manifest.files
    assert report["choice"] in (bundle.root / "conversion.md").read_text()
    # The shipped model, reloaded the way the gateway does, agrees with the report.
    heldout = np.load(forecast_run / "heldout.npz")
    got = EdgeModel(Bundle.load(bundle.root).model_path).predict(heldout["x"])[0]
    mse = float(np.mean((got - heldout["y"]) ** 2))
    assert mse == pytest.approx(bundle.manifest.metrics["edge"]["mse"], rel=1e-5)
    quantized = bundle.manifest.quantization in ("int8", "int16x8")
    assert bool(bundle.manifest.representative_sha256) == quantized
    # The calibration draw (operating modes, windows per mode) is in the report and manifest.
    sampling = report["representative"]
    assert sampling["modes"] >= 2 and sum(sampling["mode_sampled"]) > 0
    assert sum(sampling["mode_windows"]) == sampling["training_windows"]
    assert "mode(s)" in (bundle.root / "conversion.md").read_text()
    # The tcn's int8 convolutions: per channel or per tensor, measured and recorded.
    granularity = rows["int8"]["int8_granularity"]
    assert set(rows["int8"]["int8_rel_error"]) == {"per_channel", "per_tensor"}
    assert f"conv {granularity}" in (bundle.root / "conversion.md").read_text()
    if quantized:
        assert bundle.manifest.representative_sampling["modes"] == sampling["modes"]


def test_int8_missing_the_budget_falls_back_to_the_next_mode(forecast_run, tmp_path):
    # Calibration windows that cover 1 % of the real range: int8 clips every input.
    run = tmp_path / "run"
    shutil.copytree(forecast_run, run)
    x = np.load(run / "representative.npz")["x"]
    np.savez_compressed(run / "representative.npz", x=x * 0.01)
    bundle, report = build(run, tmp_path / "out", ConvertOptions(candidates=("int8", "fp16")))
    int8 = report["candidates"][0]
    assert not int8["passed"] and "edge MSE" in int8["reasons"][0]
    assert report["choice"] == "fp16" and bundle.manifest.quantization == "fp16"
    on_disk = json.loads((bundle.root / "conversion.json").read_text())
    assert [r["mode"] for r in on_disk["candidates"]] == ["int8", "fp16"]
    assert on_disk["budgets"]["forecast_mse_rel"] == 0.02
    assert "FULLY_CONNECTED" in on_disk["candidates"][1]["ops"]


def test_no_passing_mode_fails_and_ships_nothing(forecast_run, tmp_path):
    with pytest.raises(ConversionError, match="no mode passed"):
        build(forecast_run, tmp_path, ConvertOptions(candidates=("fp32",), budget=-0.5))
    assert list(tmp_path.iterdir()) == []


def test_choice_is_by_measured_latency_not_by_size():
    rows = [{"mode": "int8", "passed": True, "bytes": 10, "edge_p50_ms": 0.4},
            {"mode": "fp16", "passed": True, "bytes": 20, "edge_p50_ms": 0.1},
            {"mode": "fp32", "passed": True, "bytes": 40, "edge_p50_ms": 0.105}]
    assert choose(rows)[0] == "fp16"  # int8 is smaller but 4x slower here
    rows[0]["edge_p50_ms"] = 0.105
    assert choose(rows)[0] == "int8"  # within 10 % of the fastest: the smallest wins
    assert choose([dict(rows[0], passed=False)])[0] is None
    rows[0]["edge_p50_ms"] = 1.2
    assert choose(rows)[0] == "fp16"  # 12x: far past both the 10 % and the 0.01 ms floor


def test_microsecond_differences_do_not_choose_the_mode():
    """Tiny models: 15 % apart at 4 µs is timer noise (the order flips between runs), so
    the smallest passing mode ships, whichever happened to time faster."""
    tiny = [{"mode": "dynamic", "passed": True, "bytes": 9024, "edge_p50_ms": 0.00481},
            {"mode": "fp16", "passed": True, "bytes": 10832, "edge_p50_ms": 0.00412}]
    assert choose(tiny) == ("dynamic", "dynamic: 9024 bytes, 0.00481 ms/window; smallest of "
                                       "the passing modes within 10% or 0.01 ms of the fastest "
                                       "(0.00412 ms)")
    swapped = [dict(tiny[0], edge_p50_ms=0.00412), dict(tiny[1], edge_p50_ms=0.00481)]
    assert choose(swapped)[0] == "dynamic"
    assert choose(tiny, floor_ms=0.0)[0] == "fp16"  # without the floor, the noise decided
    slow_int8 = [{"mode": "int8", "passed": True, "bytes": 5120, "edge_p50_ms": 0.0525},
                 {"mode": "fp32", "passed": True, "bytes": 6096, "edge_p50_ms": 0.015}]
    assert choose(slow_int8)[0] == "fp32"  # 3.5x slower is not noise, however small


def _flex_model():
    import keras

    inputs = keras.Input((8, 2))
    # __import__ inside: a saved lambda is reloaded without this module's globals.
    cumprod = keras.layers.Lambda(lambda t: __import__("keras").ops.cumprod(t, axis=1),
                                  output_shape=(8, 2))
    out = cumprod(inputs)
    return keras.Model(inputs, out)


def test_flex_only_op_is_refused_naming_the_op(tmp_path):
    model = _flex_model()
    model.save(tmp_path / "flex.keras")
    with pytest.raises(ConversionError, match="Cumprod"):
        convert(tmp_path / "flex.keras", tmp_path / "flex.tflite", "fp32")
    assert not (tmp_path / "flex.tflite").exists()


def test_flatbuffer_with_flex_op_is_refused_without_loading_it(tmp_path):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(_flex_model())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    path = tmp_path / "flex.tflite"
    path.write_bytes(converter.convert())
    with pytest.raises(ConversionError, match="FlexCumprod"):
        check_builtin_ops(path)


def test_int8_with_integer_io_runs_through_the_edge_model(forecast_run, tmp_path):
    import keras

    out = tmp_path / "io.tflite"
    info = convert(forecast_run / "model.keras", out, "int8",
                   representative=forecast_run / "representative.npz", int8_io=True)
    assert info["route"] == "keras"
    edge = EdgeModel(out)
    assert edge._input["dtype"] == np.int8 and edge._outputs[0]["dtype"] == np.int8
    x = np.load(forecast_run / "heldout.npz")["x"][:64]
    ref = keras.models.load_model(forecast_run / "model.keras").predict(x, verbose=0)
    assert np.mean(np.abs(edge.predict(x)[0] - ref)) < 0.1
    # Every weight is int8 (no constant left in float, none stored twice), names are gone,
    # Dense layers are quantized per tensor (one scale + zero point, not 24 B per output
    # unit), and convolutions per channel only where that was measured to be closer.
    size = footprint(out)
    assert size.float_constants == [] and size.duplicate_constant_bytes == 0
    assert size.name_bytes == 0
    assert not any("FULLY_CONNECTED" in name for name in size.per_channel), size.per_channel
    errors = info["int8_rel_error"]
    if info["int8_granularity"] == "per-channel":
        assert errors["per_tensor"] > errors["per_channel"] and size.per_channel
    else:
        assert size.per_channel == []


def test_a_long_batch_runs_in_chunks_with_the_same_outputs(tmp_path, monkeypatch):
    """EdgeModel.predict splits a batch whose batch-dependent tensors would exceed
    BATCH_BYTES (a long-horizon tft's 2161 test windows took 23 GB in one invoke) and
    returns the same rows."""
    import keras

    from edge_runtime import interpreter

    inputs = keras.Input((8, 2))
    keras.Model(inputs, keras.layers.Dense(3)(inputs)).save(tmp_path / "dense.keras")
    out = tmp_path / "fp32.tflite"
    convert(tmp_path / "dense.keras", out, "fp32", batch="dynamic")
    x = np.random.default_rng(0).standard_normal((7, 8, 2)).astype(np.float32)
    one = EdgeModel(out)
    whole = one.predict(x)
    row_bytes = one._batch_dependent_bytes()
    assert row_bytes >= (8 * 2 + 8 * 3) * 4  # at least its input and output
    monkeypatch.setattr(interpreter, "BATCH_BYTES", 3 * row_bytes)
    chunked = EdgeModel(out)
    resizes = []
    resize = chunked._interp.resize_tensor_input
    monkeypatch.setattr(chunked._interp, "resize_tensor_input",
                        lambda i, shape: (resizes.append(shape[0]), resize(i, shape)))
    got = chunked.predict(x)
    assert resizes == [3, 1]  # chunks of 3, 3 and 1 windows
    assert [g.shape for g in got] == [w.shape for w in whole] == [(7, 8, 3)]
    for g, w in zip(got, whole, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)
