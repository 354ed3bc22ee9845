"""Contract every anomaly family passes: trains tiny on the simulator, saves a graph the
converter's child process can load, converts to int8 with builtin ops, runs in LiteRT, and its
scores and alarms agree with the Keras model's."""

from __future__ import annotations

import numpy as np
import pytest

from converters.tflite import check_builtin_ops
from edge_runtime.scaling import StandardScaler
from evaluation import common
from training.registry import families, get_family
from training.simulator import Fault, simulate

FAMILIES = sorted(f.name for f in families("anomaly"))
WINDOW = 8


@pytest.fixture(scope="module")
def plant():
    """Scaled normal rows to train on, and a run with a step fault on the temperature."""
    normal = simulate(600, 5.0, seed=1).values
    faulty = simulate(300, 5.0, seed=2, faults=[Fault("step", "temperature", 750.0, 12.0)])
    scaler = StandardScaler.fit(normal)
    return scaler.transform(normal), scaler.transform(faulty.values), faulty.faulty


def test_every_issue_family_is_registered():
    assert {"dense_ae", "denoising_ae", "conv_ae", "lstm_ae", "vae"} <= set(FAMILIES)


@pytest.mark.parametrize("name", FAMILIES)
def test_family_trains_converts_and_agrees_in_litert(name, plant, tmp_path):
    normal, faulty, labels = plant
    s = common.Settings(families=[name], window=WINDOW, epochs=8, batch_size=64)
    model = common.fit_family(name, normal, s)
    edge = common.EdgeConverter("int8", tmp_path)(model, normal, WINDOW, seed=0)
    assert not {n for n in check_builtin_ops(edge.path) if n.startswith("Flex")}

    ks = common.keras_scores(model, faulty, WINDOW).score
    es = common.edge_scores(edge, faulty, WINDOW).score
    ok = np.isfinite(ks)
    assert np.array_equal(ok, np.isfinite(es))
    rel = np.abs(es[ok] - ks[ok]) / np.maximum(ks[ok], 1e-6)
    assert np.median(rel) < 0.15, f"{name}: int8 scores off by {np.median(rel):.1%} (median)"
    assert np.corrcoef(np.log(ks[ok]), np.log(es[ok]))[0, 1] > 0.9

    spec = s.spec(common.keras_scores(model, normal, WINDOW).score[WINDOW - 1:])
    kf, ef = common.flags_from(spec, ks), common.flags_from(spec, es)
    assert np.mean(kf == ef) > 0.95
    assert kf[labels].mean() > 0.8, f"{name} misses a 12-degree (4.5 sigma) step on the temperature"


