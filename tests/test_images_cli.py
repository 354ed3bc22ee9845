"""Images on the main path, as a user runs them: ``procedge train`` on an image config (the
shipped ``configs/images/*.yaml`` shape, pointed at a tiny synthetic folder) → ``procedge
convert`` → an image bundle that ``procedge run`` serves: JPEGs in over a real Mosquitto,
verdicts out."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml
from PIL import Image

from edge_runtime.bundle import Bundle
from edge_runtime.config import EdgeConfig
from procedge.cli import main
from tests.daemon_support import Collector, start_daemon_process, wait_for, write_config
from training.config import load_train_config
from training.images.synthetic import write_set

pytestmark = pytest.mark.slow
CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "images"


def test_shipped_image_configs_validate_and_read_procedge_data(tmp_path, monkeypatch):
    monkeypatch.setenv("PROCEDGE_DATA", str(tmp_path))
    for path, task in (("tile_classifier.yaml", "image_class"),
                       ("tile_segmenter.yaml", "image_segment")):
        config = load_train_config(CONFIGS / path)
        assert config.task == task
        assert config.image.root == tmp_path / "magnetic_tile"


def _tiny_config(path: Path, source: dict, data: Path, task: str, family: str,
                 model: dict) -> Path:
    config = source | {"name": f"cli_{task}", "task": task, "family": family, "model": model,
                       "fit": {"epochs": 2, "batch_size": 8, "patience": 2, "seed": 0}}
    config["image"] = source["image"] | {"root": str(data), "size": 24,
                                         "trainer": {"schedule": "plateau", "augment": False}}
    path.write_text(yaml.safe_dump(config))
    return path


def _jpeg(value: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((60, 80), value, np.uint8)).save(out, format="JPEG")
    return out.getvalue()


def test_procedge_train_convert_run_serves_an_image_bundle(tmp_path, broker, capsys):
    data = write_set(tmp_path / "data", per_class=6, seed=0)
    roles = {"classifier": ("tile_classifier.yaml", "image_class", "small_cnn",
                            {"width": 2, "blocks": 2}),
             "segmenter": ("tile_segmenter.yaml", "image_segment", "unet",
                           {"width": 2, "levels": 2})}
    bundles = {}
    for role, (shipped, task, family, model) in roles.items():
        source = yaml.safe_load((CONFIGS / shipped).read_text())
        config = _tiny_config(tmp_path / f"{role}.yaml", source, data, task, family, model)
        main(["train", str(config), "--output-dir", str(tmp_path / "runs")])
        run_dir = tmp_path / "runs" / f"cli_{task}"
        assert json.loads((run_dir / "training.json").read_text())["task"] == task
        flag = "--accuracy" if role == "classifier" else "--iou"  # 2 epochs: any parity
        main(["convert", str(run_dir), "--mode", "int8", flag, "1.0",
              "--out", str(tmp_path / "bundles")])
        bundles[role] = tmp_path / "bundles" / f"cli_{task}-int8"
        manifest = Bundle.load(bundles[role]).manifest
        assert (manifest.task, manifest.image.kind, manifest.quantization) == (task, role, "int8")
    assert "cli_image_class" in capsys.readouterr().out

    config = write_config(tmp_path / "edge.yaml", {
        "gateway": "gwimg", "mqtt": {"host": broker.host, "port": broker.port},
        "outbox": {"path": str(tmp_path / "outbox.db")},
        "cameras": [{"name": "press1", "classifier": str(bundles["classifier"]),
                     "segmenter": str(bundles["segmenter"])}]})
    uns = EdgeConfig.model_validate(yaml.safe_load(config.read_text())).topics.uns
    watch = Collector(broker.port, [f"{uns}/inference/#"],
                      client_id="img-watch")
    daemon = start_daemon_process(config, tmp_path / "daemon.log")
    camera = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="camera")
    try:
        camera.connect(broker.host, broker.port)
        camera.loop_start()
        for sent in range(30):  # until the daemon is up and subscribed (a fresh TF-free start)
            camera.publish(f"{uns}/camera/press1", _jpeg(90 + sent), qos=1).wait_for_publish(5)
            if wait_for(lambda: watch.json(f"{uns}/inference/press1"), 2):
                break
        verdicts = watch.json(f"{uns}/inference/press1")
        assert verdicts, (tmp_path / "daemon.log").read_text()[-2000:]
        v = verdicts[0]
        assert v["status"] == "ok" and v["verdict"] in ("OK", "NOK")
        assert {"class", "p_nok", "defect_area_px", "regions", "boxes"} <= set(v)
        assert set(v["models"]) == {"classifier", "segmenter"}
    finally:
        camera.loop_stop()
        camera.disconnect()
        watch.close()
        daemon.terminate()
        daemon.wait(20)


def test_image_task_without_image_section_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "task": "image_class", "family": "small_cnn"}))
    with pytest.raises(ValueError, match="needs an 'image' section"):
        load_train_config(path)
