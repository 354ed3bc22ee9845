"""Task particle_size end to end, tiny: ``train`` on generated micrographs → ``convert``
(int8, parity gate on the task's metric) → the camera pipeline with the LiteRT interpreter:
one sizing payload per frame with the calibration used; corrupt and wrong-size frames are
counted and skipped; a missing or zero calibration is a config error naming the field."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from training.config import TrainConfig

SIZE, UM = 48, 0.5
# Large enough that the tiny model learns the particles (interior IoU 0.54-0.76 over seeds
# 0-2): the int8 gate then compares two working models. With 16 images, 2 epochs and width 4
# it learned nothing and whether int8 passed the gate's +1 point on D50 error was chance.
PARTICLES = {"um_per_px": UM, "size": SIZE, "train_images": 32, "val_images": 8,
             "flatten_px": 15, "generator": {"d50_um": 5.0, "min_d_um": 3.5, "max_d_um": 8.0,
                                            "count": [3, 6], "sigma": 0.15}}


def _config(tmp_path, **particles) -> TrainConfig:
    return TrainConfig.model_validate({
        "name": "tiny_particles", "task": "particle_size", "family": "particle_unet",
        "model": {"width": 8, "levels": 2}, "output_dir": str(tmp_path / "runs"),
        "fit": {"epochs": 10, "batch_size": 8, "learning_rate": 0.005, "seed": 0},
        "particles": PARTICLES | particles})


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("bad", [{"um_per_px": 0}, {"um_per_px": None},
                                 {"generator": {"um_per_px": 2.0}},
                                 {"generator": {"d50": 3.0}}])
def test_bad_calibration_or_generator_option_names_the_field(tmp_path, bad):
    with pytest.raises(ValidationError, match="um_per_px|d50"):
        _config(tmp_path, **bad)
    with pytest.raises(ValidationError, match="particles"):
        TrainConfig.model_validate({"name": "x", "task": "particle_size",
                                    "family": "particle_unet"})


def test_shipped_config_validates():
    from pathlib import Path

    from training.config import load_train_config

    path = Path(__file__).resolve().parent.parent / "configs" / "images" / "particle_sizer.yaml"
    config = load_train_config(path)
    assert config.task == "particle_size" and config.particles.um_per_px > 0


def test_train_convert_parity_and_edge_payload(tmp_path):
    from converters.build import ConvertOptions, build
    from edge_runtime.imaging import ImagePipeline
    from training.images.micrographs import MicrographConfig, generate
    from training.train import train

    run_dir = train(_config(tmp_path))
    bundle, report = build(run_dir, tmp_path / "bundles", ConvertOptions(candidates=("int8",)))
    row = report["candidates"][0]
    assert report["choice"] == "int8" and row["parity"]["passed"]
    assert row["parity"]["keras"]["interior_iou"] > 0.4  # a model that found the particles
    edge = bundle.manifest.metrics["edge"]
    assert {"interior_iou", "d50_error_pct", "count_error_pct", "d50_r2"} <= set(edge)
    assert bundle.manifest.image.um_per_px == UM

    camera = ImagePipeline("scope", segmenter=bundle)
    gen = MicrographConfig.model_validate(PARTICLES["generator"] | {"size": SIZE,
                                                                    "um_per_px": UM})
    for seed in range(3):
        frame = generate(gen, 100 + seed).image
        out = camera.process(_png(frame))
        payload = out[0].payload
        assert payload["status"] == "ok" and payload["um_per_px"] == UM
        assert payload["count"] == len(payload["ecd_um"]) == len(payload["aspect_ratio"])
        assert sum(payload["histogram"]["counts"]) == payload["count"]
        assert "mask" not in payload and payload["inference_ms"] > 0
    corrupt = camera.process(b"\x89PNG\r\n\x1a\n broken")
    wrong = camera.process(_png(np.zeros((SIZE, SIZE + 8), np.uint8)))
    assert [o.payload["reason"] for o in corrupt + wrong] == ["image_corrupt", "image_size"]
    assert camera.rejected == {"image_corrupt": 1, "image_size": 1}
