"""Task generative on images (families dcgan, image_cvae) on a tiny synthetic tile set:
train a few steps → sample → shapes, finite values in [-1, 1], determinism by seed; the run
directory and `procedge generate` writing PNGs; config mistakes refused before TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.validation import ConfigError
from training.config import TrainConfig, check_train_config
from training.images.synthetic import write_set


@pytest.fixture(scope="module")
def tiles(tmp_path_factory) -> Path:
    return write_set(tmp_path_factory.mktemp("tiles"), per_class=5)


def config(out: Path, family: str, root: Path, **generative) -> TrainConfig:
    return TrainConfig(name=f"img_{family}", task="generative", family=family,
                       model={"filters": 4}, image={"root": str(root), "size": 8},
                       fit={"seed": 1, "tensorboard": False}, output_dir=out,
                       generative={"latent_dim": 4, "steps": 4, "batch_size": 8,
                                   **generative})


@pytest.mark.parametrize("family", ["dcgan", "image_cvae"])
def test_image_generator_trains_samples_and_is_deterministic(tiles, tmp_path, family):
    from training.images.generative_task import fit_generator, load_images
    from training.images.generators import load_image_generator
    from training.registry import get_family
    from training.train import train

    cfg = config(tmp_path, family, tiles, classes=["MT_Blob", "MT_Scratch"])
    run = train(cfg)
    gen, meta = load_image_generator(run)
    assert meta["kind"] == "image" and meta["class_names"] == ["MT_Blob", "MT_Scratch"]
    assert json.loads((run / "training.json").read_text())["training"]["optimizer_steps"] == 4
    classes = np.array([0, 1, 1])
    x = gen.sample(classes, seed=2)
    assert x.shape == (3, 8, 8, 1) and np.isfinite(x).all() and np.abs(x).max() <= 1.0
    np.testing.assert_array_equal(x, gen.sample(classes, seed=2))
    assert not np.allclose(x, gen.sample(classes, seed=3))
    # the same config fitted again: the same generator (weights, batches, noise all seeded)
    (tx, tc), _, names, _ = load_images(tiles, 8, cfg.generative.classes, 0.2, 1)
    again = fit_generator(cfg, get_family(family, "generative"), tx, tc, len(names))
    np.testing.assert_allclose(again.sample(classes, seed=2), x, atol=1e-6)
    for name in ("generator.keras", "generative.json", "training.json", "heldout.npz",
                 "losses.png", "samples.png", "pca.png"):
        assert (run / name).is_file(), name
    assert (run / "interpolation.png").is_file() == (family == "image_cvae")
    held = np.load(run / "heldout.npz")
    assert held["x"].shape[1:] == (8, 8, 1) and set(held["c"]) == {0, 1}


def test_generate_writes_pngs_marked_synthetic(tiles, tmp_path, capsys):
    from PIL import Image

    from procedge.cli import main
    from training.train import train

    run = train(config(tmp_path, "dcgan", tiles))
    out = tmp_path / "pngs"
    main(["generate", str(run), "--n", "3", "--condition", "MT_Scratch", "--seed", "4",
          "--out", str(out)])
    assert "wrote 3 synthetic 8x8 images (MT_Scratch: 3)" in capsys.readouterr().out
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == [f"MT_Scratch_{i:05d}.png" for i in range(3)]
    image = Image.open(files[0])
    assert image.mode == "L" and image.size == (8, 8)
    meta = json.loads((out / "synthetic.json").read_text())
    assert meta["synthetic"] is True and meta["classes"] == {"MT_Scratch": 3}
    first = np.asarray(image).copy()
    main(["generate", str(run), "--n", "3", "--condition", "MT_Scratch", "--seed", "4",
          "--out", str(tmp_path / "again")])
    np.testing.assert_array_equal(first, np.asarray(Image.open(tmp_path / "again" /
                                                               files[0].name)))
    with pytest.raises(SystemExit) as exc:
        main(["generate", str(run), "--n", "3", "--condition", "MT_Crack", "--out", str(out)])
    assert exc.value.code == 2 and "classes: MT_Blob, MT_Free, MT_Scratch" in \
        capsys.readouterr().err


def test_image_generator_config_checked_before_training(tiles, tmp_path):
    with pytest.raises(ConfigError, match="image: family 'dcgan' generates images"):
        check_train_config(TrainConfig(name="x", task="generative", family="dcgan",
                                       generative={}), "x.yaml")
    with pytest.raises(ConfigError, match="image: family 'cvae' generates tag windows"):
        check_train_config(config(tmp_path, "cvae", tiles), "x.yaml")
    with pytest.raises(ConfigError, match="generative.condition_column: not for images"):
        check_train_config(config(tmp_path, "dcgan", tiles, condition_column="mode"), "x.yaml")
    bad = config(tmp_path, "image_cvae", tiles).model_copy(update={"model": {"sampling": "agg"}})
    with pytest.raises(ConfigError, match=r"model: model.sampling must be one of \['prior', "
                                          r"'posterior'\], not 'agg'"):
        check_train_config(bad, "x.yaml")
    with pytest.raises(ValueError, match="a generator needs a power of two"):
        from training.images.generators import dcgan

        dcgan(24, 1, 2)


def test_image_quality_metrics_on_known_distributions():
    from training.images.generative_quality import frechet_distance, precision_recall, scores

    rng = np.random.default_rng(0)
    real, same = rng.normal(size=(2, 400, 8))
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(real, same) < 0.5 < 8 * 9 < frechet_distance(real, same + 3.0)
    assert precision_recall(real, real) == {"precision": 1.0, "recall": 1.0}
    pr = precision_recall(real, same)
    assert pr["precision"] > 0.85 and pr["recall"] > 0.85, pr
    assert precision_recall(real, same + 20.0) == {"precision": 0.0, "recall": 0.0}
    # mode collapse: one class's images all alike — precise, but no recall, no coverage
    real_c = np.repeat([0, 1], 200)
    real, same = real + 6.0 * real_c[:, None], same + 6.0 * real_c[:, None]  # classes apart
    collapsed = same.copy()
    collapsed[real_c == 1] = real[real_c == 1][:1] + 0.01
    row = scores(real, real_c, collapsed, real_c, ["a", "b"])
    assert row["coverage_a"] > 0.8 > 0.1 > row["coverage_b"] == row["coverage_min"]
    assert row["precision"] > 0.85 and row["recall"] < 0.6, row


def test_study_subsets_are_nested_and_keep_every_ok_image():
    from evaluation.image_generative import defect_subset

    labels = np.repeat([0, 1, 2], [30, 100, 11])  # class 1 is OK
    small, mid, full = (defect_subset(labels, 1, f) for f in (0.1, 0.25, 1.0))
    assert set(small) <= set(mid) <= set(full) and len(full) == len(labels)
    assert (labels[small] == 1).sum() == 100
    assert np.bincount(labels[small]).tolist() == [3, 100, 1]
    assert np.bincount(labels[mid]).tolist() == [8, 100, 3]


def test_image_cvae_interpolation_runs_from_a_to_b(tiles, tmp_path):
    """The latent line's ends decode a's and b's latent means; the strip is one row per class
    with two images."""
    from training.images.generators import image_cvae
    from training.images.latent_plots import interpolation_strips, pairs

    model = image_cvae(8, 1, 2, latent_dim=4, filters=4)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (5, 8, 8, 1)).astype(np.float32)
    c = np.array([0, 1, 0, 0, 1])
    line = model.interpolate(x[0], x[3], 0, steps=5)
    assert line.shape == (5, 8, 8, 1) and np.isfinite(line).all()
    onehot = np.eye(2, dtype=np.float32)[[0, 0]]
    mu = model.encoder.predict([x[[0, 3]], onehot], verbose=0)[:, :4]
    ends = model.generator.predict(np.concatenate([mu, onehot], 1), verbose=0)
    np.testing.assert_allclose(line[[0, -1]], ends, atol=1e-5)
    assert not np.allclose(line[0], line[-1])
    assert pairs(c) == [(0, 0, 3), (1, 1, 4)] and pairs(np.array([0, 1])) == []
    path = interpolation_strips(model, x, c, ["a", "b"], tmp_path / "strip.png", steps=3)
    assert path.is_file() and path.stat().st_size > 1000


def test_class_gaussians_draw_where_each_class_codes_lie():
    """The ex-post latent density: per class the codes' mean and (shrunk) covariance; a
    class with one code draws around it, one with none from N(0, I); it survives JSON."""
    from training.images.generators import ClassGaussians

    rng = np.random.default_rng(0)
    a = rng.normal([5.0, -3.0], [0.5, 2.0], (400, 2))
    codes = np.concatenate([a, [[9.0, 9.0]]])
    classes = np.array([0] * 400 + [1])
    density = ClassGaussians.fit(codes, classes, 3)
    draws = density.transform(rng.standard_normal((4000, 2)).astype(np.float32),
                              np.zeros(4000, int))
    np.testing.assert_allclose(draws.mean(0), [5.0, -3.0], atol=0.15)
    np.testing.assert_allclose(draws.std(0), [0.5, 2.0], rtol=0.1)
    eps = rng.standard_normal((2, 2)).astype(np.float32)
    np.testing.assert_allclose(density.transform(eps, np.array([1, 2])),
                               eps + [[9.0, 9.0], [0.0, 0.0]], atol=1e-5)
    again = ClassGaussians.from_dict(json.loads(json.dumps(density.to_dict())))
    np.testing.assert_allclose(again.transform(eps, np.array([0, 0])),
                               density.transform(eps, np.array([0, 0])), atol=1e-6)
    with pytest.raises(ValueError, match="unknown latent density 'gmm'"):
        ClassGaussians.from_dict({"kind": "gmm"})


def test_image_cvae_posterior_sampling_is_saved_and_reloaded(tiles, tmp_path):
    """``model.sampling: posterior``: the run's generative.json carries the class Gaussians
    and `procedge generate`'s loader draws the same images as the fitted model."""
    from training.images.generative_task import fit_generator, load_images
    from training.images.generators import image_cvae, load_image_generator
    from training.registry import get_family
    from training.train import train

    cfg = config(tmp_path, "image_cvae", tiles)
    cfg = cfg.model_copy(update={"model": {"filters": 4, "sampling": "posterior"}})
    run = train(cfg)
    gen, meta = load_image_generator(run)
    assert np.array(meta["latent_density"]["means"]).shape == (3, 4)
    (tx, tc), _, names, _ = load_images(tiles, 8, cfg.generative.classes, 0.2, 1)
    fitted = fit_generator(cfg, get_family("image_cvae", "generative"), tx, tc, len(names))
    classes = np.array([0, 1, 2, 2])
    np.testing.assert_allclose(gen.sample(classes, seed=5), fitted.sample(classes, seed=5),
                               atol=1e-6)
    fitted.latent_density = None  # the same weights with prior draws: other images
    assert not np.allclose(gen.sample(classes, seed=5), fitted.sample(classes, seed=5))
    with pytest.raises(ValueError, match="model.sampling must be one of"):
        image_cvae(8, 1, 2, latent_dim=4, filters=4, sampling="aggregate")


