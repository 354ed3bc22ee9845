"""Training-time explanations (:mod:`training.explain`): on a problem whose target depends only
on tag 2 at the newest steps, integrated gradients, saliency and permutation importance all
rank tag 2 first and put the IG mass on the newest steps; IG is complete (attributions add up
to f(x) − f(baseline)); ``write`` leaves the heat-maps and the JSON in the run directory."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from training import explain

L, F, K = 8, 4, 2


def dependent_problem(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, L, F)).astype(np.float32)
    y = np.tanh(x[:, -2:, K].sum(axis=1))[:, None].astype(np.float32)
    return x, y


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    x, y = dependent_problem()
    inputs = keras.Input((L, F))
    h = keras.layers.Dense(16, activation="tanh")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    model.compile(keras.optimizers.Adam(0.01), "mse")
    model.fit(x, y, epochs=30, batch_size=64, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.05  # it learned the dependence
    return model


def test_every_method_ranks_the_dependent_tag_first(trained, tmp_path):
    x, y = dependent_problem(200, seed=1)
    tags = [f"tag{j}" for j in range(F)]
    summary = explain.write(trained, x, y, tags, 5.0, tmp_path, "synthetic")
    for method in ("saliency", "integrated_gradients", "permutation"):
        assert summary["ranking"][method][0] == f"tag{K}", (method, summary)
    perm = summary["permutation_mse_increase"]
    assert perm[f"tag{K}"] > 0.3 and max(perm[f"tag{j}"] for j in range(F) if j != K) < 0.05
    ig = explain.explain(trained, x, y, tags)["integrated_gradients"]
    assert ig[-2:, K].sum() > 0.8 * ig.sum()  # on the two newest steps of tag K
    saved = json.loads((tmp_path / "explanations.json").read_text())
    assert saved["ranking"] == summary["ranking"] and saved["windows"] == 200
    for name in ("explain_saliency.png", "explain_ig.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_a_classifier_is_explained_through_its_predicted_class(trained, tmp_path):
    """The trained regressor made a two-class classifier without another fit: logits
    (3y, −3y), softmax; class 0 ("up") when y > 0. Every method ranks tag K first, IG of the
    predicted class's probability is complete, and the permutation importance is the rise in
    cross-entropy and the drop in accuracy."""
    inputs = keras.Input((L, F))
    y = trained(inputs)
    logits = keras.layers.Concatenate()([keras.layers.Rescaling(3.0)(y),
                                         keras.layers.Rescaling(-3.0)(y)])
    classifier = keras.Model(inputs, keras.layers.Softmax()(logits))
    x, target = dependent_problem(200, seed=1)
    labels = (target <= 0).astype(np.float32)  # 0: up, 1: down
    summary = explain.write(classifier, x, labels, [f"tag{j}" for j in range(F)], 5.0,
                            tmp_path, "classes", classes=["up", "down"])
    assert summary["explained"] == "probability of the predicted class"
    for method in ("saliency", "integrated_gradients", "permutation"):
        assert summary["ranking"][method][0] == f"tag{K}", (method, summary)
    drop = summary["permutation_accuracy_drop"]
    assert drop[f"tag{K}"] > 0.2 and max(drop[f"tag{j}"] for j in range(F) if j != K) < 0.05
    assert summary["permutation_cross_entropy_increase"][f"tag{K}"] > 0.2
    assert summary["ig_completeness_mean_abs_gap"] < 0.01
    assert sum(summary["predicted_windows"].values()) == 200
    # in both classes tag K carries the predicted class's probability up from 0.5 (baseline)
    by_class = summary["integrated_gradients_by_class"]
    assert by_class["up"][f"tag{K}"] > 0 and by_class["down"][f"tag{K}"] > 0


def test_integrated_gradients_are_complete(trained):
    x, _ = dependent_problem(16, seed=2)
    baseline = np.full((L, F), 0.3, np.float32)  # any baseline, not only the mean
    ig = explain.integrated_gradients(trained, x, baseline, steps=64)
    f = trained.predict(x, verbose=0)[:, 0] - trained.predict(baseline[None], verbose=0)[0, 0]
    np.testing.assert_allclose(ig.sum(axis=(1, 2)), f, atol=0.02 * np.abs(f).max() + 1e-3)
    coarse = explain.integrated_gradients(trained, x, baseline, steps=1)  # one step: not
    assert np.abs(coarse.sum(axis=(1, 2)) - f).max() > np.abs(ig.sum(axis=(1, 2)) - f).max()


def test_training_a_soft_sensor_writes_its_explanations(tmp_path):
    from tests.helpers import tiny_soft_sensor

    run_dir = tiny_soft_sensor("cnn1d", tmp_path)
    summary = json.loads((run_dir / "explanations.json").read_text())
    tags = json.loads((run_dir / "training.json").read_text())["input"]["tags"]
    names = [t["name"] for t in tags]
    assert sorted(summary["ranking"]["integrated_gradients"]) == sorted(names)
    assert set(summary["permutation_mse_increase"]) == set(names)
    assert 0 < summary["windows"] <= explain.MAX_WINDOWS
    assert (run_dir / "explain_ig.png").exists() and (run_dir / "explain_saliency.png").exists()
