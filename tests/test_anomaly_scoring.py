"""Pure-logic checks of the anomaly scoring pieces: NAB, PCA T²/SPE, calibration, smoothing."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.alarms import replay
from edge_runtime.bundle import ThresholdSpec
from edge_runtime.scoring import contribution_shares, scored_windows
from edge_runtime.smoothing import ScoreFilter, smooth_scores
from training.config import ThresholdConfig
from training.nab import NabTally, changepoints_from_flags, nab_tally, scaled_sigmoid
from training.pca_monitor import PCAMonitor
from training.thresholds import calibrate, kde_quantile

T = np.arange(600, dtype=float)  # one row per second


def _cp(*idx):
    cp = np.zeros(len(T), bool)
    cp[list(idx)] = True
    return cp


def test_nab_perfect_null_and_normalisation():
    truth = _cp(100, 400)
    perfect = nab_tally(T, truth, truth)
    assert perfect.raw == pytest.approx(2.0)
    assert perfect.normalised() == pytest.approx(100.0)
    null = nab_tally(T, truth, np.zeros(len(T), bool))
    assert null.raw == pytest.approx(-2.0) and null.normalised() == pytest.approx(0.0)


def test_nab_late_detection_earns_less_and_only_first_counts():
    truth = _cp(100)
    early, late = nab_tally(T, truth, _cp(105)), nab_tally(T, truth, _cp(150))
    assert 0 < late.raw < early.raw < 1
    # a second detection inside the same window changes nothing
    assert nab_tally(T, truth, _cp(105, 110)).raw == pytest.approx(early.raw)
    # the window is to the RIGHT: a detection just before the change point is a false positive
    assert nab_tally(T, truth, _cp(95)).raw == pytest.approx(-0.11 - 1.0)


def test_nab_false_positives_cost_more_far_from_a_window():
    truth = _cp(100)
    near = nab_tally(T, truth, _cp(105, 170))  # 10 s after the window's end
    far = nab_tally(T, truth, _cp(105, 500))  # > 3 window lengths after: full -A_fp
    hit = nab_tally(T, truth, _cp(105)).raw
    assert hit - 0.11 == pytest.approx(far.raw)
    assert far.raw < near.raw < hit
    assert scaled_sigmoid(-1.0) == pytest.approx(0.9866, abs=1e-4) and scaled_sigmoid(0) == 0
    pooled = NabTally(1, 2, -2) + NabTally(-2, 2, -2)
    assert pooled.normalised() == pytest.approx(100 * (-1 + 4) / 8)


def test_changepoints_are_flag_switches():
    flags = np.array([0, 0, 1, 1, 1, 0, 0], bool)
    assert changepoints_from_flags(flags).tolist() == [0, 0, 1, 0, 0, 1, 0]


def test_pca_t2_spe_and_contributions_name_the_broken_tag():
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(2000, 2))
    rows = latent @ rng.normal(size=(2, 6)) + 0.05 * rng.normal(size=(2000, 6))
    pca = PCAMonitor.fit(rows, variance=0.95)
    assert pca.components.shape[0] == 2
    t2 = pca.t2(rows)
    assert t2.mean() == pytest.approx(2.0, rel=0.1)  # E[T²] = number of components
    broken = rows[:10].copy()
    broken[:, 4] += 3.0  # breaks the correlation structure → SPE, and tag 4 dominates it
    assert pca.spe(broken).min() > np.quantile(pca.spe(rows), 0.999)
    share = pca.spe_contributions(broken) / pca.spe(broken)[:, None]
    assert (share.argmax(axis=1) == 4).all()
    np.testing.assert_allclose(pca.spe_contributions(broken).sum(1), pca.spe(broken))


def test_calibration_rules():
    rng = np.random.default_rng(1)
    scores = rng.exponential(1.0, 5000)
    spec = calibrate(scores, "quantile", 0.99, margin=1.5)
    assert spec.raise_at == pytest.approx(1.5 * np.quantile(scores, 0.99))
    assert kde_quantile(scores, 0.99) == pytest.approx(np.log(100), rel=0.1)
    assert "0.99 quantile" in spec.rule
    assert replay(spec, scores).mean() < 0.01


def test_coverage_rule_expects_the_asked_false_alarm_rate_on_small_validation_sets():
    """100 normal scores, 95 % limit: over many draws the new-score exceedance of the
    ``coverage`` limit averages 5 %, numpy's default quantile 5.9 % (rank 95.05 of 101)."""
    rng = np.random.default_rng(0)
    draws = rng.uniform(size=(4000, 100))  # uniform scores: exceedance = 1 − limit
    numpy_far = 1 - np.quantile(draws, 0.95, axis=1).mean()
    coverage_far = 1 - np.mean([calibrate(d, "coverage", 0.95).raise_at for d in draws[:1000]])
    assert numpy_far == pytest.approx(1 - 95.05 / 101, abs=0.002)
    assert coverage_far == pytest.approx(0.05, abs=0.003)
    assert "0.95 coverage" in calibrate(draws[0], "coverage", 0.95).rule
    assert calibrate(draws[0], "coverage", 0.999).raise_at == draws[0].max()  # n too small
    assert ThresholdConfig(rule="coverage").rule == "coverage"  # training configs take it


