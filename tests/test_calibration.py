"""int8 calibration windows are drawn evenly across operating modes, so a rare mode is
represented and quantized as well as the common one (and the draw is recorded)."""

from __future__ import annotations

import numpy as np
import pytest

from training.calibration import QUANT_HEADROOM, representative_windows

N, L, RARE = 2000, 8, slice(1000, 1050)  # 50 of 2000 windows (2.5 %) in the rare mode


def _plant() -> tuple[np.ndarray, np.ndarray]:
    """Two tags that move together (a slow swing of ±2), except in a rare mode where they sit
    at +1.9 and -1.9: inside each tag's range, so the extreme windows do not cover it."""
    rng = np.random.default_rng(0)
    level = 2 * np.sin(np.linspace(0, 40, N + L))
    rows = np.stack([level, level], axis=1) + rng.normal(scale=0.05, size=(N + L, 2))
    rows[RARE.start:RARE.stop + L] = [1.9, -1.9]
    rows[RARE.start:RARE.stop + L] += rng.normal(scale=0.05, size=(RARE.stop - RARE.start + L, 2))
    x = np.stack([rows[i:i + L] for i in range(N)]).astype(np.float32)
    return x, _is_rare(x)


def _is_rare(windows: np.ndarray) -> np.ndarray:
    return (windows[:, :, 0] - windows[:, :, 1]).mean(axis=1) > 1.0


def test_rare_mode_gets_its_share_and_extremes_are_kept():
    x, rare = _plant()
    windows, sampling = representative_windows(x, seed=0, n=32)
    assert sampling["modes"] == 8 and sum(sampling["mode_windows"]) == N
    assert sampling["mode_sampled"] == [4] * 8  # even draw across modes
    assert min(sampling["mode_windows"]) <= 60  # the rare mode is a stratum of its own
    assert _is_rare(windows).sum() >= 4
    assert windows.max() == pytest.approx(x.max() * QUANT_HEADROOM)  # stretched extremes
    assert x.max() in windows and x.min() in windows
    # Unstratified, the same number of windows (this seed) misses the rare mode entirely.
    uniform, info = representative_windows(x, seed=2, n=32, stratify=False)
    assert info["modes"] == 1 and _is_rare(uniform).sum() == 0
    assert rare.sum() < 0.05 * N  # a rare mode indeed


@pytest.mark.slow
def test_stratified_calibration_quantizes_the_rare_mode_better(tmp_path):
    import keras

    from converters.worker import to_tflite
    from edge_runtime.interpreter import EdgeModel

    keras.utils.set_random_seed(0)
    x, rare = _plant()
    inputs = keras.Input((L, 2))
    h = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    h = keras.layers.Dense(16, activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Reshape((L, 2))(keras.layers.Dense(L * 2)(h)))
    model.compile(keras.optimizers.Adam(0.01), "mse")
    model.fit(x, x, epochs=10, batch_size=64, verbose=0)
    ref = model.predict(x, verbose=0)

    def int8_error(windows: np.ndarray) -> np.ndarray:
        path = tmp_path / f"m{len(list(tmp_path.iterdir()))}.tflite"
        path.write_bytes(to_tflite(model, "int8", windows))
        return np.mean((EdgeModel(path).predict(x)[0] - ref) ** 2, axis=(1, 2))

    stratified = int8_error(representative_windows(x, seed=0, n=32)[0])
    uniform = int8_error(representative_windows(x, seed=2, n=32, stratify=False)[0])
    # Missing from calibration, the rare mode's activations are clipped: far larger error.
    assert stratified[rare].mean() < 0.2 * uniform[rare].mean()
    assert stratified[~rare].mean() < 1.5 * uniform[~rare].mean()  # the common mode keeps
