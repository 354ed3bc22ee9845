"""Forecaster variants on the same contract as every family (``test_forecaster_contract.py``):
instance normalisation (``model.norm``) around a linear, a recurrent and an attention family,
and quantile heads.

Quantile variants (``lstm`` and ``transformer`` with ``quantiles: [0.1, 0.5, 0.9]``; ``tft``'s,
with a known future and a static covariate, in ``test_tft_covariates.py``) pass the contract
on all three quantiles, keep them ordered in LiteRT, and publish them per
target and step from the edge pipeline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from converters.build import ConvertOptions, build, build_auto, summary_lines
from converters.ops import model_ops
from edge_runtime.bundle import OutputSpec
from edge_runtime.conformal import apply_offsets
from edge_runtime.interpreter import EdgeModel
from edge_runtime.pipelines import ModelPipeline
from edge_runtime.scaling import StandardScaler
from tests.forecast_support import (
    CANDIDATES,
    assert_edge_matches_keras,
    tiny_forecast,
)

QUANTILES = [0.1, 0.5, 0.9]
QUANTILE_FAMILIES = ("lstm", "transformer")  # tft's: test_tft_covariates.py
# unroll=False: the tf-keras twin then gets the fused UNIDIRECTIONAL_SEQUENCE_LSTM kernel (an
# unrolled LSTM stays unrolled in the twin), the route whose int8 the quantile head must survive.
QUANTILE_KW = {"lstm": {"unroll": False}}
QUANTILE_CANDIDATES = ("int8", "fp32")  # int8 is what must survive; fp32 ships if it misses


# Instance normalisation (model.norm) wraps any family; these three cover a linear, a recurrent
# (unrolled twin) and an attention family, RevIN's learnable affine on the linear one.
NORMED = [("dlinear", {"norm": "revin", "norm_affine": True}), ("lstm", {"norm": "revin"}),
          ("transformer", {"norm": "revin"})]


@pytest.mark.parametrize(("family", "norm"), NORMED, ids=[f for f, _ in NORMED])
def test_instance_normalised_family_train_convert_run_matches_keras(family, norm, tmp_path):
    run_dir = tiny_forecast(family, tmp_path / "runs", **norm)
    bundle, attempts = build_auto(run_dir, tmp_path / "bundles", CANDIDATES)
    assert_edge_matches_keras(run_dir, bundle, f"{family} {norm} "
                                               f"({bundle.manifest.quantization}; {attempts})")
    assert attempts[0].startswith("int8:") and "conversion of" not in attempts[0], attempts
    assert "RSQRT" in model_ops(bundle.model_path)  # the window's own std, in the graph
    print(f"{family} {norm}: shipped {bundle.manifest.quantization}; {attempts}")


@pytest.fixture(scope="module")
def quantile_runs(tmp_path_factory) -> dict[str, tuple[Path, object, dict]]:
    """Each quantile family trained tiny and converted: (run_dir, bundle, report)."""
    out = tmp_path_factory.mktemp("quantiles")
    runs = {}
    for family in QUANTILE_FAMILIES:
        run_dir = tiny_forecast(family, out / "runs", quantiles=QUANTILES,
                                **QUANTILE_KW.get(family, {}))
        bundle, report = build(run_dir, out / "bundles",
                               ConvertOptions(candidates=QUANTILE_CANDIDATES))
        runs[family] = (run_dir, bundle, report)
    return runs


@pytest.mark.parametrize("family", QUANTILE_FAMILIES)
def test_quantile_variant_train_convert_run_matches_keras(family, quantile_runs):
    run_dir, bundle, report = quantile_runs[family]
    attempts = summary_lines(report)
    assert bundle.manifest.output.quantiles == QUANTILES
    got = assert_edge_matches_keras(run_dir, bundle, f"{family} quantiles; {attempts}")
    assert np.all(np.diff(got, axis=-1) >= 0), "edge quantiles cross"
    int8 = next(r for r in report["candidates"] if r["mode"] == "int8")
    assert "ops" in int8, attempts  # int8 converted with builtin ops
    if family == "lstm":  # the fused-LSTM twin still carries the quantile head
        assert int8["route"] == "fused", int8
        assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in int8["ops"], int8["ops"]
    edge = bundle.manifest.metrics["edge"]
    assert 0.0 <= edge["coverage"] <= 1.0 and edge["crossing_share"] == 0.0
    print(f"{family} quantiles: shipped {bundle.manifest.quantization}; {attempts}")


def test_edge_payload_carries_ordered_quantiles(quantile_runs):
    run_dir, bundle, _ = quantile_runs["lstm"]
    pipeline = ModelPipeline("q", bundle)
    scaler = StandardScaler.from_spec(bundle.manifest.scaler)
    window = scaler.inverse(np.load(run_dir / "heldout.npz")["x"][0])  # engineering units
    [output] = pipeline.infer(1.8e9, window)
    payload = output.payload
    targets = bundle.manifest.output.targets
    assert set(payload["quantiles"]) == set(targets) == {"temperature", "level"}
    for tag in targets:
        q = payload["quantiles"][tag]
        assert set(q) == {"p10", "p50", "p90"}
        assert all(len(v) == bundle.manifest.output.horizon for v in q.values())
        assert np.all(np.asarray(q["p10"]) <= np.asarray(q["p50"]))
        assert np.all(np.asarray(q["p50"]) <= np.asarray(q["p90"]))
        assert np.any(np.asarray(q["p10"]) < np.asarray(q["p90"]))  # a real interval
        assert payload["forecast"][tag] == q["p50"]  # point consumers read the median
    # the band is the model's quantiles shifted by the run's conformal offsets (numpy, edge)
    offsets = np.asarray(bundle.manifest.output.conformal)
    assert offsets.shape == (3, 2, 3) and np.all(offsets[..., 1] == 0)
    got = EdgeModel(bundle.model_path).predict(np.load(run_dir / "heldout.npz")["x"][:1])[0]
    cols = [pipeline.tags.index(t) for t in targets]
    expected = scaler.inverse(np.moveaxis(apply_offsets(got, offsets), -1, 0)[:, 0], cols)
    for j, key in enumerate(("p10", "p50", "p90")):
        np.testing.assert_allclose([payload["quantiles"][t][key] for t in targets],
                                   expected[j].T, atol=1e-4)
    assert 0.0 <= bundle.manifest.metrics["training"]["coverage_conformal"] <= 1.0  # test split
    assert "coverage_conformal" in bundle.manifest.metrics["edge"]


def test_quantile_levels_are_checked():
    assert OutputSpec(horizon=3, targets=["a"]).quantiles == []  # old manifests still load
    assert OutputSpec(horizon=3, targets=["a"], quantiles=QUANTILES).median_index == 1
    for bad in ([0.1, 0.9], [0.9, 0.5, 0.1], [0.0, 0.5], [0.5, 0.5]):
        with pytest.raises(ValueError, match="quantiles"):
            OutputSpec(horizon=3, targets=["a"], quantiles=bad)


def test_transformer_attention_heatmap_is_written(quantile_runs):
    from training.forecasters import attention_maps, transformer

    maps = attention_maps(transformer(12, 3, 4, 1, d_model=8, heads=2, ff=16, blocks=2),
                          np.random.default_rng(0).standard_normal((12, 3)))
    assert [m.weights.shape for m in maps] == [(12, 12), (12, 12)]
    for m in maps:
        np.testing.assert_allclose(m.weights.sum(axis=-1), 1.0, atol=1e-5)
    run_dir = quantile_runs["transformer"][0]
    assert (run_dir / "attention.png").stat().st_size > 0  # written by every training run


@pytest.mark.parametrize("attention", ["additive", "dot"])
def test_seq2seq_attention_weights_and_heatmap(attention, tmp_path):
    from training import plots
    from training.forecasters import attention_model, seq2seq

    weights = attention_model(seq2seq(12, 3, 4, 1, attention=attention)).predict(
        np.random.default_rng(0).standard_normal((2, 12, 3)).astype(np.float32), verbose=0)
    assert weights.shape == (2, 4, 12)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)  # softmax over the window
    assert plots.attention_heatmap(weights[0], tmp_path / "a.png", "s2s").stat().st_size > 0


def test_pinball_loss_matches_numpy_and_the_head_cannot_cross():
    from training.forecasters import Pinball, lstm
    from training.metrics import forecast_metrics

    levels = [0.05, 0.1, 0.5, 0.9]
    model = lstm(6, 2, 3, 2, units=[4], quantiles=levels)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # random, large weights: gaps far from their zero start
        if layer.trainable and layer.weights:
            layer.set_weights([rng.normal(0, 3, w.shape) for w in layer.get_weights()])
    x = rng.standard_normal((64, 6, 2)).astype(np.float32)
    pred = model.predict(x, verbose=0)
    assert pred.shape == (64, 3, 2, 4) and np.all(np.diff(pred, axis=-1) >= 0)
    y = rng.standard_normal((64, 3, 2)).astype(np.float32)
    expected = forecast_metrics(y, pred, levels)["pinball"]
    assert float(Pinball(levels)(y, pred)) == pytest.approx(expected, rel=1e-5)
    # fit.median_loss: mse — the 0.5 level's term becomes the squared error, the rest stay
    error = y[..., None] - pred
    terms = np.maximum(np.array(levels) * error, (np.array(levels) - 1) * error)
    terms[..., 2] = error[..., 2] ** 2
    assert float(Pinball(levels, "mse")(y, pred)) == pytest.approx(terms.mean(), rel=1e-5)
    with pytest.raises(ValueError, match="fit.median_loss must be"):
        Pinball(levels, "mean")
