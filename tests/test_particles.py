"""Particle sizing without a model: the micrograph generator's ground truth, and the gateway's
numpy post-processing (labelling, growing, measuring) on the generator's own classes."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.particles import label, measure, preprocess, size_particles
from training.images.micrographs import MicrographConfig, classes, generate


def test_ground_truth_d50_is_the_drawn_sizes_and_the_mask_agrees():
    cfg = MicrographConfig(size=128, um_per_px=0.8, d50_um=12.0)
    m = generate(cfg, seed=7)
    assert m.stats["count"] == len(m.ecd_um) == m.labels.max() >= 10
    assert m.stats["d50_um"] == pytest.approx(float(np.median(m.ecd_um)))
    assert m.stats["d10_um"] < m.stats["d50_um"] < m.stats["d90_um"]
    # every drawn particle is visible, and the mask's areas give the drawn sizes back
    found = measure(m.labels, int(m.labels.max()), cfg.um_per_px)
    assert len(found["ecd_um"]) == len(m.ecd_um)
    assert np.median(found["ecd_um"]) == pytest.approx(m.stats["d50_um"], rel=0.05)


def test_generator_is_deterministic_by_seed_and_bimodal_has_two_modes():
    cfg = MicrographConfig(distribution="bimodal", d50_um=10.0, mode_ratio=2.5,
                           mode_share=0.5, sigma=0.1, count=(30, 30), size=160)
    a, b, c = generate(cfg, 1), generate(cfg, 1), generate(cfg, 2)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)
    logd = np.log(a.ecd_um)
    assert ((logd < np.log(14)).sum() >= 5) and ((logd > np.log(18)).sum() >= 5)
    assert not ((logd > np.log(14)) & (logd < np.log(16))).any()


def test_labelling_matches_a_reference_on_random_masks():
    ndimage = pytest.importorskip("scipy.ndimage")
    for seed in range(5):
        mask = np.random.default_rng(seed).random((48, 40)) < 0.55
        ours, n = label(mask)
        ref, n_ref = ndimage.label(mask)  # 4-connected by default
        assert n == n_ref
        assert len(set(zip(ours[mask].tolist(), ref[mask].tolist(), strict=True))) == n


def test_perfect_classes_give_back_count_and_d50_of_touching_particles():
    cfg = MicrographConfig(size=128, um_per_px=0.5, d50_um=9.0, touch=0.6)
    m = generate(cfg, seed=3)
    fields, labels = size_particles(np.eye(3)[classes(m.labels)], cfg.um_per_px)
    assert fields["count"] == len(m.ecd_um)
    assert fields["d50_um"] == pytest.approx(m.stats["d50_um"], rel=0.05)
    assert fields["um_per_px"] == 0.5 and sum(fields["histogram"]["counts"]) == fields["count"]
    assert labels.max() == fields["count"]


def test_calibration_and_frame_shape_errors_name_the_field():
    probs = np.zeros((8, 8, 3), np.float32)
    for bad in (0.0, None, -1.0):
        with pytest.raises(ValueError, match="um_per_px"):
            size_particles(probs, bad)
    with pytest.raises(ValueError, match="grey"):
        preprocess(np.zeros((8, 8, 3), np.uint8), 5)


def test_preprocess_flattens_uneven_light():
    ramp = np.tile(np.linspace(40, 220, 64, dtype=np.float32), (64, 1)).astype(np.uint8)
    x = preprocess(ramp, 15)[..., 0]
    assert x.shape == (64, 64) and abs(float(x[8:-8, 8:-8].mean())) < 0.2


def test_preprocess_is_the_definition_for_uint8_and_float_frames():
    """The box mean is a k×k mean over the reflected frame, the result is divided by the
    flattened frame's standard deviation; a uint8 frame (integer sums) and the same frame in
    0..1 give the same model input."""
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (24, 40)).astype(np.uint8)
    k, p = 7, 3
    padded = np.pad(frame / 255.0, p, mode="reflect")
    means = np.array([[padded[i:i + k, j:j + k].mean() for j in range(40)] for i in range(24)])
    flat = frame / 255.0 - means
    expected = flat / flat.std()
    np.testing.assert_allclose(preprocess(frame, k)[..., 0], expected, atol=2e-5)
    np.testing.assert_allclose(preprocess(frame / 255.0, k)[..., 0], expected, atol=2e-5)
    assert preprocess(frame, 6).shape == (24, 40, 1)  # an even window is widened to 7
    flat_grey = preprocess(np.full((16, 16), 90, np.uint8), 5)  # no contrast: no blow-up
    assert np.all(flat_grey == 0.0)


def test_box_sums_stay_exact_when_the_integer_table_wraps():
    """A 3000 × 3000 uint8 frame: its int32 summed-area table passes 2³¹, the box sums (small
    differences of its entries) must still be the true ones, far corner included."""
    from edge_runtime.particles import box_sum

    frame = np.random.default_rng(5).integers(240, 256, (3000, 3000)).astype(np.uint8)
    sums = box_sum(frame, 5)
    assert int(frame.sum(dtype=np.int64)) > 2**31  # the table does wrap
    for i, j in ((1500, 1500), (2990, 2997), (2995, 40)):
        assert sums[i, j] == int(frame[i - 2:i + 3, j - 2:j + 3].sum(dtype=np.int64))


def test_d50_range_gives_each_image_its_own_median():
    cfg = MicrographConfig(d50_range=(8.0, 20.0), sigma=0.1, count=(20, 20))
    d50 = [generate(cfg, seed).stats["d50_um"] for seed in range(8)]
    assert max(d50) / min(d50) > 1.5 and all(7.0 < d < 22.0 for d in d50)


def test_sizing_metrics_are_perfect_on_true_classes_and_not_on_empty_ones():
    from training.images.particle_sizing import make_set, sizing_metrics

    data = make_set(MicrographConfig(size=96, count=(6, 10), d50_range=(7.0, 14.0),
                                     max_d_um=20.0), 4, 0, 15)
    perfect = sizing_metrics(np.eye(3)[data.classes], data.heldout(), 1.0)
    assert perfect["interior_iou"] == 1.0 and perfect["count_error_pct"] == 0.0
    assert perfect["d50_error_pct"] < 5.0
    empty = sizing_metrics(np.eye(3)[np.zeros_like(data.classes)], data.heldout(), 1.0)
    assert empty["interior_iou"] == 0.0 and empty["count_error_pct"] == 100.0


def _two_touching_discs(core: bool) -> np.ndarray:
    """Classes of two discs (radius 8) whose interiors run together: the neck between them
    is interior, no boundary across it (what a segmenter does on a faint contact line)."""
    yy, xx = np.mgrid[0:40, 0:60]
    left, right = np.hypot(yy - 20, xx - 20) <= 8, np.hypot(yy - 20, xx - 35) <= 8
    labels = np.where(left, 1, 0) + np.where(right & ~left, 2, 0)
    out = classes(labels, core_px=3.0 if core else 0.0)
    contact = (labels > 0) & (np.abs(xx - 27.5) <= 1.5)  # the boundary between them, lost
    out[contact & (out == 2) & (np.abs(yy - 20) <= 3)] = 1
    return out


def test_cores_split_touching_discs_whose_interiors_run_together():
    from edge_runtime.particles import instances

    merged, n_merged = instances(_two_touching_discs(core=False))
    assert n_merged == 1 and set(np.unique(merged)) == {0, 1}  # without cores: one particle
    classes4 = _two_touching_discs(core=True)
    labels, n = instances(classes4)
    assert n == 2 and set(np.unique(labels)) == {0, 1, 2}
    area = np.bincount(labels.ravel())[1:]
    assert abs(int(area[0]) - int(area[1])) <= 0.15 * area.mean()  # split near the middle
    fields, _ = size_particles(np.eye(4, dtype=np.float32)[classes4], 1.0)
    assert fields["count"] == 2
    assert all(14.0 < d < 19.0 for d in fields["ecd_um"])  # disc of radius 8: ECD ≈ 16.5


def test_an_interior_region_without_a_core_is_still_one_particle():
    from edge_runtime.particles import BOUNDARY, CORE, INTERIOR, instances

    c = np.zeros((30, 40), np.uint8)
    c[4:16, 4:16], c[6:14, 6:14], c[9:11, 9:11] = BOUNDARY, INTERIOR, CORE  # has a core
    c[18:25, 25:32], c[19:24, 26:31] = BOUNDARY, INTERIOR  # small: no core predicted
    labels, n = instances(c)
    assert n == 2 and np.array_equal(np.unique(labels), [0, 1, 2])
    big, small = labels[5:15, 5:15], labels[18:25, 26:31]  # interior + a grown ring
    assert (big > 0).all() and (small > 0).all() and big[0, 0] != small[0, 0]
    assert len(np.unique(big)) == 1 and len(np.unique(small)) == 1


def test_perfect_core_classes_give_back_the_count_of_touching_particles():
    cfg = MicrographConfig(size=128, um_per_px=0.5, d50_um=9.0, touch=0.6)
    m = generate(cfg, seed=3)
    fields, _ = size_particles(np.eye(4)[classes(m.labels, core_px=3.0)], cfg.um_per_px)
    assert fields["count"] == len(m.ecd_um)
    assert fields["d50_um"] == pytest.approx(m.stats["d50_um"], rel=0.05)
