"""Split-conformal calibration of quantile forecasts: fitted on calibration windows, it moves a
deliberately too-narrow P10–P90 band to its nominal 80 % on held-out windows, keeps P50, never
makes quantiles cross, and the bundle schema checks the offsets' shape."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.bundle import OutputSpec
from edge_runtime.conformal import apply_offsets
from training.conformal import calibrated_metrics, fit_offsets
from training.metrics import forecast_metrics

LEVELS = [0.1, 0.5, 0.9]


def _narrow_forecasts(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Actuals (n, H=4, T=2) with a spread growing by step, and a median-right forecast whose
    band is a third of the true P10–P90 width (and the same at every step)."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(n, 1, 2))
    spread = np.array([0.5, 1.0, 1.5, 2.0])[None, :, None]
    y = centre + spread * rng.normal(size=(n, 4, 2))
    half = 0.43 * np.ones_like(y)  # ~ z_0.9 · 1.0 / 3: far too narrow
    q = np.stack([centre + 0 * y - half, centre + 0 * y, centre + 0 * y + half], axis=-1)
    return y, q


def test_a_too_narrow_band_reaches_nominal_coverage_on_held_out_windows():
    y_cal, q_cal = _narrow_forecasts(3000, seed=1)
    y_new, q_new = _narrow_forecasts(3000, seed=2)
    before = forecast_metrics(y_new, q_new, LEVELS)
    assert before["coverage"] < 0.5  # the deliberately narrow band
    offsets = fit_offsets(y_cal, q_cal, LEVELS)
    assert offsets.shape == (4, 2, 3) and np.all(offsets[..., 1] == 0)  # P50 untouched
    assert np.all(np.diff(offsets[:, :, 2], axis=0) > 0)  # wider where the spread grows
    after = calibrated_metrics(y_new, q_new, LEVELS, offsets)
    assert abs(after["coverage_conformal"] - 0.8) <= 0.03, after
    assert after["pinball_conformal"] < before["pinball"]
    calibrated = apply_offsets(q_new, offsets)
    np.testing.assert_array_equal(calibrated[..., 1], q_new[..., 1])
    for k in range(4):  # each step reaches its own nominal coverage, not just the mean
        inside = (y_new[:, k] >= calibrated[:, k, :, 0]) & (y_new[:, k] <= calibrated[:, k, :, 2])
        assert abs(inside.mean() - 0.8) <= 0.05, (k, inside.mean())


def test_offsets_never_make_quantiles_cross_and_empty_offsets_change_nothing():
    q = np.sort(np.random.default_rng(0).normal(size=(5, 2, 1, 3)), axis=-1)
    crossing = np.zeros((2, 1, 3))
    crossing[..., 0] = 10.0  # would push P10 above P90
    assert np.all(np.diff(apply_offsets(q, crossing), axis=-1) >= 0)
    np.testing.assert_array_equal(apply_offsets(q, []), q)
    with pytest.raises(ValueError, match="conformal offsets of shape"):
        apply_offsets(q, np.zeros((3, 1, 3)))


def test_the_bundle_schema_checks_the_offsets_shape():
    ok = OutputSpec(horizon=2, targets=["a"], quantiles=LEVELS, conformal=np.zeros((2, 1, 3))
                    .tolist())
    assert np.shape(ok.conformal) == (2, 1, 3)
    assert OutputSpec(horizon=2, targets=["a"], quantiles=LEVELS).conformal == []
    with pytest.raises(ValueError, match="output.conformal has shape"):
        OutputSpec(horizon=2, targets=["a"], quantiles=LEVELS, conformal=[[[0.0, 0.0]]] * 2)
