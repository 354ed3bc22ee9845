"""Multi-worker training for real: two worker processes on 127.0.0.1 under
``MultiWorkerMirroredStrategy`` (each with its own ``TF_CONFIG``, output folder and temporary
folder, as two machines would have) train the same tiny forecaster as one process alone. Only
the chief writes the run; the result is the single-worker one (the global batch is split
between the workers and their gradients averaged: the same step up to float rounding)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from procedge.broker import free_port

ROOT = Path(__file__).resolve().parent.parent
CONFIG = {
    "name": "mw", "task": "forecast", "family": "dlinear",
    "model": {"subtract_last": True, "init": "zeros"},
    "data": {"source": "simulator", "simulator": {"steps": 600, "seed": 0}},
    "window": {"period_s": 5, "length": 8, "max_gap_s": 15},
    "horizon": 3, "targets": ["temperature", "level"],
    "fit": {"epochs": 3, "batch_size": 32, "patience": 2, "learning_rate": 0.005},
}
TRAIN = ("import json, sys\n"
         "from training.config import TrainConfig\n"
         "from training.train import train\n"
         "train(TrainConfig.model_validate(json.loads(sys.argv[1])))\n")


def start(out: Path, tf_config: dict) -> subprocess.Popen:
    (out / "tmp").mkdir(parents=True)
    env = os.environ | {"TMPDIR": str(out / "tmp"), "TF_CPP_MIN_LOG_LEVEL": "3",
                        "PYTHONPATH": str(ROOT), "TF_CONFIG": json.dumps(tf_config)}
    config = json.dumps(CONFIG | {"output_dir": str(out / "runs")})
    return subprocess.Popen([sys.executable, "-c", TRAIN, config], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]


def test_two_workers_train_what_one_does_and_only_the_chief_writes(tmp_path):
    hosts = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    workers = [start(tmp_path / f"worker{i}", {"cluster": {"worker": hosts},
                                                "task": {"type": "worker", "index": i}})
               for i in range(2)]
    try:
        for worker in workers:
            finish(worker)
    finally:
        for worker in workers:
            worker.kill()
    from training.config import TrainConfig
    from training.train import train

    train(TrainConfig.model_validate(CONFIG | {"output_dir": str(tmp_path / "single" / "runs")}))

    chief, other = tmp_path / "worker0", tmp_path / "worker1"
    record = json.loads((chief / "runs" / "mw" / "training.json").read_text())
    assert (chief / "runs" / "mw" / "model.keras").is_file()
    assert not (other / "runs").exists()  # the other worker wrote nothing of the run ...
    assert list((other / "tmp").iterdir()) == []  # ... and removed its scratch run
    alone = json.loads((tmp_path / "single" / "runs" / "mw" / "training.json").read_text())
    assert record["training"]["epochs"] == alone["training"]["epochs"]
    for key in ("mse", "mae"):
        assert record["metrics"]["keras"][key] == pytest.approx(alone["metrics"]["keras"][key],
                                                                rel=1e-4)
    assert record["metrics"]["keras"]["mse"] < record["metrics"]["keras"]["persistence_mse"]


def test_a_model_with_its_own_train_step_is_refused():
    import keras

    from training.multi_worker import check_fittable

    class WithStep(keras.Model):
        def train_step(self, data):
            return {}

    with pytest.raises(ValueError, match="own train_step"):
        check_fittable(WithStep())
    check_fittable(keras.Sequential([keras.layers.Dense(1)]))
