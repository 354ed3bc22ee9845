"""``model.channels: independent``: every tag forecast by one network from its own history
(and the calendar), put back side by side; refused where it cannot mean that; converted
with builtin ops."""

from __future__ import annotations

import numpy as np
import pytest

from training.config import ConfigError, TrainConfig, check_train_config


def _random(model, seed: int = 0):
    rng = np.random.default_rng(seed)  # random weights: an untrained delta head is persistence
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    return model


def _inner(model):
    import keras

    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


@pytest.mark.parametrize(("family", "kw"), [
    ("lstm", {"units": [8]}),
    ("dlinear", {"norm": "revin"}),
    ("tft", {"hidden": 4, "heads": 2, "known_future": ["hour_of_day", "day_of_week"],
             "quantiles": [0.1, 0.5, 0.9]}),
])
def test_each_tag_is_forecast_from_its_own_series_alone(family, kw):
    from training.registry import get_family
    from training.tft import is_tft

    window, horizon, tags = 12, 3, 3
    model = _random(get_family(family, "forecast").build(window, tags, horizon, tags,
                                                         channels="independent", **kw))
    known = len(kw.get("known_future", []))
    total = window + horizon if known else window
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, total, tags + known)).astype(np.float32)
    if known:
        x[:, window:, :tags] = 0.0  # the forecast rows' tag columns: placeholders
    y = np.asarray(model(x))
    quantiles = len(kw.get("quantiles", []))
    assert y.shape == ((4, horizon, tags, quantiles) if quantiles else (4, horizon, tags))
    inner = _inner(model)
    for j in range(tags):  # tag j alone (with the calendar) through the one shared network
        alone = np.asarray(inner(np.concatenate([x[..., j:j + 1], x[..., tags:]], axis=-1)))
        np.testing.assert_allclose(y[:, :, j], alone[:, :, 0], rtol=1e-5, atol=1e-5)
    moved = x.copy()
    moved[:, :window, 0] += 5.0  # another tag's history changes nothing of tag 1's forecast
    np.testing.assert_allclose(np.asarray(model(moved))[:, :, 1], y[:, :, 1], atol=1e-5)
    assert not is_tft(model)  # no weight per tag to explain at the edge


def test_channels_where_it_cannot_mean_that_are_refused():
    from training.registry import get_family

    lstm = get_family("lstm", "forecast")
    with pytest.raises(ValueError, match=r"every tag must be a target.*target columns \[2\]"):
        lstm.build(8, 3, 2, 1, channels="independent", units=[4])
    with pytest.raises(ValueError, match="model.channels must be one of"):
        lstm.build(8, 3, 2, 3, channels="separate", units=[4])
    assert lstm.build(8, 3, 2, 1, channels="joint", units=[4]).name == "lstm"

    def config(model):
        return TrainConfig.model_validate({"name": "c", "task": "forecast", "family": "tft",
                                           "model": model})

    with pytest.raises(ConfigError, match="model: model.channels must be one of"):
        check_train_config(config({"channels": "per_tag"}), "c.yaml")
    with pytest.raises(ConfigError, match="a static covariate .* not both"):
        check_train_config(config({"channels": "independent", "static": "unit_id"}), "c.yaml")
    check_train_config(config({"channels": "independent"}), "c.yaml")


def test_per_channel_model_converts_with_builtin_ops(tmp_path):
    from converters.tflite import convert_many
    from edge_runtime.interpreter import EdgeModel
    from training.registry import get_family

    window, horizon, tags = 12, 3, 3
    model = _random(get_family("tft", "forecast").build(
        window, tags, horizon, tags, channels="independent", hidden=4, heads=2,
        known_future=["hour_of_day"], norm="revin"))
    x = np.random.default_rng(2).standard_normal((5, window + horizon, tags + 1))
    x = (x * 3 + 10).astype(np.float32)
    x[:, window:, :tags] = 0.0
    model.save(tmp_path / "model.keras")
    info = convert_many(tmp_path / "model.keras", tmp_path / "out", ("fp32",))["fp32"]
    assert "error" not in info, info  # the converter allows builtin ops only
    [edge] = EdgeModel(info["path"]).predict(x)
    np.testing.assert_allclose(edge, np.asarray(model(x)), rtol=1e-4, atol=1e-3)