def test_copy_ratio_reads_zero_for_copies_and_about_one_for_new_draws():
    from training.images.generative_quality import copy_ratio

    rng = np.random.default_rng(0)
    train, real, new = rng.normal(size=(3, 300, 6))
    assert copy_ratio(train, real, train[:100] + 1e-3) < 0.01
    assert 0.85 < copy_ratio(train, real, new) < 1.15


def test_residual_texture_draws_fields_with_each_class_spectrum(tmp_path):
    """Fitted to residuals with streaks along x (class 0) and along y (class 1), the fields
    keep each class's power spectrum and hence its orientation; they survive the run file."""
    from training.images.texture import ResidualTexture

    rng = np.random.default_rng(0)
    side, n = 16, 200
    y, x = np.mgrid[0:side, 0:side]
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    along_x = np.sin(2 * np.pi * 3 * y / side + phase)  # constant along x: horizontal streaks
    along_y = np.sin(2 * np.pi * 5 * x / side + phase)
    residuals = np.concatenate([along_x, along_y])[..., None] + 0.05 * rng.standard_normal(
        (2 * n, side, side, 1))
    classes = np.repeat([0, 1], n)
    texture = ResidualTexture.fit(residuals, classes, 3)
    fields = texture.sample(np.repeat([0, 1], 500), np.random.default_rng(1))
    assert fields.shape == (1000, side, side, 1) and fields.dtype == np.float32
    power = np.abs(np.fft.fft2(fields.astype(np.float64), axes=(1, 2))) ** 2
    for k in (0, 1):
        np.testing.assert_allclose(power[500 * k:500 * (k + 1)].mean(0),
                                   texture.amplitude[k] ** 2, rtol=0.25, atol=0.5)
    def along(f, axis):  # mean squared step along an axis: small where the streaks run
        return float(np.mean(np.diff(f, axis=axis) ** 2))
    assert along(fields[:500], 2) < 0.05 * along(fields[:500], 1)
    assert along(fields[500:], 1) < 0.05 * along(fields[500:], 2)
    np.testing.assert_allclose(texture.amplitude[2] ** 2, (texture.amplitude[:2] ** 2).mean(0),
                               rtol=1e-4)  # a class without residuals: the pooled spectrum
    texture.save(tmp_path)
    again = ResidualTexture.load(tmp_path)
    np.testing.assert_array_equal(again.sample([0, 1], np.random.default_rng(2)),
                                  texture.sample([0, 1], np.random.default_rng(2)))


