"""``tft`` with calendar known-future inputs and a static covariate: the calendar features
(numpy, edge) against pandas, the training windows against what the gateway builds, the
bad inputs refused before training, and one tiny model trained → converted (builtin ops,
parity gate) → served by the edge pipeline, which computes the known future itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edge_runtime.calendar import (
    CALENDAR_FEATURES,
    calendar_features,
    selection_names,
    with_known_future,
)
from training.covariates import check_covariates, covariate_windows, model_kwargs

KNOWN = ["hour_of_day", "minute_of_hour"]
QUANTILES = [0.1, 0.5, 0.9]


def test_calendar_features_match_pandas():
    times = np.array([0.0, 1767225600.0, 1772323200.0 + 13 * 3600 + 42 * 60, 1798675199.0])
    stamps = pd.to_datetime(times, unit="s", utc=True)
    expected = {"minute_of_hour": stamps.minute / 59 - 0.5, "hour_of_day": stamps.hour / 23 - 0.5,
                "day_of_week": stamps.day_of_week / 6 - 0.5,
                "day_of_month": (stamps.day - 1) / 30 - 0.5,
                "day_of_year": (stamps.day_of_year - 1) / 365 - 0.5,
                "month_of_year": (stamps.month - 1) / 11 - 0.5}
    got = calendar_features(times, list(CALENDAR_FEATURES))
    for k, name in enumerate(CALENDAR_FEATURES):
        np.testing.assert_allclose(got[:, k], np.asarray(expected[name]), atol=1e-6, err_msg=name)


def test_training_windows_are_what_the_gateway_builds():
    rng = np.random.default_rng(0)
    grid = 1767225600.0 + 600.0 * np.arange(40)
    scaled = rng.standard_normal((40, 3)).astype(np.float32)
    x, model_x, y = covariate_windows(scaled, grid, 6, 4, [0], KNOWN, 600.0)
    assert model_x.shape == (40 - 9, 10, 5) and y.shape == (40 - 9, 4, 1)
    # window i ends at grid row i + 5: the gateway's grid time of that window
    np.testing.assert_array_equal(model_x, with_known_future(x, grid[5:5 + len(x)], 600.0, 4,
                                                             KNOWN))
    assert np.all(model_x[:, 6:, :3] == 0)  # no future tag value reaches the model
    scaled[20, 1] = np.nan  # a gap: the windows touching it are dropped, times kept aligned
    x, gapped, _ = covariate_windows(scaled, grid, 6, 4, [0], KNOWN, 600.0)
    assert len(x) == 40 - 9 - 10
    np.testing.assert_array_equal(gapped[-1], model_x[-1])


@pytest.mark.parametrize(("family", "model", "match"), [
    ("tft", {"known_future": ["hour_of_day", "shift_plan"]}, "model.known_future.*shift_plan"),
    ("lstm", {"known_future": ["hour_of_day"]}, "model.known_future.*takes no covariates"),
    ("tft", {"static": "level"}, "model.static.*forecast target"),
    ("tft", {"known_future": ["hour_of_day"], "norm": "revin"}, "model.norm"),
])
def test_bad_covariate_config_is_refused_before_tensorflow(family, model, match):
    with pytest.raises(ValueError, match=match):
        check_covariates(family, model, ["level"])


def test_a_static_covariate_that_varies_is_refused():
    rows = np.array([[1.0, 3.0], [2.0, 3.0], [1.5, 4.0]])
    with pytest.raises(ValueError, match="model.static: tag 'unit' varies over time"):
        model_kwargs({"static": "unit"}, ["x", "unit"], rows)
    with pytest.raises(ValueError, match="model.static: 'plant' is not an input tag"):
        model_kwargs({"static": "plant"}, ["x", "unit"], rows)
    assert model_kwargs({"static": "unit", "hidden": 8}, ["x", "unit"], rows[:2]) == {
        "hidden": 8, "static_column": 1}


def _export_with_unit(path: Path) -> Path:
    """The simulated tank a minute apart (calendar features move) with a constant unit id."""
    from training.simulator import TAGS, SimulatedRun, simulate, write_csv

    run = simulate(500, 60.0, seed=0)
    values = np.column_stack([run.values, np.full(len(run.values), 3.0)])
    write_csv(SimulatedRun(run.timestamps, values, [*TAGS, ("unit_id", "")]), path)
    return path


@pytest.fixture(scope="module")
def future_run(tmp_path_factory) -> tuple[Path, object, dict]:
    """One tiny ``tft`` with the calendar as known future, a static unit id and quantile
    heads on the per-step output layer (the contract's plain one has the flat default),
    trained and converted (int8, else fp32): (run_dir, bundle, convert report). The only
    ``tft`` the suite trains besides the contract's."""
    from converters.build import ConvertOptions, build
    from training.config import TrainConfig
    from training.train import train

    tmp = tmp_path_factory.mktemp("tft_future")
    config = TrainConfig.model_validate({
        "name": "tft_future", "task": "forecast", "family": "tft",
        "model": {"hidden": 8, "heads": 2, "known_future": KNOWN, "static": "unit_id",
                  "quantiles": QUANTILES, "head": "step"},
        "data": {"source": "historian", "path": str(_export_with_unit(tmp / "plant.csv")),
                 "units": {"temperature": "degC", "level": "m"}},
        "window": {"period_s": 60, "length": 8, "max_gap_s": 180},
        "horizon": 3, "targets": ["temperature", "level"],
        "fit": {"epochs": 3, "batch_size": 32, "patience": 2, "learning_rate": 0.005},
        "output_dir": str(tmp / "runs")})
    run_dir = train(config)
    bundle, report = build(run_dir, tmp / "bundles", ConvertOptions(candidates=("int8", "fp32")))
    return run_dir, bundle, report


def test_tft_known_future_and_static_train_convert_serve(future_run):
    import keras

    from edge_runtime.interpreter import EdgeModel
    from edge_runtime.pipelines import ModelPipeline
    from edge_runtime.scaling import StandardScaler
    from edge_runtime.tasks.forecast import forecast_outputs
    from training.tft import interpretation

    run_dir, bundle, report = future_run
    for png in ("variable_importance.png", "decoder_selection.png", "static_selection.png",
                "attention.png"):  # encoder, decoder (known future), static selection; time
        assert (run_dir / png).stat().st_size > 0, png
    spec = bundle.manifest.input
    assert spec.known_future == KNOWN and spec.static == "unit_id"
    assert "ops" in next(r for r in report["candidates"] if r["mode"] == "int8")  # builtin
    tags = spec.tag_names
    heldout = np.load(run_dir / "heldout.npz")
    assert heldout["x"].shape[1:] == (8 + 3, len(tags) + len(KNOWN))

    # the gateway computes the calendar of the past and forecast steps from the window's time
    scaler = StandardScaler.from_spec(bundle.manifest.scaler)
    past = heldout["x"][0, :8, :len(tags)]
    window, t = scaler.inverse(past), 1767225600.0 + 60.0 * 1000
    pipeline = ModelPipeline("tft_future", bundle)
    [out] = pipeline.infer(t, window)
    model_x = with_known_future(past[None], np.array([t]), 60.0, 3, KNOWN)
    got = forecast_outputs(EdgeModel(bundle.model_path).predict(model_x))[0][0]
    median = got[..., bundle.manifest.output.median_index]  # the median's conformal offset is 0
    expected = scaler.inverse(median, [tags.index("temperature"), tags.index("level")])
    np.testing.assert_allclose(out.payload["forecast"]["temperature"], expected[:, 0], atol=1e-4)
    names = selection_names(tags, KNOWN, "unit_id")
    assert "unit_id" not in names and {v["tag"] for v in out.payload["top_variables"]} <= set(names)

    # the known future reaches the forecast: the same window at another hour forecasts otherwise
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    found = interpretation(model, heldout["x"])
    assert found.static and found.future.shape == (len(KNOWN),)
    np.testing.assert_allclose(found.future.sum(), 1.0, atol=1e-5)  # softmax over the calendar
    later = with_known_future(past[None], np.array([t + 5 * 3600 + 17 * 60]), 60.0, 3, KNOWN)
    a, b = (forecast_outputs(list(model.predict(m, verbose=0)))[0] for m in (model_x, later))
    assert not np.allclose(a, b, atol=1e-6)


def test_tft_quantiles_match_keras_in_order(future_run):
    """The quantile heads pass the forecasting contract's tolerances and stay ordered in
    LiteRT (the int8 route converts with builtin ops; fp32 ships where int8 misses)."""
    from converters.build import summary_lines
    from tests.forecast_support import assert_edge_matches_keras

    run_dir, bundle, report = future_run
    assert bundle.manifest.output.quantiles == QUANTILES
    got = assert_edge_matches_keras(run_dir, bundle, f"tft quantiles; {summary_lines(report)}")
    assert np.all(np.diff(got, axis=-1) >= 0), "edge quantiles cross"
    edge = bundle.manifest.metrics["edge"]
    assert 0.0 <= edge["coverage"] <= 1.0 and edge["crossing_share"] == 0.0


def test_tft_explains_each_forecast_at_the_edge(future_run):
    """Variable-selection weights and attention from the trained tft; the bundle's second
    output carries each window's encoder weights and the payload names the top variables with
    their units, matching Keras on the window the gateway built (calendar included)."""
    import keras

    from edge_runtime.pipelines import ModelPipeline
    from edge_runtime.scaling import StandardScaler
    from tests.forecast_support import listed
    from training.tft import interpretation

    run_dir, bundle, _ = future_run
    x = np.load(run_dir / "heldout.npz")["x"]
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    found = interpretation(model, x)
    tags = bundle.manifest.input.tag_names
    names = selection_names(tags, KNOWN, "unit_id")
    assert found.importance.shape == (len(names),) and found.attention.shape == (3, 8 + 3)
    np.testing.assert_allclose(found.importance.sum(), 1.0, atol=1e-5)
    np.testing.assert_allclose(found.attention.sum(axis=-1), 1.0, atol=1e-5)
    pipeline = ModelPipeline("tft_future", bundle)
    scaler = StandardScaler.from_spec(bundle.manifest.scaler)
    t = 1767225600.0 + 60.0 * 1000
    window = scaler.inverse(x[0, :8, :len(tags)])
    [output] = pipeline.infer(t, window)
    edge_weights = listed(model.predict(with_known_future(x[:1, :8, :len(tags)], np.array([t]),
                                                          60.0, 3, KNOWN), verbose=0))[1][0]
    top = output.payload["top_variables"]
    assert [v["weight"] for v in top] == sorted((v["weight"] for v in top), reverse=True)
    assert edge_weights.shape == (len(names),)
    for v in top:  # the plant's tags carry their units; the calendar features have none
        assert v["unit"] == ("" if v["tag"] in KNOWN else pipeline.units[v["tag"]])
        assert v["weight"] == pytest.approx(edge_weights[names.index(v["tag"])], abs=0.02)


def test_ett_windows_with_calendar_inputs(tmp_path):
    from evaluation import ett
    from tests.test_ett_eval import synthetic_ett

    data = ett.load_ett(synthetic_ett(tmp_path / "ETTx.csv", 14500, "h"))
    plain = ett.prepare(data, "M", "OT", window=48, horizon=24)
    known = ett.prepare(data, "M", "OT", window=48, horizon=24, known_future=KNOWN[:1])
    x, y = known.test
    assert x.shape == (len(plain.test[0]), 48 + 24, len(plain.columns) + 1)
    np.testing.assert_array_equal(ett.past_windows(x, 48, len(plain.columns)), plain.test[0])
    np.testing.assert_array_equal(y, plain.test[1])
    # the first test window ends one row before the validation/test border
    hours = pd.to_datetime(data.times[ett.HOURLY_BORDERS[1] - 1], unit="s").hour
    assert x[0, 47, -1] == pytest.approx(hours / 23 - 0.5)


def test_procedge_train_checks_covariates_before_tensorflow():
    from edge_runtime.validation import ConfigError
    from training.config import TrainConfig, check_train_config

    config = TrainConfig.model_validate({
        "name": "t", "task": "forecast", "family": "tft", "targets": ["level"],
        "model": {"known_future": ["hour_of_day", "shift_plan"]},
        "data": {"source": "simulator"}})
    with pytest.raises(ConfigError, match=r"t.yaml: invalid training config\n  model: "
                                          r"model.known_future: 'shift_plan'"):
        check_train_config(config, "t.yaml")


def test_tft_interpretation_in_batches_is_the_mean_over_all_windows(future_run, monkeypatch):
    """The pictures' means are summed batch by batch (the attention of every test window at
    once does not fit in memory at long horizons): the same figures as one pass over all."""
    import keras

    from training import tft

    run_dir, _, _ = future_run
    x = np.load(run_dir / "heldout.npz")["x"][:7]
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    names = [tft.SELECTION_LAYER, tft.ATTENTION_LAYER, tft.FUTURE_SELECTION_LAYER]
    side = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    selection, attention, future = side.predict(x, verbose=0)
    monkeypatch.setattr(tft, "INTERPRET_BATCH", 3)  # batches of 3, 3 and 1 windows
    found = tft.interpretation(model, x)
    assert found.windows == 7
    np.testing.assert_allclose(found.importance, selection.mean(axis=(0, 1)), atol=1e-6)
    np.testing.assert_allclose(found.attention, attention.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(found.future, future.mean(axis=(0, 1)), atol=1e-6)


def _head_weights(head: str, horizon: int) -> int:
    from training.tft import tft

    model = tft(8, 3, horizon, 2, hidden=8, heads=2, quantiles=QUANTILES, head=head)
    return sum(model.get_layer(n).count_params() for n in ("delta", "quantile_gaps"))


def test_tft_step_head_does_not_grow_with_the_horizon():
    """The per-step output layer is one map shared by the H steps (hidden·T·Q weights with
    biases); the flat one reads every step's features for every output (∝ H²)."""
    step = [_head_weights("step", h) for h in (4, 8)]
    flat = [_head_weights("flat", h) for h in (4, 8)]
    assert step[0] == step[1] == (8 + 1) * 2 * 3  # delta: T outputs, gaps: T·2, each + bias
    assert flat == [(8 * h + 1) * h * 2 * 3 for h in (4, 8)]  # H·hidden inputs, H·T·3 outputs


def test_tft_linear_skip_adds_a_linear_forecast_from_each_targets_own_past(tmp_path):
    """``linear_skip``: with the network's delta at its zero start, the median is the last
    value plus one linear map over time from each target's own past (not the other tags',
    not the calendar's), for every quantile's centre; it converts with builtin ops."""
    from converters.tflite import convert_many
    from edge_runtime.interpreter import EdgeModel
    from training.tft import tft

    window, horizon, tags = 8, 4, 3
    model = tft(window, tags, horizon, 2, hidden=8, heads=2, quantiles=QUANTILES,
                known_future=KNOWN, linear_skip=True)
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((window, horizon)).astype(np.float32) * 0.3
    bias = rng.standard_normal(horizon).astype(np.float32)
    model.get_layer("linear_skip").set_weights([kernel, bias])
    x = rng.standard_normal((5, window + horizon, tags + len(KNOWN))).astype(np.float32)
    x[:, window:, :tags] = 0.0
    past = x[:, :window, 1:tags]  # the targets: the last two tags
    expected = past[:, -1:, :] + np.einsum("nlt,lh->nht", past, kernel) + bias[None, :, None]
    median = np.asarray(model(x))[..., QUANTILES.index(0.5)]
    np.testing.assert_allclose(median, expected, rtol=1e-5, atol=1e-5)
    assert "linear_skip" not in {layer.name for layer in tft(window, tags, horizon, 2, hidden=8,
                                                             heads=2).layers}
    model.save(tmp_path / "model.keras")
    info = convert_many(tmp_path / "model.keras", tmp_path / "out", ("fp32",))["fp32"]
    assert "error" not in info, info  # the converter allows builtin ops only
    [edge] = EdgeModel(info["path"]).predict(x)
    np.testing.assert_allclose(edge, np.asarray(model(x)), rtol=1e-4, atol=1e-4)


def test_tft_unknown_head_names_the_field():
    from training.tft import tft

    with pytest.raises(ValueError, match="model.head must be one of flat, step"):
        tft(8, 3, 4, 2, hidden=8, heads=2, head="wide")


def test_tft_head_and_size_are_refused_before_tensorflow():
    """`procedge train` names a bad head or a hidden size below the heads before it reads
    data, and the check itself never imports TensorFlow."""
    from training.config import ConfigError, TrainConfig, check_train_config

    def config(**model):
        return TrainConfig.model_validate({"name": "t", "task": "forecast", "family": "tft",
                                           "model": model, "window": {"length": 8},
                                           "horizon": 2})

    with pytest.raises(ConfigError, match=r"model: model.head must be one of flat, step, "
                                          r"not 'wide'"):
        check_train_config(config(head="wide"), "t.yaml")
    with pytest.raises(ConfigError, match=r"model: model.hidden 2 must be at least "
                                          r"model.heads 4"):
        check_train_config(config(hidden=2), "t.yaml")
    check_train_config(config(head="step", hidden=8, heads=2), "t.yaml")
    code = ("import sys; from training.tft_args import check_config_model; "
            "check_config_model('tft', {'head': 'step'}); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
