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
