"""The converter child stays between conversions (TensorFlow starts once), and a child that
dies or hangs costs only the conversion it was running: the next one starts a fresh child."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from converters.tflite import CONVERTER, convert_many
from edge_runtime.interpreter import EdgeModel


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 2))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(inputs)))
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path


def _child_pid() -> int:
    return CONVERTER._proc.pid


def test_one_child_serves_consecutive_conversions(keras_file, tmp_path):
    first = convert_many(keras_file, tmp_path / "a", ("fp32",))["fp32"]
    pid = _child_pid()
    second = convert_many(keras_file, tmp_path / "b", ("fp32",))["fp32"]
    assert _child_pid() == pid
    x = np.ones((1, 4, 2), np.float32)
    assert EdgeModel(first["path"]).predict(x)[0] == pytest.approx(
        EdgeModel(second["path"]).predict(x)[0])


def test_a_dead_child_is_replaced_by_the_next_conversion(keras_file, tmp_path):
    convert_many(keras_file, tmp_path / "a", ("fp32",))
    pid = _child_pid()
    os.kill(pid, signal.SIGKILL)
    CONVERTER._proc.wait()  # dead before the next conversion starts
    info = convert_many(keras_file, tmp_path / "b", ("fp32",))["fp32"]
    assert "error" not in info and info["failed_routes"] == [], info  # not a retry
    assert Path(info["path"]).is_file()
    assert _child_pid() != pid


def test_a_hung_conversion_times_out_and_the_next_one_works(keras_file, tmp_path):
    info = convert_many(keras_file, tmp_path / "a", ("fp32",), timeout_s=0.01)["fp32"]
    assert info["error"].startswith("converter process timed out"), info
    assert CONVERTER._proc is None  # the child was stopped, not left converting
    info = convert_many(keras_file, tmp_path / "b", ("fp32",))["fp32"]
    assert "error" not in info
