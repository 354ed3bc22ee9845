"""Classification soft sensors (``soft_sensor.kind: classification``): a grade per lab sample
from a historian export → tiny train (softmax, cross-entropy; the logistic, last-class and
majority references and the explanations beside it) → convert (parity on class agreement and
probability error) → the edge publishes the class and its probabilities, with occlusion
contributions when asked. Bad input: a class name outside ``soft_sensor.classes``, or classes
without classification."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from converters.build import build_auto
from edge_runtime.config import SoftSensorEdgeConfig
from edge_runtime.interpreter import EdgeModel
from edge_runtime.payloads import PayloadError
from edge_runtime.pipelines import ModelPipeline
from edge_runtime.scaling import StandardScaler
from edge_runtime.validation import ConfigError
from training.config import TrainConfig, check_train_config
from training.soft_class_references import C_GRID
from training.train import train

CLASSES = ["low", "mid", "high"]
TAGS = ["flow_in", "level", "temperature", "pressure", "heater_power"]


def grade_export(path, extra: str = ""):
    """The simulated tank with a grade column every 4th row: the conversion's tertile (and
    ``extra`` written once, when given)."""
    from training.simulator import conversion, simulate, write_csv

    run = simulate(1500, 5.0, seed=1)
    write_csv(run, path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    value = conversion(run)
    edges = np.quantile(value, [1 / 3, 2 / 3])
    grade = np.array(CLASSES, dtype=object)[np.searchsorted(edges, value)]
    frame["grade"] = np.where(np.arange(len(frame)) % 4 == 0, grade, "")
    if extra:
        frame.loc[frame.index[400], "grade"] = extra
    frame.to_csv(path, index=False)
    return path


def config(csv, out, **soft) -> TrainConfig:
    return TrainConfig.model_validate({
        "name": "grade", "task": "soft_sensor", "family": "cnn1d",
        "model": {"filters": 8, "depth": 2},
        "data": {"source": "historian", "path": str(csv), "tags": TAGS},
        "window": {"period_s": 5, "length": 8, "max_gap_s": 15},
        "soft_sensor": {"target": "grade", "dead_time_s": 10, "kind": "classification",
                        "classes": CLASSES} | soft,
        "fit": {"epochs": 6, "batch_size": 32, "learning_rate": 0.01},
        "output_dir": str(out)})


def test_train_convert_run_publishes_the_class(tmp_path):
    cfg = config(grade_export(tmp_path / "grade.csv"), tmp_path / "runs")
    check_train_config(cfg, "grade.yaml")
    run_dir = train(cfg)
    bundle, attempts = build_auto(run_dir, tmp_path / "bundles", ("int8", "fp32"))
    m = bundle.manifest
    assert m.soft_sensor.kind == "classification" and m.soft_sensor.classes == CLASSES
    trained, edge = m.metrics["training"], m.metrics["edge"]
    assert trained["accuracy"] > 0.6 and trained["f1_macro"] > 0.5, trained  # chance: 1/3
    assert edge["agreement"] >= 0.98 and edge["prob_error"] <= 0.02, (m.quantization, attempts)
    print(f"grade: shipped {m.quantization}; accuracy {trained['accuracy']:.3f}, f1_macro "
          f"{trained['f1_macro']:.3f}; edge agreement {edge['agreement']:.4f}, prob_error "
          f"{edge['prob_error']:.4f}; logistic {trained['logistic_accuracy']:.3f}, last class "
          f"{trained['last_class_accuracy']:.3f}, majority {trained['majority_accuracy']:.3f}")
    # the references, on the same test labels: a majority class recalls one class of three
    for name in ("", "logistic_", "last_class_", "majority_"):
        for key in ("accuracy", "balanced_accuracy", "f1_macro"):
            assert 0 <= trained[name + key] <= 1, (name + key, trained)
    assert trained["majority_balanced_accuracy"] == pytest.approx(1 / 3)
    assert trained["logistic_accuracy"] > trained["majority_accuracy"] + 0.1, trained
    assert trained["logistic_C"] in C_GRID and 0 < trained["last_class_n"] <= trained[
        "labels_test"]
    # explanations of the predicted class's probability, on the validation windows
    summary = json.loads((run_dir / "explanations.json").read_text())
    assert summary["explained"] == "probability of the predicted class"
    for key in ("permutation_cross_entropy_increase", "permutation_accuracy_drop",
                "integrated_gradients", "saliency"):
        assert set(summary[key]) == set(TAGS), key
    assert sum(summary["predicted_windows"].values()) == summary["windows"]
    assert summary["ig_completeness_mean_abs_gap"] < 0.02, summary  # probabilities in [0, 1]
    assert (run_dir / "explain_ig.png").read_bytes()[:4] == b"\x89PNG"
    heldout = np.load(run_dir / "heldout.npz")
    got = EdgeModel(bundle.model_path).predict(heldout["x"])[0]
    assert got.shape == (len(heldout["x"]), 3) and np.allclose(got.sum(axis=1), 1, atol=0.02)
    pipeline = ModelPipeline("grade", bundle)
    window = StandardScaler.from_spec(m.scaler).inverse(heldout["x"][0])
    [out] = pipeline.infer(1.8e9, window)
    p = out.payload
    assert set(p["probabilities"]) == set(CLASSES) and p["target"] == "grade"
    assert p["class"] == CLASSES[int(got[0].argmax())]
    assert p["probabilities"][p["class"]] == pytest.approx(float(got[0].max()), abs=1e-4)
    assert "estimate" not in p and "bias" not in p
    with pytest.raises(PayloadError, match="lab_classification"):  # counted and skipped
        from edge_runtime.tasks.soft_sensor import on_lab

        on_lab(pipeline, 1.8e9 + 30, 1.0)
    assert "contributions" not in p and pipeline.task_state.occluder is None  # unasked
    # asked: each tag's share of the given class's probability, p − p with the tag at its mean
    explained = ModelPipeline("grade", bundle, task_options=SoftSensorEdgeConfig(
        explain_classes=[p["class"]]))
    [out] = explained.infer(1.8e9, window)
    ranks = out.payload["contributions"]
    assert {r["tag"] for r in ranks} == set(TAGS) and sum(r["share"] for r in ranks) == \
        pytest.approx(1, abs=1e-3)
    k = CLASSES.index(p["class"])
    top = TAGS.index(ranks[0]["tag"])
    x = explained.scaler.transform(window[None])
    x[0, :, top] = 0.0
    without = float(explained.model.predict(x)[0][0, k])
    assert ranks[0]["contribution"] == pytest.approx(p["probabilities"][p["class"]] - without,
                                                     abs=1e-4)
    other = ModelPipeline("grade", bundle, task_options=SoftSensorEdgeConfig(
        explain_classes=[c for c in CLASSES if c != p["class"]]))
    assert "contributions" not in other.infer(1.8e9, window)[0].payload
    assert other.task_state.occluder is None
    with pytest.raises(ValueError, match=r"soft_sensor.explain_classes: \['premium'\] not "):
        ModelPipeline("grade", bundle, task_options=SoftSensorEdgeConfig(
            explain_classes=["premium"]))


def test_a_label_outside_the_classes_is_refused_before_training(tmp_path):
    cfg = config(grade_export(tmp_path / "bad.csv", extra="premium"), tmp_path / "runs")
    with pytest.raises(ConfigError, match=r"soft_sensor.classes: the target column holds "
                                          r"'premium' \(1\) not in soft_sensor.classes"):
        check_train_config(cfg, "grade.yaml")
    with pytest.raises(ConfigError, match=r"soft_sensor.classes: .*'premium'"):
        train(cfg)
    assert not (tmp_path / "runs" / "grade" / "model.keras").exists()


def test_class_config_errors(tmp_path):
    with pytest.raises(ValidationError, match="soft_sensor.classes: classification needs two"):
        config("x.csv", tmp_path, classes=["only"])
    with pytest.raises(ValidationError, match="soft_sensor.classes: only with soft_sensor.kind"):
        config("x.csv", tmp_path, kind="regression")
    sim = config("x.csv", tmp_path).model_dump() | {"data": {"source": "simulator"}}
    sim["soft_sensor"] |= {"target": "conversion"}
    with pytest.raises(ConfigError, match="soft_sensor.kind: classification reads class names"):
        check_train_config(TrainConfig.model_validate(sim), "grade.yaml")


def test_the_class_references_cross_validate_over_every_fold():
    """Pooled over three folds held out once: a class that one input decides is found by the
    logistic reference, the majority recalls one class of two, the last class is scored where
    one is known; the logistic reference refits on each fold (its own standardisation)."""
    from training.label_splits import LabelSplits
    from training.soft_class_references import cross_validated, reference_metrics

    rng = np.random.default_rng(0)
    n = 300
    x = rng.standard_normal((n, 4, 3))
    values = (x[:, -1, 1] > 0.5).astype(float)  # about 30 % class 1, decided by input 1
    stamps = np.arange(n) * 60.0
    blocks = np.array_split(np.arange(n), 3)
    folds = [LabelSplits(np.concatenate([b for j, b in enumerate(blocks) if j != i]),
                         np.array([], int), blocks[i]) for i in range(3)]
    out = cross_validated(x, values, stamps, 0.0, folds, 1.0, 2)
    assert out["cv_folds"] == 3 and out["logistic_cv_accuracy"] > 0.9, out
    assert out["majority_cv_balanced_accuracy"] == pytest.approx(0.5)
    assert out["majority_cv_accuracy"] == pytest.approx(1 - values.mean())
    assert 0.3 < out["last_class_cv_accuracy"] < 0.8, out  # independent draws: little skill
    split = LabelSplits(blocks[0], blocks[1], blocks[2])
    arrays = (x[blocks[0]], values[blocks[0]], x[blocks[1]], values[blocks[1]], x[blocks[2]],
              values[blocks[2]])
    one = reference_metrics(stamps, values, 0.0, split, arrays, 2)
    assert one["logistic_accuracy"] > 0.9 and one["last_class_n"] == len(blocks[2])
