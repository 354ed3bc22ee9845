"""Training splits by time, fits the scaler on training rows only, and is reproducible."""

from __future__ import annotations

import json

import numpy as np

from tests.helpers import tiny_config
from training.historian import load_grid
from training.series import chronological_splits
from training.train import train


def test_splits_are_chronological_and_targets_never_overlap():
    s = chronological_splits(1000, window=24, train=0.7, val=0.15)
    assert (s.train.start, s.train.stop) == (0, 700)
    assert (s.val.start, s.val.stop) == (700 - 24, 850)  # input may reach back L rows
    assert (s.test.start, s.test.stop) == (850 - 24, 1000)


def test_historian_csv_is_aligned_like_the_gateway(tmp_path):
    csv = tmp_path / "export.csv"
    csv.write_text("timestamp,a,b\n"
                   "2026-01-01T00:00:00Z,1,10\n2026-01-01T00:00:04Z,2,\n"
                   "2026-01-01T00:00:11Z,3,30\n2026-01-01T00:00:40Z,4,40\n")
    config = tiny_config("tank_anomaly", tmp_path)
    config.data.source, config.data.path = "historian", csv
    config.window.period_s, config.window.max_gap_s = 5.0, 10.0
    grid = load_grid(config.data, config.window)
    assert grid.tags == ["a", "b"]
    # t=0,5,10,15,20,25,30,35,40: b holds 10 until 10 s old, gap after 30 s + 10 s.
    np.testing.assert_array_equal(grid.rows[:4], [[1, 10], [2, 10], [2, 10], [3, 30]])
    assert np.isnan(grid.rows[5:8, 0]).all() and grid.rows[-1].tolist() == [4, 40]


def test_training_is_seeded_and_scaler_uses_training_rows_only(tmp_path):
    results = []
    for attempt in ("a", "b"):
        config = tiny_config("tank_anomaly", tmp_path / attempt)
        config.data.simulator.steps, config.fit.epochs = 1200, 3
        run_dir = train(config)
        results.append(json.loads((run_dir / "training.json").read_text()))
        assert any((run_dir / "logs").rglob("events.out.tfevents.*"))  # TensorBoard
    assert results[0]["thresholds"] == results[1]["thresholds"]
    assert results[0]["metrics"] == results[1]["metrics"]
    grid = load_grid(config.data, config.window)
    train_rows = grid.rows[: int(len(grid.rows) * config.split.train)]
    np.testing.assert_allclose(results[0]["scaler"]["mean"], train_rows.mean(axis=0))
    assert not np.allclose(results[0]["scaler"]["mean"], grid.rows.mean(axis=0))


def test_auto_strategy_is_the_default_one_on_a_single_device():
    import tensorflow as tf

    from training.distribute import distribution_strategy

    assert distribution_strategy("auto") is tf.distribute.get_strategy()


def test_tf_data_pipeline_is_seeded_shuffled_batched_and_prefetched():
    from training.series import dataset

    x = np.arange(10, dtype=np.float32)[:, None]

    def epochs(seed: int) -> list[list[float]]:
        data = dataset(x, x, batch_size=4, seed=seed, shuffle=True)
        return [np.concatenate([b[0].numpy()[:, 0] for b in data]).tolist() for _ in range(2)]

    first = epochs(0)
    assert first == epochs(0)  # same seed, same order, epoch after epoch
    assert first[0] != first[1]  # reshuffled every epoch
    assert sorted(first[0]) == x[:, 0].tolist()  # every window once
    batches = [len(b[0]) for b in dataset(x, x, batch_size=4)]
    assert batches == [4, 4, 2]
    # the last stage before the options is the prefetch (tf.data keeps no public graph view)
    assert type(dataset(x, x, batch_size=4)._input_dataset).__name__ == "_PrefetchDataset"


def _tiny_forecast_yaml(tmp_path, **fit):
    import yaml

    config = tiny_config("tank_forecast", tmp_path)
    config.data.simulator.steps = 1200
    config.model = {"filters": 8, "dilations": [1, 2]}
    config.fit = config.fit.model_copy(update={"tensorboard": False, **fit})
    path = tmp_path / "forecast.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude={"output_dir"})))
    return path


class _PowerCut(Exception):
    pass


