"""The converter child stays between conversions (TensorFlow starts once), and a child that
dies or hangs costs only the conversion it was running: the next one starts a fresh child."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from converters.tflite import ConverterProcess


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 2))
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(inputs)))
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path


@pytest.fixture
def converter():
    running = ConverterProcess(max_jobs=3)
    yield running
    running.stop()


def _convert(converter: ConverterProcess, keras_file: Path, out: Path,
             timeout_s: float = 300) -> tuple[dict | None, int | None]:
    """fp32 of ``keras_file`` into ``out``: the mode's info line (None if none) and the code."""
    out.mkdir(parents=True, exist_ok=True)
    lines, _, code = converter.run([str(keras_file), str(out), "fp32"], timeout_s)
    infos = [json.loads(line) for line in lines if line.startswith("{")]
    return (infos[0] if infos else None), code


def test_one_child_serves_conversions_until_max_jobs(converter, keras_file, tmp_path):
    pids = []
    for k in range(3):
        info, code = _convert(converter, keras_file, tmp_path / str(k))
        assert code == 0 and "error" not in info and (tmp_path / str(k) / "fp32.tflite").is_file()
        pids.append(converter._proc.pid if converter._proc else None)
    assert pids[0] == pids[1] is not None and pids[2] is None  # the third ended it (max_jobs)


def test_a_dead_or_hung_child_costs_only_its_own_conversion(converter, keras_file, tmp_path):
    _convert(converter, keras_file, tmp_path / "a")
    pid = converter._proc.pid
    os.kill(pid, signal.SIGKILL)
    converter._proc.wait()  # dead before the next conversion starts
    info, code = _convert(converter, keras_file, tmp_path / "b")
    assert code == 0 and "error" not in info  # not reported as a crash of this conversion
    assert converter._proc.pid != pid
    info, code = _convert(converter, keras_file, tmp_path / "c", timeout_s=0.01)
    assert info is None and code is None  # timed out
    assert converter._proc is None  # the child was stopped, not left converting
    info, code = _convert(converter, keras_file, tmp_path / "d")
    assert code == 0 and "error" not in info
