"""Smoke tests of the monitors the nested selection offers: dynamic PCA, rank fusion, and
the autoencoders of the grid fitted, fused and run in LiteRT (really trained, tiny)."""

from __future__ import annotations

import numpy as np

from training.dynamic_pca import DynamicPCA, lagged
from training.fusion import RankFusion


def _ar_rows(n: int, rng, phi: float = 0.9) -> np.ndarray:
    """Two tags following one AR(1) state, so only their dynamics tie rows together."""
    x = np.zeros(n)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + rng.normal()
    return np.stack([x, x + 0.05 * rng.normal(size=n)], axis=1)


def test_lagged_rows_and_dynamic_pca_catch_a_change_in_dynamics():
    rows = np.arange(12, dtype=float).reshape(6, 2)
    lag = lagged(rows, 2)
    assert lag.shape == (6, 6) and np.isnan(lag[:2]).any() and not np.isnan(lag[2:]).any()
    np.testing.assert_array_equal(lag[3], [6, 7, 4, 5, 2, 3])
    rng = np.random.default_rng(0)
    normal = _ar_rows(2000, rng)
    monitor = DynamicPCA.fit(normal, lags=2, variance=0.9)
    # same marginal spread, other dynamics: each row alone looks normal, consecutive ones not
    white = rng.normal(size=(2000, 1)) * normal[:, :1].std() @ np.ones((1, 2))
    spe_n, spe_w = monitor.spe(_ar_rows(2000, rng)), monitor.spe(white)
    assert np.isnan(spe_w[:2]).all()
    assert np.nanmean(spe_w) > 5 * np.nanmean(spe_n)
    contrib = monitor.spe_contributions(white)
    np.testing.assert_allclose(np.nansum(contrib, axis=1), np.nan_to_num(spe_w), rtol=1e-9)


def test_rank_fusion_one_score_names_the_tag():
    rng = np.random.default_rng(0)
    ref = [rng.exponential(size=500), rng.exponential(size=500) * 100]
    fusion = RankFusion.fit(ref)
    stats = [np.array([0.5, 0.5, 9.0]), np.array([50.0, 2000.0, 50.0])]
    fused = fusion.fuse(stats)
    assert fused[0] < 2 and fused[1] > 5 and fused[2] > 5  # either statistic out is enough
    both = fusion.fuse([np.array([9.0]), np.array([2000.0])])
    assert both[0] > max(fused[1], fused[2])
    per_tag = [np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]),
               np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])]
    contrib = fusion.contributions(stats, per_tag)
    assert contrib[1, 1] > contrib[1, 0] and contrib[2, 0] > contrib[2, 1]
    np.testing.assert_allclose(contrib.sum(axis=1), fused)


def test_rank_fusion_has_no_ceiling_past_the_reference():
    """Without a tail every score beyond the largest reference scores −log(1/(n+1)) and a
    limit above S·log(n+1) is never reached; with it the score goes on rising, and it joins
    the empirical part without a jump."""
    rng = np.random.default_rng(1)
    ref = [rng.exponential(size=400), rng.normal(size=400)]
    fusion = RankFusion.fit(ref)
    ceiling = 2 * np.log(401)
    top = [r.max() for r in fusion.references]
    far = fusion.fuse([np.array([top[0] + 5.0, top[0] + 50.0]), np.array([top[1] + 5.0] * 2)])
    assert far[0] > ceiling + 1 and far[1] > far[0] + 10
    at_top = fusion.parts([np.array([top[0], top[0] + 1e-9]), np.array([0.0, 0.0])])[:, 0]
    assert abs(at_top[1] - at_top[0]) < np.log(2) + 1e-6  # one rank's step, not a leap
    # a constant reference (no spread in its tail) still gives finite, rising parts
    flat = RankFusion.fit([np.ones(50)])
    parts = flat.parts([np.array([1.0, 1.5, 2.0])])[:, 0]
    assert np.all(np.isfinite(parts)) and parts[0] < parts[1] < parts[2]


def test_grid_autoencoders_fit_fuse_and_run_in_litert(tmp_path):
    """conv (temporal convolution) and LSTM autoencoders of the grid, their fusion with
    dynamic PCA, and the same monitors with the models converted to int8 LiteRT."""
    from evaluation.common import EdgeConverter
    from evaluation.monitors import MonitorGrid, MonitorSet

    rng = np.random.default_rng(0)
    normal = rng.normal(size=(160, 3)).astype(np.float32)
    test = rng.normal(size=(80, 3)).astype(np.float32)
    test[40:, 1] += 6.0
    grid = MonitorGrid(autoencoders=(("conv_ae", 8), ("lstm_ae", 6)), epochs=3)
    monitors = MonitorSet.fit(normal, grid)
    assert set(grid.names()) == {"pca_t2_spe", "dpca_t2_spe", "conv_ae_w8", "lstm_ae_w6",
                                 "fused_conv_ae_w8", "fused_lstm_ae_w6"}
    streams = monitors.streams(test)
    fused = streams["fused_conv_ae_w8"][0]
    assert np.isnan(fused[:7]).all() and np.nanmean(fused[40:]) > np.nanmean(fused[8:40]) + 3
    contrib = monitors.contributions(test, "fused_conv_ae_w8")
    assert np.argmax(np.nanmean(contrib[40:], axis=0)) == 1
    converter = EdgeConverter("int8", tmp_path)
    edge = monitors.convert(converter, normal, ["fused_conv_ae_w8"])
    assert set(edge.edge) == {"conv_ae_w8"}
    e = edge.streams(test, "edge", ["conv_ae_w8"])["conv_ae_w8"][0]
    k = streams["conv_ae_w8"][0]
    assert np.nanmean(e[40:]) > 3 * np.nanmean(e[8:40])
    np.testing.assert_allclose(np.nanmean(e[40:]), np.nanmean(k[40:]), rtol=0.2)
