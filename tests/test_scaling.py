"""The standardisation shared by training and the gateway (edge_runtime/scaling.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.scaling import StandardScaler


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("shape", [(1, 60, 5), (7, 12, 5), (1000, 5)])
def test_transform_is_bit_for_bit_the_float64_formula(dtype, shape):
    """The gateway's in-place version gives the bits training's formula gives, so the
    parity gate's figures hold for the daemon's inputs."""
    rng = np.random.default_rng(0)
    scaler = StandardScaler(rng.normal(size=5) * 10, rng.uniform(0.1, 5.0, size=5))
    rows = (rng.normal(size=shape) * 100).astype(dtype)
    expected = ((rows.astype(np.float64) - scaler.mean) / scaler.scale).astype(np.float32)
    got = scaler.transform(rows)
    assert got.dtype == np.float32 and got.shape == shape
    assert got.tobytes() == expected.tobytes()


def test_transform_leaves_its_input_alone_and_inverse_undoes_it():
    scaler = StandardScaler.fit(np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]]))
    rows = np.array([[2.0, 20.0], [4.0, 40.0]])
    kept = rows.copy()
    scaled = scaler.transform(rows)
    np.testing.assert_array_equal(rows, kept)
    np.testing.assert_allclose(scaler.inverse(scaled), rows, rtol=1e-6)


def test_a_constant_column_scales_by_one():
    scaler = StandardScaler.fit(np.array([[1.0, 7.0], [3.0, 7.0]]))
    assert scaler.scale[1] == 1.0
    np.testing.assert_array_equal(scaler.transform(np.array([[2.0, 9.0]])), [[0.0, 2.0]])
