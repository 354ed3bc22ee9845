"""Occlusion contributions at the edge (:mod:`edge_runtime.occlusion`) over the real LiteRT
interpreter: a soft sensor trained tiny on an export whose lab value depends only on tag
``b`` ranks ``b`` first; contributions are computed when the config asks or the estimate
crosses a limit, and nothing runs otherwise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from converters.build import build_auto
from edge_runtime.config import EstimateLimits, SoftSensorEdgeConfig
from edge_runtime.occlusion import occluded, ranked
from edge_runtime.pipelines import ModelPipeline
from edge_runtime.scaling import StandardScaler
from training.config import TrainConfig
from training.train import train

TAGS = ("a", "b", "c")


def dependent_export(path, n: int = 1000, seed: int = 0):
    """Three AR(1) tags every 5 s; a lab value every 3rd row = 50 + 4·(mean of b's last
    three rows) + noise: only b matters."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 3))
    for i in range(1, n):
        x[i] = 0.9 * x[i - 1] + rng.normal(0, 0.45, 3)
    recent_b = pd.Series(x[:, 1]).rolling(3, min_periods=1).mean().to_numpy()
    lab = 50 + 4 * recent_b + rng.normal(0, 0.05, n)
    frame = pd.DataFrame(x, columns=list(TAGS))
    frame.insert(0, "timestamp", pd.date_range("2026-01-01", periods=n, freq="5s")
                 .strftime("%Y-%m-%dT%H:%M:%SZ"))
    frame["quality"] = [f"{v:.3f}" if i % 3 == 0 else "" for i, v in enumerate(lab)]
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("occlusion")
    config = TrainConfig.model_validate({
        "name": "dependent", "task": "soft_sensor", "family": "gru", "model": {"units": [8]},
        "data": {"source": "historian", "path": str(dependent_export(out / "lab.csv")),
                 "tags": list(TAGS), "units": {"a": "bar", "b": "degC", "c": "m3/h"}},
        "window": {"period_s": 5, "length": 6, "max_gap_s": 15},
        "soft_sensor": {"target": "quality", "unit": "%", "dead_time_s": 0},
        "fit": {"epochs": 8, "batch_size": 32, "learning_rate": 0.02},
        "output_dir": str(out / "runs")})
    run_dir = train(config)
    built, _ = build_auto(run_dir, out / "bundles", ("fp32",))
    return built, np.load(run_dir / "heldout.npz")


def pipeline_with(bundle, options: SoftSensorEdgeConfig) -> ModelPipeline:
    return ModelPipeline("q", bundle[0], task_options=options)


def departing_windows(bundle, count: int = 8) -> np.ndarray:
    """Held-out windows whose lab value is far from the training mean (something to
    explain), in engineering units."""
    built, heldout = bundle
    far = np.argsort(-np.abs(heldout["y"][:, 0]))[:count]
    return StandardScaler.from_spec(built.manifest.scaler).inverse(heldout["x"][far])


def test_occluded_windows_put_one_tag_at_its_mean_each():
    window = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    batch = occluded(window)
    assert batch.shape == (3, 4, 3)
    for j in range(3):
        assert (batch[j, :, j] == 0).all()
        others = [k for k in range(3) if k != j]
        assert (batch[j][:, others] == window[:, others]).all()
    ranks = ranked(np.array([0.1, -2.0, 0.5]), ["a", "b", "c"], ["bar", "degC", ""])
    assert [r["tag"] for r in ranks] == ["b", "c", "a"] and ranks[0]["contribution"] == -2.0
    assert ranks[0]["unit"] == "degC" and sum(r["share"] for r in ranks) == pytest.approx(1)


def test_the_dependent_tag_ranks_first(bundle):
    pipeline = pipeline_with(bundle, SoftSensorEdgeConfig(contributions=True))
    firsts, shares = [], []
    for i, window in enumerate(departing_windows(bundle)):
        [out] = pipeline.infer(1.8e9 + 5 * i, window)
        ranks = out.payload["contributions"]
        firsts.append(ranks[0]["tag"])
        shares.append(next(r["share"] for r in ranks if r["tag"] == "b"))
        assert {r["tag"] for r in ranks} == set(TAGS) and "limit" not in out.payload
        units = {r["tag"]: r["unit"] for r in ranks}
        assert units == {"a": "bar", "b": "degC", "c": "m3/h"}
    assert firsts.count("b") == 8 and np.mean(shares) > 0.6, (firsts, shares)
    occluder = pipeline.task_state.occluder
    assert occluder.invokes == 8 and occluder.batched  # gru: one invoke of F windows
    # the contribution is what the tag adds: estimate − estimate with b at its mean
    [out] = pipeline.infer(1.8e9 + 100, window)
    x = pipeline.scaler.transform(window[None])
    x[0, :, 1] = 0.0
    spec = bundle[0].manifest.soft_sensor
    without_b = spec.to_units(pipeline.model.predict(x)[0][:, 0])[0]
    b = next(r for r in out.payload["contributions"] if r["tag"] == "b")
    assert b["contribution"] == pytest.approx(out.payload["raw_estimate"] - without_b, abs=1e-4)


def test_nothing_runs_unasked_and_a_crossed_limit_explains(bundle):
    window = np.ones((6, 3), np.float32)
    quiet = pipeline_with(bundle, SoftSensorEdgeConfig(limits=EstimateLimits(low=0, high=1e6)))
    [out] = quiet.infer(1.8e9, window)
    assert "contributions" not in out.payload and "limit" not in out.payload
    assert quiet.task_state.occluder is None  # not even loaded
    estimate = out.payload["estimate"]
    high = pipeline_with(bundle, SoftSensorEdgeConfig(limits=EstimateLimits(high=estimate - 1)))
    [out] = high.infer(1.8e9, window)
    assert out.payload["limit"] == "high" and out.payload["contributions"][0]["tag"] == "b"
    low = pipeline_with(bundle, SoftSensorEdgeConfig(limits=EstimateLimits(low=estimate + 1)))
    assert low.infer(1.8e9, window)[0].payload["limit"] == "low"
    with pytest.raises(ValidationError, match="limits.low 2 must be below limits.high 1"):
        EstimateLimits(low=2, high=1)