def test_vae_ships_its_deterministic_mean_path(plant):
    from training.autoencoders import KLSampling, edge_model

    normal, _, _ = plant
    s = common.Settings(families=["vae"], window=WINDOW, epochs=2)
    model = common.fit_family("vae", normal, s)
    shipped = edge_model(model)
    assert not any(isinstance(layer, KLSampling) for layer in shipped.layers)
    x = common.sliding_windows(normal[:50], WINDOW)[0]
    np.testing.assert_allclose(shipped.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    assert model.losses, "the KL term must be a training loss"


def test_trained_vae_bundle_filters_scores_and_ranks_tags_at_the_edge(tmp_path):
    """`procedge train` → int8 bundle → pipeline: the bundle carries the smoothing and the
    score kind (negative ELBO here), the edge applies both, and every result names tags ranked
    by their share of the reconstruction error, with units."""
    from converters.build import build_bundle
    from edge_runtime.pipelines import ModelPipeline
    from edge_runtime.smoothing import smooth_scores
    from tests.helpers import tiny_config
    from training.train import train

    config = tiny_config("tank_anomaly", tmp_path, family="vae", model={"latent": 4, "beta": 1})
    config.threshold.ewma_alpha, config.threshold.vote_k, config.threshold.vote_n = 0.5, 2, 3
    config.threshold.score = "elbo"
    bundle = build_bundle(train(config), tmp_path / "bundles", "int8")
    spec = bundle.manifest.thresholds
    assert (spec.ewma_alpha, spec.vote_k, spec.vote_n, spec.score) == (0.5, 2, 3, "elbo")

    pipe = ModelPipeline("tank", bundle)
    windows = np.load(next((tmp_path / "runs").rglob("heldout.npz")))["x"][-40:]
    raw, smoothed = [], []
    for i, w in enumerate(windows):
        out = pipe.infer(1767225600.0 + 5 * i, pipe.scaler.inverse(w))[0].payload
        raw.append(out["raw_score"])
        x = pipe.scaler.transform(pipe.scaler.inverse(w))[None]
        recon, kl = sorted(pipe.model.predict(x), key=np.ndim, reverse=True)
        assert kl[0, 0] > 0 and out["raw_score"] == pytest.approx(
            float(np.mean((x - recon) ** 2)) + float(kl[0, 0]), rel=1e-5)
        smoothed.append(out["score"])
        shares = [c["share"] for c in out["contributions"]]
        assert shares == sorted(shares, reverse=True) and abs(sum(shares) - 1) < 1e-3
        assert {c["unit"] for c in out["contributions"]} >= {"degC"}
    np.testing.assert_allclose(smoothed, smooth_scores(spec, np.array(raw)), rtol=1e-9)


def test_vae_elbo_score_converts_with_its_kl_output_and_matches_keras(plant, tmp_path):
    """score 'elbo': the converted VAE also outputs the weighted KL term, and the edge's
    negative ELBO (error + KL) agrees with the Keras VAE's; the default score is unchanged."""
    from training.autoencoders import edge_model

    normal, faulty, _ = plant
    s = common.Settings(families=["vae"], window=WINDOW, epochs=8, batch_size=64,
                        model_kw={"beta": 1.0}, score="elbo")
    model = common.fit_family("vae", normal, s)
    edge = common.EdgeConverter("int8", tmp_path)(model, normal, WINDOW, 0, "elbo")
    assert len(edge.predict(faulty[:WINDOW][None])) == 2  # reconstruction and KL

    recon = common.keras_scores(model, faulty, WINDOW).score
    elbo = common.keras_scores(model, faulty, WINDOW, "elbo").score
    ok = np.isfinite(elbo)
    x = common.sliding_windows(faulty, WINDOW)[0]
    kl = edge_model(model, "elbo").predict(x, verbose=0)[1][:, 0]
    assert np.all(kl > 0)
    np.testing.assert_allclose(elbo[ok] - recon[ok], kl, rtol=1e-4, atol=1e-7)

    es = common.edge_scores(edge, faulty, WINDOW, "elbo").score
    rel = np.abs(es[ok] - elbo[ok]) / elbo[ok]
    assert np.median(rel) < 0.15, f"int8 negative ELBO off by {np.median(rel):.1%} (median)"
    assert np.corrcoef(np.log(elbo[ok]), np.log(es[ok]))[0, 1] > 0.9
    with pytest.raises(ValueError, match="needs a VAE"):
        edge_model(get_family("dense_ae", "anomaly").build(WINDOW, normal.shape[1]), "elbo")


def test_seed_ensemble_ships_one_model_that_converts_and_matches_keras(plant, tmp_path):
    """--ensemble 2: two members from distinct seeds, one Keras model whose reconstruction is
    their mean, one int8 .tflite whose scores agree with it; member 0 is the single model."""
    from training.ensemble import member_seeds

    normal, faulty, _ = plant
    s = common.Settings(families=["conv_ae"], window=WINDOW, epochs=3, batch_size=64,
                        ensemble=2)
    model = common.fit_family("conv_ae", normal, s)
    members = [layer for layer in model.layers if layer.name.startswith("member_")]
    assert len(members) == 2 and member_seeds(0, 2) == [0, 1000]
    x = common.sliding_windows(faulty, WINDOW)[0]
    outs = [m.predict(x, verbose=0) for m in members]
    assert np.abs(outs[0] - outs[1]).max() > 1e-3, "members must differ (distinct seeds)"
    np.testing.assert_allclose(model.predict(x, verbose=0), (outs[0] + outs[1]) / 2,
                               rtol=1e-5, atol=1e-6)
    single = common.fit_family("conv_ae", normal, common.Settings(
        families=["conv_ae"], window=WINDOW, epochs=3, batch_size=64))
    np.testing.assert_allclose(single.predict(x, verbose=0), outs[0], rtol=1e-4, atol=1e-5)

    edge = common.EdgeConverter("int8", tmp_path)(model, normal, WINDOW, seed=0)
    assert len(list(tmp_path.rglob("*.tflite"))) == 1
    ks = common.keras_scores(model, faulty, WINDOW).score
    es = common.edge_scores(edge, faulty, WINDOW).score
    ok = np.isfinite(ks)
    rel = np.abs(es[ok] - ks[ok]) / np.maximum(ks[ok], 1e-6)
    assert np.median(rel) < 0.15, f"int8 ensemble scores off by {np.median(rel):.1%} (median)"
    assert np.corrcoef(np.log(ks[ok]), np.log(es[ok]))[0, 1] > 0.9
