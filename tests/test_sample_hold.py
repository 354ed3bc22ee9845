"""Sample-and-hold on pure numpy: a constructed analyzer tag held every 3 steps is detected
with its cadence, a smooth tag and a quantised tag (repeats of varying length) are left alone,
and holding generated windows gives them the analyzer's staircase, as the data has it."""

from __future__ import annotations

import numpy as np

from training import sample_hold


def _windows(n: int = 60, length: int = 16, seed: int = 0) -> np.ndarray:
    """Windows (n, L, 3) cut at stride 1 from one series: tag 0 smooth, tag 1 sampled every
    3 steps and held, tag 2 quantised (repeats, runs of varying length)."""
    rng = np.random.default_rng(seed)
    rows = n + length
    smooth = np.cumsum(rng.normal(0, 0.1, rows))
    held = np.repeat(rng.normal(0, 1, rows // 3 + 1), 3)[:rows]
    quantised = np.round(np.cumsum(rng.normal(0, 0.3, rows)))
    series = np.column_stack([smooth, held, quantised])
    return np.stack([series[i:i + length] for i in range(n)])


def test_held_tag_detected_with_its_cadence_others_left_alone():
    x = _windows()
    assert (np.diff(x[:, :, 2], axis=1) == 0).mean() > 0.2  # the quantised tag repeats
    assert sample_hold.detect(x).tolist() == [1, 3, 1]


def test_hold_makes_staircases_only_on_held_tags():
    rng = np.random.default_rng(1)
    fake = rng.normal(size=(40, 16, 3))
    held = sample_hold.hold(fake, np.array([1, 3, 1]), np.random.default_rng(2))
    np.testing.assert_array_equal(held[:, :, [0, 2]], fake[:, :, [0, 2]])
    assert sample_hold.detect(held).tolist() == [1, 3, 1]
    # every held value is the generated value at a sampling instant of that window
    for w in range(len(fake)):
        assert set(held[w, :, 1]) <= set(fake[w, :, 1])
    phases = {int(np.flatnonzero(np.diff(h[:, 1]) != 0)[0] + 1) % 3 for h in held}
    assert len(phases) == 3  # the phase varies between windows


def test_generator_learns_holds_keeps_them_in_its_run_and_samples_held(tmp_path):
    import keras

    from training.generative import WindowGenerator, load_generator

    x = _windows()
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((3,)), keras.layers.Dense(16 * 3),
                            keras.layers.Reshape((16, 3))])
    gen = WindowGenerator("cvae", net, 16, 3, n_classes=1, latent_dim=2)
    plain = gen.sample(np.zeros(30, int), seed=4)
    assert gen.learn_sampling(x).tolist() == [1, 3, 1]
    held = gen.sample(np.zeros(30, int), seed=4)
    np.testing.assert_array_equal(held[:, :, [0, 2]], plain[:, :, [0, 2]])
    assert sample_hold.detect(held).tolist() == [1, 3, 1]
    gen.save(tmp_path)
    loaded, meta = load_generator(tmp_path)
    assert meta["hold_steps"] == [1, 3, 1]
    np.testing.assert_array_equal(loaded.sample(np.zeros(30, int), seed=4), held)


def test_held_tag_noise_correlates_between_samples_as_the_residuals_do():
    from training.generative import WindowGenerator

    gen = WindowGenerator("cvae", None, 16, 3, n_classes=1, latent_dim=2,
                          noise_phi=np.array([0.2, 0.9, 0.3]))
    gen.noise_acf = np.tile(np.array([[0.2, 0.9, 0.3]]), (15, 1))
    gen.noise_acf[2, 1] = 0.125  # lag 3: the held tag's residuals between two samples
    gen.learn_sampling(_windows())
    np.testing.assert_allclose(gen.noise_phi, [0.2, 0.5, 0.3], rtol=1e-6)
