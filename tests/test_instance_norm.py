"""Instance normalisation around any forecaster (``model.norm``, ``training/instance_norm.py``):
exact de-normalisation (an untrained delta family stays persistence), RevIN's equivariance
to a window's level and scale, and bad keys refused before TensorFlow. Train → convert →
LiteRT with it on is in test_forecaster_contract.py."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.validation import ConfigError
from training.config import TrainConfig, check_train_config


def _windows(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((4, 12, 3)).astype(np.float32)


@pytest.mark.parametrize("norm", [{"norm": "revin"}, {"norm": "revin", "norm_affine": True},
                                  {"norm": "subtract_last"}])
def test_an_untrained_delta_family_stays_persistence(norm):
    from training.registry import get_family

    x = _windows() * 5 + 40  # far from the scaled range: the normalisation must undo itself
    model = get_family("lstm", "forecast").build(12, 3, 4, 2, target_columns=[0, 2],
                                                 units=[4], **norm)
    np.testing.assert_allclose(np.asarray(model(x)), np.repeat(x[:, -1:, [0, 2]], 4, axis=1),
                               rtol=1e-4)


def test_revin_forecasts_in_the_window_frame():
    """f(a·x + c) = a·f(x) + c per window: a model that learnt a shape at one level and scale
    forecasts it at any other (DLinear's random start, so the map is not persistence)."""
    from training.registry import get_family

    model = get_family("dlinear", "forecast").build(12, 3, 4, 3, norm="revin")
    x = _windows()
    a = np.array([2.0, 0.5, 3.0], np.float32)
    c = np.array([10.0, -4.0, 7.0], np.float32)
    np.testing.assert_allclose(np.asarray(model(x * a + c)), np.asarray(model(x)) * a + c,
                               rtol=1e-3, atol=1e-3)
    plain = get_family("dlinear", "forecast").build(12, 3, 4, 3)
    assert not np.allclose(np.asarray(plain(x + c)), np.asarray(plain(x)) + c, atol=1e-2)


def test_quantile_outputs_are_mapped_back_per_level():
    from training.registry import get_family

    x = _windows() * 3 + 20
    model = get_family("lstm", "forecast").build(12, 3, 2, 1, units=[4], norm="revin",
                                                 quantiles=[0.1, 0.5, 0.9])
    out = np.asarray(model(x))
    assert out.shape == (4, 2, 1, 3) and np.all(np.diff(out, axis=-1) >= 0)
    np.testing.assert_allclose(out[..., 1], np.repeat(x[:, -1:, -1:], 2, axis=1), rtol=1e-4)


def test_bad_norm_keys_are_refused_before_tensorflow():
    def config(model):
        return TrainConfig.model_validate({"name": "n", "task": "forecast", "family": "dlinear",
                                           "model": model})

    with pytest.raises(ConfigError, match=r"model: model.norm must be one of \['none', "
                                          r"'subtract_last', 'revin'\], not 'revn'"):
        check_train_config(config({"norm": "revn"}), "n.yaml")
    with pytest.raises(ConfigError, match=r"model.norm_affine .* needs model.norm: revin"):
        check_train_config(config({"norm": "subtract_last", "norm_affine": True}), "n.yaml")
    check_train_config(config({"norm": "revin", "norm_affine": True}), "n.yaml")


def test_defaults_are_the_validated_choices():
    """bench/bench_instance_norm.py's picks: informer subtract_last, dlinear none."""
    from training.instance_norm import default_norm
    from training.registry import get_family

    assert (default_norm("informer"), default_norm("dlinear"), default_norm("lstm")) == (
        "subtract_last", "none", "none")
    small = get_family("informer", "forecast").small
    assert get_family("informer", "forecast").build(8, 2, 2, 1, **small).name == (
        "informer_subtract_last")
    assert get_family("informer", "forecast").build(8, 2, 2, 1, norm="none",
                                                    **small).name == "informer"
    assert get_family("dlinear", "forecast").build(8, 2, 2, 1).name == "dlinear"


@pytest.mark.parametrize("norm", ["revin", "subtract_last"])
def test_known_future_rows_and_calendar_columns_stay_out_of_the_statistics(norm):
    """``tft`` with calendar inputs takes (N, L + H, F + K) with zeros in the tag columns of
    the H forecast rows: the window's statistics come from the L past rows of the F tags, so
    moving a window's level and scale moves the forecast with it, whatever the calendar."""
    from training.registry import get_family

    window, horizon, tags = 12, 4, 3
    model = get_family("tft", "forecast").build(
        window, tags, horizon, tags, hidden=4, heads=2, norm=norm,
        known_future=["hour_of_day", "day_of_week"])
    rng = np.random.default_rng(1)  # random weights: an untrained delta head is persistence
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    x = np.zeros((4, window + horizon, tags + 2), np.float32)
    x[:, :window, :tags] = rng.standard_normal((4, window, tags))
    x[:, :, tags:] = rng.uniform(-0.5, 0.5, (4, window + horizon, 2))
    a = np.array([2.0, 0.5, 3.0], np.float32) if norm == "revin" else np.ones(3, np.float32)
    c = np.array([10.0, -4.0, 7.0], np.float32)
    moved = x.copy()
    moved[:, :window, :tags] = x[:, :window, :tags] * a + c
    np.testing.assert_allclose(np.asarray(model(moved)), np.asarray(model(x)) * a + c,
                               rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("norm", ["none", "revin"])
def test_tft_explains_itself_inside_revin_too(tmp_path, norm):
    """RevIN nests the tft in a wrapper model; its selection weights and attention must still
    reach the plots and the shipped model's second output (they silently did not: the lookup
    saw only the wrapper's layers), and that model must convert with both outputs intact."""
    import keras

    from converters.tflite import convert_many
    from edge_runtime.interpreter import EdgeModel
    from training.registry import get_family
    from training.tft import interpretation, is_tft, with_importance_output

    window, horizon, tags = 12, 3, 3
    model = get_family("tft", "forecast").build(window, tags, horizon, tags, hidden=8,
                                                heads=2, norm=norm,
                                                known_future=["hour_of_day"])
    assert is_tft(model)
    x = np.random.default_rng(0).standard_normal((6, window + horizon, tags + 1)) * 2 + 5
    x = x.astype(np.float32)
    found = interpretation(model, x)
    assert found.importance.shape == (tags + 1,) and found.attention.shape == (horizon,
                                                                               window + horizon)
    np.testing.assert_allclose(found.importance.sum(), 1.0, atol=1e-5)
    shipped = with_importance_output(model)
    forecast, weights = shipped.predict(x, verbose=0)
    np.testing.assert_allclose(forecast, model.predict(x, verbose=0), atol=1e-6)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(weights.mean(axis=0), found.importance, atol=1e-5)
    path = tmp_path / "model.keras"
    shipped.save(path)
    info = convert_many(path, tmp_path / "out", ("fp32",))["fp32"]
    assert "error" not in info, info
    edge = EdgeModel(info["path"]).predict(x)
    got = sorted(edge, key=lambda o: o.ndim)  # (N, F + K) weights, (N, H, T) forecast
    np.testing.assert_allclose(got[0], weights, atol=1e-4)
    np.testing.assert_allclose(got[1], forecast, atol=1e-3)
    reloaded = keras.models.load_model(path, compile=False)
    assert len(reloaded.outputs) == 2


@pytest.mark.parametrize("norm", ["revin", "subtract_last"])
def test_a_static_covariate_reaches_the_tft_through_the_normalisation(norm):
    """A static tag is constant in every window: normalised per window it became 0 for every
    unit, and the tft's static contexts saw nothing (two units forecast alike). It passes the
    normalisation unchanged now."""
    from training.registry import get_family

    window, horizon, tags = 10, 3, 3
    model = get_family("tft", "forecast").build(window, tags, horizon, 2, target_columns=[0, 1],
                                                hidden=4, heads=2, norm=norm, static_column=2)
    rng = np.random.default_rng(2)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    x = rng.standard_normal((2, window, tags)).astype(np.float32)
    x[1, :, :2] = x[0, :, :2]  # the same process window ...
    x[0, :, 2], x[1, :, 2] = -1.0, 1.5  # ... on two units
    y = np.asarray(model(x))
    assert not np.allclose(y[0], y[1], atol=1e-4)