def test_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch,
                                                                      capsys):
    """A fit stopped by a crash after epoch 2 and continued with ``procedge train --resume``
    ends with the weights, history and epochs of the same fit run without a break: the
    checkpoint holds the optimizer and early-stopping state, and epoch e's shuffle depends
    on (seed, e) only."""
    import keras
    import pytest

    from procedge.cli import main

    config = _tiny_forecast_yaml(tmp_path, epochs=5, patience=3, batch_size=32,
                                 learning_rate=3e-4)
    main(["train", str(config), "--output-dir", str(tmp_path / "straight")])

    _train_cut_at_epoch_2(config, tmp_path / "cut", monkeypatch)
    assert not (tmp_path / "cut" / "tank_forecast" / "training.json").exists()
    main(["train", str(config), "--output-dir", str(tmp_path / "cut"), "--resume"])
    out = capsys.readouterr().out
    assert "resumed after epoch 2" in out and "5/5 epochs" in out

    runs = [tmp_path / d / "tank_forecast" for d in ("straight", "cut")]
    weights = [keras.models.load_model(r / "model.keras", compile=False).get_weights()
               for r in runs]
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(*weights, strict=True))
    records = [json.loads((r / "training.json").read_text()) for r in runs]
    assert records[0]["metrics"]["keras"] == pytest.approx(records[1]["metrics"]["keras"])
    assert records[0]["training"]["epochs"] == records[1]["training"]["epochs"] == 5
    assert records[1]["training"]["resumed_from"] == 2
    assert not (runs[1] / "backup").exists()  # removed once the fit ended


def test_without_resume_a_stale_checkpoint_is_not_picked_up(tmp_path, monkeypatch):

    from procedge.cli import main

    config = _tiny_forecast_yaml(tmp_path, epochs=3)

    _train_cut_at_epoch_2(config, tmp_path / "runs", monkeypatch)
    main(["train", str(config), "--output-dir", str(tmp_path / "runs")])
    record = json.loads((tmp_path / "runs" / "tank_forecast" / "training.json").read_text())
    assert record["training"]["resumed_from"] == 0 and record["training"]["epochs"] == 3


def test_wall_clock_limit_marks_the_run_truncated_and_the_cli_says_so(tmp_path, capsys):
    from edge_runtime.bundle import Manifest
    from procedge.cli import main

    config = _tiny_forecast_yaml(tmp_path, epochs=6, max_minutes=1e-5)
    main(["train", str(config), "--output-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out.strip().splitlines()
    assert "TRUNCATED" in out[-1] and "1/6 epochs" in out[-1]  # the last line, not a log line
    record = json.loads((tmp_path / "runs" / "tank_forecast" / "training.json").read_text())
    info = record["training"]
    assert info["truncated"] is True and info["epochs"] == 1 and info["epochs_budget"] == 6
    assert info["max_minutes"] == 1e-5 and info["device"] and info["seconds_per_epoch"] > 0
    # the bundle manifest carries the section (it is the run record plus conversion's fields)
    manifest = Manifest(**{k: v for k, v in record.items()}, version="1", quantization="fp32")
    assert manifest.training.truncated


def test_an_epoch_budget_is_not_truncated_and_records_made_before_it_still_load(tmp_path,
                                                                                 capsys):
    from edge_runtime.bundle import RunRecord
    from procedge.cli import main

    config = _tiny_forecast_yaml(tmp_path, epochs=2, patience=5)
    main(["train", str(config), "--output-dir", str(tmp_path / "runs")])
    run_dir = tmp_path / "runs" / "tank_forecast"
    info = RunRecord.load(run_dir).training
    assert (info.epochs, info.truncated, info.early_stopped, info.max_minutes) == (
        2, False, False, None)
    assert "2/2 epochs (budget done)" in capsys.readouterr().out
    record = json.loads((run_dir / "training.json").read_text())
    del record["training"]
    (run_dir / "training.json").write_text(json.dumps(record))
    assert RunRecord.load(run_dir).training is None


def _train_cut_at_epoch_2(config, out, monkeypatch) -> None:
    """``procedge train`` with a power cut as epoch 3 begins (the process would die there)."""
    import keras
    import pytest

    from procedge.cli import main

    class Cut(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise _PowerCut("power cut")

    fit = keras.Model.fit
    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "fit", lambda self, *a, callbacks=(), **kw: fit(
            self, *a, callbacks=[Cut(), *callbacks], **kw))
        with pytest.raises(_PowerCut):
            main(["train", str(config), "--output-dir", str(out)])