def test_ewma_and_k_of_n_filter_streams_like_the_batch_replay():
    spec = ThresholdSpec(raise_at=1.0, clear_at=1.0, ewma_alpha=0.5, vote_k=2, vote_n=3)
    scores = np.array([0, 4, 0, 0, 4, 4, 0, 0, 0], float)
    f = ScoreFilter(spec)
    streamed = [f.update(s) for s in scores]
    np.testing.assert_allclose(streamed, smooth_scores(spec, scores))
    ewma = [0, 2, 1, 0.5, 2.25, 3.125, 1.5625, 0.78125, 0.390625]
    votes = [0.0] + [sorted(ewma[max(0, i - 2):i + 1])[-2] for i in range(1, 9)]
    np.testing.assert_allclose(streamed, votes)
    # k-of-n: a lone spike never raises; two of three above the limit do
    lone = ThresholdSpec(raise_at=1.0, clear_at=1.0, vote_k=2, vote_n=3)
    assert not replay(lone, np.array([0, 5, 0, 0, 0.0])).any()
    assert replay(lone, np.array([0, 5, 0, 5, 0.0])).tolist() == [0, 0, 0, 1, 0]


def test_threshold_spec_defaults_keep_old_bundles_valid():
    spec = ThresholdSpec(raise_at=1.0, clear_at=0.8)
    assert (spec.ewma_alpha, spec.vote_k, spec.vote_n) == (1.0, 1, 1)
    scores = np.array([0.5, 2.0, 0.1])
    np.testing.assert_array_equal(smooth_scores(spec, scores), scores)


def test_contribution_shares_rank_tags_per_window():
    errors = np.array([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0], [2.0, 2.0, 4.0]])
    shares, order = contribution_shares(errors)
    np.testing.assert_allclose(shares[0], [0.25, 0.75, 0.0])
    np.testing.assert_array_equal(shares[1], 0.0)  # no error: no culprit, no division by zero
    assert order[0].tolist() == [1, 0, 2] and order[2].tolist() == [2, 0, 1]  # ties: tag order


def test_scored_windows_adds_the_kl_output_for_elbo_whatever_the_output_order():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 6, 3))
    recon, kl = x + 0.5, np.arange(4.0)[:, None]
    scores, per_tag = scored_windows(x, [kl, recon], "elbo")
    np.testing.assert_allclose(per_tag, 0.25)
    np.testing.assert_allclose(scores, 0.25 + np.arange(4.0))
    np.testing.assert_allclose(scored_windows(x, [recon, kl])[0], 0.25)
    with pytest.raises(ValueError, match="unknown score"):
        scored_windows(x, [recon], "likelihood")
