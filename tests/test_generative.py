"""Task generative on tiny data: train → sample → shapes, finite values, determinism by seed,
the condition honoured (a CVAE on two modes of different means generates each mode's mean),
and a generative run is refused by `procedge convert`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edge_runtime.validation import ConfigError
from training.config import TrainConfig, check_train_config

MEANS = {0: (-2.0, 10.0), 1: (2.0, 14.0)}  # mode → mean of tags a and b (engineering units)


def modes_export(path: Path, blocks: int = 24, rows: int = 30, seed: int = 0) -> Path:
    """Two operating modes alternating in blocks, each with its own means, AR(1) noise."""
    rng = np.random.default_rng(seed)
    mode = np.repeat(np.arange(blocks) % 2, rows)
    noise = np.zeros((len(mode), 2))
    for i in range(1, len(mode)):
        noise[i] = 0.7 * noise[i - 1] + rng.normal(0, 0.3, 2)
    values = np.array([MEANS[m] for m in mode]) + noise
    stamps = pd.date_range("2026-01-01", periods=len(mode), freq="5s", tz="UTC")
    pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"), "a": values[:, 0],
                  "b": values[:, 1], "mode": mode}).to_csv(path, index=False)
    return path


def config(out: Path, family: str, csv: Path | None, steps: int, **generative) -> TrainConfig:
    data = ({"source": "historian", "path": str(csv)} if csv else
            {"source": "simulator", "simulator": {"steps": 400}})
    return TrainConfig(name=f"gen_{family}", task="generative", family=family,
                       model={"filters": 8}, data=data,
                       window={"period_s": 5, "length": 8, "max_gap_s": 15},
                       fit={"seed": 3}, output_dir=out,
                       generative={"latent_dim": 4, "steps": steps, "batch_size": 32,
                                   **generative})


def _train(cfg: TrainConfig) -> Path:
    from training.train import train

    return train(cfg)


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory) -> Path:
    """A CVAE trained on two modes (the run directory)."""
    tmp = tmp_path_factory.mktemp("cvae")
    csv = modes_export(tmp / "modes.csv")
    return _train(config(tmp, "cvae", csv, steps=300, condition_column="mode"))


def test_cvae_honours_the_condition_and_is_deterministic(cvae_run):
    from edge_runtime.bundle import RunRecord
    from edge_runtime.scaling import StandardScaler
    from training.generative import load_generator

    run = cvae_run
    gen, meta = load_generator(run)
    assert meta["class_names"] == ["0", "1"] and meta["condition_column"] == "mode"
    scaler = StandardScaler.from_spec(RunRecord.load(run).scaler)
    classes = np.repeat([0, 1], 200)
    x = gen.sample(classes, seed=5)
    assert x.shape == (400, 8, 2) and np.isfinite(x).all()
    np.testing.assert_array_equal(x, gen.sample(classes, seed=5))
    assert not np.allclose(x, gen.sample(classes, seed=6))
    units = scaler.inverse(x)
    for mode, means in MEANS.items():
        got = units[classes == mode].mean(axis=(0, 1))
        np.testing.assert_allclose(got, means, atol=0.5, err_msg=f"mode {mode}")
    record = RunRecord.load(run)
    assert record.task == "generative" and record.metrics["keras"]["mmd2"] < 0.1
    assert record.training.optimizer_steps == record.metrics["keras"]["steps"]
    from training.budget import device

    assert record.training.device == device()  # where it ran, e.g. "CPU (2 cores)"
    for name in ("generator.keras", "generative.json", "heldout.npz", "losses.png",
                 "samples.png", "pca.png", "interpolation.png"):
        assert (run / name).is_file(), name
    assert any((run / "logs").iterdir())  # TensorBoard scalars


def test_generate_writes_a_historian_export_marked_synthetic(cvae_run, tmp_path, capsys):
    import json

    import pyarrow.parquet as pq

    from edge_runtime.windowing import sliding_windows
    from procedge.cli import main
    from training.config import DataConfig, WindowConfig
    from training.historian import load_grid

    out = tmp_path / "synthetic.csv"
    main(["generate", str(cvae_run), "--n", "5", "--condition", "1", "--seed", "2",
          "--out", str(out)])
    assert "wrote 5 synthetic windows (1: 5)" in capsys.readouterr().out
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["timestamp", "a", "b", "window_id", "mode"]
    assert len(frame) == 40 and (frame["mode"] == 1).all()
    assert sorted(frame["window_id"].unique()) == list(range(5))
    np.testing.assert_allclose(frame[["a", "b"]].mean(), MEANS[1], atol=0.6)
    meta = json.loads((tmp_path / "synthetic.csv.json").read_text())
    assert meta["synthetic"] is True and meta["classes"] == {"1": 5} and meta["seed"] == 2
    # read back as a historian export, none of its windows spans two synthetic ones: the
    # five, and after each but the last its final value held for max_gap_s (3 grid steps,
    # as the gateway holds a silent tag) before the gap
    grid = load_grid(DataConfig(source="historian", path=out, tags=["a", "b"]),
                     WindowConfig(period_s=5, length=8, max_gap_s=15))
    assert len(sliding_windows(grid.rows, 8)[0]) == 5 + 4 * 3
    again = tmp_path / "again.parquet"
    main(["generate", str(cvae_run), "--n", "5", "--condition", "1", "--seed", "2",
          "--out", str(again)])
    table = pq.read_table(again)
    assert json.loads(table.schema.metadata[b"procedge"])["synthetic"] is True
    np.testing.assert_allclose(table.to_pandas()[["a", "b"]], frame[["a", "b"]], rtol=1e-6)
    with pytest.raises(SystemExit) as exc:
        main(["generate", str(cvae_run), "--n", "5", "--condition", "7", "--out", str(out)])
    assert exc.value.code == 2 and "classes: 0, 1" in capsys.readouterr().err


def test_wgan_gp_trains_same_seed_same_generator(tmp_path):
    from training.generative import load_generator

    samples = []
    for attempt in range(2):
        run = _train(config(tmp_path / str(attempt), "wgan_gp", None, steps=8))
        gen, meta = load_generator(run)
        assert meta["class_names"] == ["all"] and meta["family"] == "wgan_gp"
        samples.append(gen.sample(np.zeros(16, int), seed=1))
    assert samples[0].shape == (16, 8, 5) and np.isfinite(samples[0]).all()
    np.testing.assert_array_equal(samples[0], samples[1])


def test_condition_column_checked_before_training(tmp_path):
    csv = modes_export(tmp_path / "modes.csv", blocks=2)
    with pytest.raises(ConfigError, match="generative.condition_column.*'mdoe'.*mode"):
        check_train_config(config(tmp_path, "cvae", csv, 1, condition_column="mdoe"), "x.yaml")
    with pytest.raises(ConfigError, match="generative.condition_column: the simulator"):
        check_train_config(config(tmp_path, "cvae", None, 1, condition_column="mode"), "x.yaml")
    with pytest.raises(ValueError, match="'generative' section goes with task 'generative'"):
        TrainConfig(name="x", task="anomaly", family="dense_ae", generative={})


def test_convert_refuses_a_generative_run(tmp_path, capsys):
    from procedge.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "training.json").write_text('{"task": "generative"}')
    with pytest.raises(SystemExit) as exc:
        main(["convert", str(run)])
    assert exc.value.code == 2
    assert "workstation job" in capsys.readouterr().err


def test_synthetic_normal_windows_are_flagged_as_often_as_real_normal_ones(tmp_path):
    """A CVAE of the simulator's normal operation and a tiny autoencoder of the same data:
    the share of synthetic windows over the autoencoder's limit is near the share of real
    held-out normal windows over it (both near its calibrated false-alarm rate)."""
    from tests.helpers import tiny_config
    from training.synthetic_normal import flagged_shares
    from training.train import train

    anomaly = train(tiny_config("tank_anomaly", tmp_path, output_dir=tmp_path / "runs"))
    cfg = config(tmp_path, "cvae", None, steps=400)
    cfg.data.simulator.steps, cfg.window.length = 3000, 12  # the anomaly model's data, window
    cfg.model, cfg.generative.latent_dim, cfg.generative.batch_size = {"filters": 32}, 8, 64
    generator = _train(cfg)
    shares = flagged_shares(generator, anomaly, n=1000, seed=0)
    assert shares["real_windows"] > 100
    assert abs(shares["synthetic_over_limit"] - shares["real_over_limit"]) <= 0.05, shares


def test_quality_scores_tell_good_from_bad_synthetic_windows():
    from training.generative_quality import coverage, discriminative_score, mmd2

    rng = np.random.default_rng(0)
    real, same = rng.normal(size=(2, 200, 6, 2))
    shifted = same + 1.0
    assert abs(mmd2(real, same)) < 0.01 < mmd2(real, shifted)
    assert coverage(real, same) > 0.8
    collapsed = np.repeat(same[:1], 200, axis=0)  # one window over and over: a collapsed mode
    assert coverage(real, collapsed) < 0.1
    assert discriminative_score(real, same + 1.5, epochs=25) > 0.3  # told apart
    assert discriminative_score(real, same, epochs=25) < 0.15  # chance


@pytest.mark.parametrize("family", ["cvae", "image_cvae"])
def test_a_fit_that_diverges_stops_with_an_error_naming_the_step(family):
    """A learning rate far too high: the loss turns NaN within a few steps, and the fit says
    so instead of returning NaN weights (whose samples would score as a plain precision 0)."""
    from training.generative import CVAE
    from training.images.generators import ImageCVAE

    rng = np.random.default_rng(0)
    if family == "cvae":
        model, x = CVAE(8, 3, 2, latent_dim=2, filters=4), rng.standard_normal((64, 8, 3))
    else:
        model, x = ImageCVAE(16, 1, 2, latent_dim=2, filters=4), rng.uniform(-1, 1, (64, 16, 16, 1))
    with pytest.raises(RuntimeError, match=rf"{family}: training diverged at step \d+ of 20 "
                                           r"\(nll (nan|inf)"):
        model.fit(x.astype(np.float32), rng.integers(0, 2, 64), 20, 16, 0,
                  {"learning_rate": 1e3}, desc=family)