def test_exemplar_texture_keeps_the_variety_between_tiles(tmp_path, monkeypatch):
    """Half of a class's residuals faint, half strong: the class-mean spectrum gives every
    field the same middling strength, exemplars give faint and strong fields as the tiles
    had; at most ``per_class`` kept, a class without residuals draws from all; the run file
    gives back the same fields."""
    from training.images.texture import ResidualTexture

    rng = np.random.default_rng(0)
    n, side = 40, 16
    scale = np.where(np.arange(n) % 2 == 0, 0.1, 1.0)[:, None, None, None]
    residuals = scale * rng.standard_normal((n, side, side, 1))
    classes = np.zeros(n, int)
    mean = ResidualTexture.fit(residuals, classes, 2).sample(np.zeros(200, int), rng)
    exemplars = ResidualTexture.fit_exemplars(residuals, classes, 2, per_class=10)
    assert exemplars.amplitude.shape == (10, side, side, 1) and set(exemplars.owners) == {0}
    fields = exemplars.sample(np.zeros(200, int), np.random.default_rng(1))
    spread = fields.reshape(200, -1).std(axis=1)
    assert np.all(np.abs(mean.reshape(200, -1).std(axis=1) - 0.71) < 0.15)
    assert np.sum(spread < 0.2) > 50 and np.sum(spread > 0.8) > 50  # faint and strong ones
    orphan = exemplars.sample(np.ones(200, int), rng).reshape(200, -1).std(axis=1)
    assert np.sum(orphan < 0.2) > 50 and np.sum(orphan > 0.8) > 50  # class 1: any tile's
    draw = lambda: exemplars.sample(np.zeros(20, int), np.random.default_rng(4))  # noqa: E731
    whole = draw()
    monkeypatch.setattr("training.images.texture.SAMPLE_CHUNK", 7)
    np.testing.assert_array_equal(draw(), whole)  # a few at a time: the same fields
    exemplars.save(tmp_path)
    again = ResidualTexture.load(tmp_path)
    np.testing.assert_array_equal(again.sample(np.array([0, 0, 1]), np.random.default_rng(3)),
                                  exemplars.sample(np.array([0, 0, 1]),
                                                   np.random.default_rng(3)))


