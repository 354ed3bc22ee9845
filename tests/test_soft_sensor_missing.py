"""``soft_sensor.missing``: a window with a gap is dropped (hold), mean-filled (mask) or
interpolated (interpolate) — by one function, in training and at the edge, so a trained
model sees at the gateway exactly the windows it was trained on."""

from __future__ import annotations

import numpy as np
import pytest

from converters.build import build_auto
from edge_runtime.bundle import RunRecord
from edge_runtime.interpreter import EdgeModel
from edge_runtime.pipelines import ModelPipeline
from edge_runtime.soft_sensing import fill_gaps
from tests.helpers import lab_export
from training.config import TrainConfig
from training.train import train

NAN = np.nan


def test_fill_gaps_modes():
    window = np.array([[1.0, 10.0], [NAN, 20.0], [NAN, 30.0], [4.0, NAN]])
    assert fill_gaps(window, "hold", 0.0) is None
    assert fill_gaps(window[:1], "hold", 0.0).tolist() == [[1.0, 10.0]]  # nothing missing
    masked = fill_gaps(window, "mask", np.array([-1.0, -2.0]))
    assert masked.tolist() == [[1.0, 10.0], [-1.0, 20.0], [-1.0, 30.0], [4.0, -2.0]]
    filled = fill_gaps(window, "interpolate", 0.0)
    assert filled.tolist() == [[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 30.0]]  # held on
    silent = np.array([[1.0, NAN], [2.0, NAN]])
    assert fill_gaps(silent, "mask", 0.0) is None and fill_gaps(silent, "interpolate", 0) is None
    with pytest.raises(ValueError, match="missing must be one of"):
        fill_gaps(window, "zero", 0.0)


def soft_config(csv, out, missing: str) -> TrainConfig:
    return TrainConfig.model_validate({
        "name": f"gap_{missing}", "task": "soft_sensor", "family": "cnn1d",
        "model": {"filters": 4, "depth": 1},
        "data": {"source": "historian", "path": str(csv),
                 "tags": ["flow_in", "level", "temperature", "pressure", "heater_power"]},
        "window": {"period_s": 5, "length": 8, "max_gap_s": 15},
        "soft_sensor": {"target": "conversion", "dead_time_s": 10, "missing": missing},
        "fit": {"epochs": 2, "batch_size": 32}, "output_dir": str(out)})


def test_interpolated_gaps_keep_labels_and_fill_alike_at_the_edge(tmp_path):
    # temperature silent for 40 s (8 rows) in three places: held 15 s, then 5 rows of gap,
    # which windows (8 rows) across them hold but never fill entirely
    silent = {"temperature": np.r_[300:308, 700:708, 1100:1108]}
    csv = lab_export(tmp_path / "gaps.csv", batches=1, silent=silent)
    held = RunRecord.load(train(soft_config(csv, tmp_path / "runs", "hold")))
    run_dir = train(soft_config(csv, tmp_path / "runs", "interpolate"))
    filled = RunRecord.load(run_dir)
    assert held.metrics["keras"]["labels_with_gap"] > 0
    assert filled.metrics["keras"]["labels_with_gap"] == 0
    kept = lambda r: sum(r.metrics["keras"][f"labels_{s}"]  # noqa: E731
                         for s in ("train", "val", "test", "purged"))
    assert kept(filled) == kept(held) + held.metrics["keras"]["labels_with_gap"]
    assert filled.soft_sensor.missing == "interpolate"
    # at the edge: a window whose temperature went silent is estimated, not dropped, and the
    # estimate is the model's on the window filled the training way
    bundle, _ = build_auto(run_dir, tmp_path / "bundles", ("fp32",))
    # a step is final one period after (temperature's silence stops eager finality)
    pipeline = ModelPipeline("gap", bundle, allowed_lateness_s=5.0)
    tags = pipeline.tags
    t0 = 1.8e9
    for step in range(12):
        for j, tag in enumerate(tags):
            if tag == "temperature" and step >= 3:
                continue  # silent from step 3 on
            pipeline.push(tag, t0 + 5.0 * step, 50.0 + j + 0.1 * step)
    pipeline.push("flow_in", t0 + 60.0, 1.0)  # moves the watermark to step 11
    outputs = pipeline.flush()
    # windows end at steps 7..11, every one with a gap in temperature
    assert pipeline.windows_dropped_gap == 0 and len(outputs) == 5
    col = tags.index("temperature")
    rows = np.array([[50.0 + j + 0.1 * s for j in range(len(tags))] for s in range(12)])
    rows[3:6, col] = rows[2, col]  # held for max_gap_s (15 s) after its last sample
    rows[6:, col] = NAN  # then a gap
    last = fill_gaps(rows[-8:], "interpolate", 0.0)
    got = EdgeModel(bundle.model_path).predict(pipeline.scaler.transform(last[None]))[0]
    assert outputs[-1].payload["raw_estimate"] == pytest.approx(
        float(bundle.manifest.soft_sensor.to_units(got[0, 0])), abs=1e-4)