@pytest.mark.parametrize("kind", ["spectrum", "exemplar"])
def test_image_cvae_texture_is_fitted_saved_and_reloaded(tiles, tmp_path, kind):
    """``model.texture: spectrum|exemplar``: the run holds the texture, `procedge generate`'s loader
    draws the same images as the fitted model, and they are the decoded means plus a field
    (the same weights without it give the bare means)."""
    from training.images.generative_task import fit_generator, load_images
    from training.images.generators import image_cvae, load_image_generator
    from training.registry import get_family
    from training.train import train

    cfg = config(tmp_path, "image_cvae", tiles)
    cfg = cfg.model_copy(update={"model": {"filters": 4, "texture": kind}})
    run = train(cfg)
    gen, meta = load_image_generator(run)
    assert meta["texture"] == "texture.npz" and gen.texture.amplitude.shape[1:] == (8, 8, 1)
    owners = sorted(gen.texture.owners.tolist())  # whose spectrum each stored one is
    assert owners == ([0, 1, 2] if kind == "spectrum" else [0] * 4 + [1] * 4 + [2] * 4)
    (tx, tc), _, names, _ = load_images(tiles, 8, cfg.generative.classes, 0.2, 1)
    fitted = fit_generator(cfg, get_family("image_cvae", "generative"), tx, tc, len(names))
    classes = np.array([0, 1, 2, 2])
    textured = gen.sample(classes, seed=5)
    np.testing.assert_allclose(textured, fitted.sample(classes, seed=5), atol=1e-5)
    assert np.isfinite(textured).all() and np.abs(textured).max() <= 1.0
    fitted.texture = None
    assert not np.allclose(textured, fitted.sample(classes, seed=5), atol=1e-3)
    with pytest.raises(ValueError, match="model.texture must be one of"):
        image_cvae(8, 1, 2, latent_dim=4, filters=4, texture="perlin")
    with pytest.raises(ConfigError, match="model.texture must be one of"):
        check_train_config(cfg.model_copy(update={"model": {"texture": "perlin"}}), "t.yaml")


def test_shipped_image_generator_configs_validate(tmp_path, monkeypatch):
    """The tile generator configs load and pass the config checks (model keys included);
    the 128-px one is the measured configuration of the image goal."""
    from training.config import load_train_config

    monkeypatch.setenv("PROCEDGE_DATA", str(tmp_path))
    configs = Path(__file__).resolve().parent.parent / "configs" / "generative"
    for name in ("tile_dcgan", "tile_image_cvae", "tile_image_cvae_128"):
        config = load_train_config(configs / f"{name}.yaml")
        check_train_config(config, f"{name}.yaml")
        assert config.image.root == tmp_path / "magnetic_tile"
    big = load_train_config(configs / "tile_image_cvae_128.yaml")
    assert (big.image.size, big.model["sampling"], big.model["texture"]) == (
        128, "posterior", "exemplar")
