"""Image QC end to end on a synthetic defect set: train (seconds) → int8 bundle through the
parity gate → Grad-CAM → the daemon receives JPEGs over a real Mosquitto and publishes
verdicts; corrupt and 50 MB frames are refused and counted."""

from __future__ import annotations

import io
import json
import queue
import time

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from PIL import Image

from converters.build import build_bundle
from edge_runtime.bundle import Bundle, ImageSpec
from edge_runtime.config import CameraConfig, EdgeConfig, MqttConfig
from edge_runtime.daemon import EdgeDaemon
from edge_runtime.imaging import ImagePipeline, QcSettings
from evaluation.results import check
from training.images import data as imdata
from training.images import explain
from training.images.metrics import segmentation_metrics
from training.images.synthetic import defect_image, write_set
from training.images.train import ImageTrainConfig, Split, _BudgetCosine, train_image_model

pytestmark = pytest.mark.slow
SIZE = 48


def _split(data, spec):
    x, m = imdata.load_arrays(data, spec)
    return Split(x, data.labels, m)


@pytest.fixture(scope="module")
def image_runs(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("images")
    everything = imdata.scan(write_set(out / "data", per_class=24, seed=0, free_extra=12))
    test_set = imdata.scan(write_set(out / "test", per_class=8, seed=1),
                           class_names=everything.class_names)
    tr, va = imdata.stratified_split(everything.labels, 0.2)
    spec = ImageSpec(kind="classifier", height=SIZE, width=SIZE, mean=0.47, std=0.1,
                     class_names=everything.class_names, ok_class="MT_Free")
    train, val = _split(everything.subset(tr), spec), _split(everything.subset(va), spec)
    test = _split(test_set, spec)
    runs, bundles = {}, {}
    for role, family, width in (("classifier", "small_cnn", 8), ("segmenter", "unet", 4)):
        config = ImageTrainConfig(name=f"syn_{role}", family=family, model={"width": width},
                                  epochs=12, patience=12, learning_rate=3e-3, batch_size=8,
                                  output_dir=out / "runs")
        runs[role] = train_image_model(config, spec, train, val, test, "synthetic")
        bundles[role] = build_bundle(runs[role], out / "bundles", "int8", budget=0.05)
    return {"runs": runs, "bundles": bundles, "test": test, "spec": spec, "out": out,
            "test_set": test_set}


def test_trained_models_learn_the_synthetic_defects(image_runs):
    cls = json.loads((image_runs["runs"]["classifier"] / "training.json").read_text())
    seg = json.loads((image_runs["runs"]["segmenter"] / "training.json").read_text())
    assert cls["task"] == "image_class" and cls["image"]["kind"] == "classifier"
    assert cls["metrics"]["keras"]["auroc"] >= 0.9
    assert cls["metrics"]["keras"]["accuracy"] >= 0.7
    assert seg["image"]["kind"] == "segmenter"
    assert seg["metrics"]["keras"]["iou"] >= 0.3


def test_unet_beats_constant_masks_at_inference(image_runs):
    """A U-Net that collapsed to all background (IoU 0), or predicts everything (IoU = the
    defect share), fails here: its inference-mode IoU on the synthetic defects must clear the
    best constant mask by a wide margin, in float and in the int8 bundle."""
    masks = image_runs["test"].masks
    constant = {name: segmentation_metrics(masks, np.full(masks.shape, v))["iou"]
                for name, v in (("background", 0.0), ("everything", 1.0))}
    seg = json.loads((image_runs["runs"]["segmenter"] / "training.json").read_text())
    edge = image_runs["bundles"]["segmenter"].manifest.metrics["edge"]
    for iou in (seg["metrics"]["keras"]["iou"], edge["iou"]):
        assert iou >= max(0.3, 3 * max(constant.values())), (iou, constant)


def test_int8_bundles_pass_the_image_parity_gate(image_runs):
    for role, bundle in image_runs["bundles"].items():
        m = bundle.manifest
        task = {"classifier": "image_class", "segmenter": "image_segment"}[role]
        assert (m.task, m.quantization, m.image.kind, m.input) == (task, "int8", role, None)
        assert m.metrics["edge"]["agreement"] >= 0.95
        assert Bundle.load(bundle.root).manifest == m  # hashes verify after the round trip


def test_gradcam_and_plots_are_written(image_runs, tmp_path):
    import keras

    model = keras.models.load_model(image_runs["runs"]["classifier"] / "model.keras")
    test, spec = image_runs["test"], image_runs["spec"]
    probs = model.predict(test.x, verbose=0)
    cams = explain.gradcam(model, test.x[:4], probs[:4].argmax(1))
    assert cams.shape == (4, SIZE, SIZE) and cams.max() <= 1 and cams.max() > 0
    paths = explain.save_gradcam_overlays(model, test.x, test.labels, probs, spec.class_names,
                                          tmp_path / "cam", sample=3)
    wrong = int((probs.argmax(1) != test.labels).sum())
    assert len(paths) >= max(3, wrong) and all(p.stat().st_size > 1000 for p in paths)
    assert len([p for p in paths if p.name.startswith("wrong_")]) == wrong
    cm = explain.save_confusion_matrix(test.labels, probs.argmax(1), spec.class_names,
                                       tmp_path / "cm.png", "test")
    assert cm.stat().st_size > 1000


def _jpeg(kind: str, seed: int, with_mask: bool = False):
    img, mask = defect_image(np.random.default_rng(seed), kind, 90, 110)
    out = io.BytesIO()
    Image.fromarray(img).save(out, format="JPEG", quality=92)
    return (out.getvalue(), mask > 0) if with_mask else out.getvalue()


def test_pipeline_verdicts_quantify_defects_and_alarm_on_nok_rate(image_runs):
    b = image_runs["bundles"]
    qc = ImagePipeline("cam", b["classifier"], b["segmenter"],
                       QcSettings(nok_window=3, nok_rate_limit=0.9, debug_mask=True))
    frame, truth = _jpeg("MT_Blob", 100, with_mask=True)
    outputs = qc.process(frame, 1.0)
    verdict = outputs[0].payload
    assert (verdict["status"], verdict["verdict"], verdict["class"]) == ("ok", "NOK", "MT_Blob")
    assert verdict["defect_area_px"] > 0 and verdict["regions"] >= 1
    x0, y0, x1, y1 = verdict["boxes"][0]  # the largest region lies on the true blob
    assert truth[y0 : y1 + 1, x0 : x1 + 1].any()
    assert abs(verdict["defect_area_pct"] - 100 * verdict["defect_area_px"] / (90 * 110)) < 0.01
    png = next(o for o in outputs if o.kind == "debug").payload["png"]
    assert Image.open(io.BytesIO(png)).size == (110, 90)
    sequence = [("MT_Free", "OK"), ("MT_Scratch", "NOK"), ("MT_Blob", "NOK"), ("MT_Blob", "NOK"),
                ("MT_Free", "OK"), ("MT_Free", "OK")]
    events = []
    for seed, (kind, expected) in enumerate(sequence, start=101):
        outputs = qc.process(_jpeg(kind, seed))
        assert outputs[0].payload["verdict"] == expected, kind
        events += [o.payload["event"] for o in outputs if o.kind == "alarm"]
    assert events == ["raise", "clear"]  # 3/3 NOK raises; 1/3 < 0.45 clears


def test_daemon_does_image_qc_over_mqtt_and_refuses_bad_frames(image_runs, broker, tmp_path):
    b = image_runs["bundles"]
    config = EdgeConfig(
        gateway="gwimg", mqtt=MqttConfig(host=broker.host, port=broker.port),
        cameras=[CameraConfig(name="press1", classifier=b["classifier"].root,
                              segmenter=b["segmenter"].root, debug_mask=True,
                              watch_dir=tmp_path / "drop", watch_interval_s=0.1)])
    daemon = EdgeDaemon(config)
    uns = config.topics.uns
    got: queue.Queue = queue.Queue()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="img-sub")
    sub.on_message = lambda c, u, m: got.put((m.topic, m.payload))
    sub.connect(broker.host, broker.port)
    sub.subscribe([(f"{uns}/inference/press1", 1), (f"{uns}/debug/press1/mask", 1)])
    sub.loop_start()
    daemon.start()
    try:
        assert daemon.subscribed.wait(10)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="img-pub")
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        camera = f"{uns}/camera/press1"
        pub.publish(camera, _jpeg("MT_Blob", 7), qos=1).wait_for_publish(5)
        pub.publish(camera, _jpeg("MT_Free", 8)[:300], qos=1).wait_for_publish(5)
        pub.publish(camera, bytes(50 * 1024 * 1024), qos=1).wait_for_publish(30)
        inference, debug = f"{uns}/inference/press1", f"{uns}/debug/press1/mask"
        seen = _collect(got, {inference: 3, debug: 1})
        records, mask = [json.loads(r) for r in seen[inference]], seen[debug][0]
        (tmp_path / "drop" / "frame1.jpg").write_bytes(_jpeg("MT_Free", 9))  # a dropped file
        dropped = json.loads(_collect(got, {inference: 1})[inference][0])
        pub.loop_stop()
        pub.disconnect()
    finally:
        daemon.stop()
        sub.loop_stop()
        sub.disconnect()
    verdict, corrupt, huge = records
    assert (verdict["verdict"], verdict["class"], verdict["camera"]) == ("NOK", "MT_Blob",
                                                                          "press1")
    assert verdict["defect_area_px"] > 0 and verdict["boxes"]
    assert (corrupt["status"], corrupt["reason"]) == ("rejected", "image_corrupt")
    assert (huge["status"], huge["reason"], huge["bytes"]) == ("rejected", "image_too_large",
                                                                50 * 1024 * 1024)
    assert Image.open(io.BytesIO(mask)).size == (110, 90)
    assert (dropped["status"], dropped["verdict"]) == ("ok", "OK")
    value = daemon.metrics.value
    assert value("procedge_messages_rejected_total", reason="image_corrupt") == 1
    assert value("procedge_messages_rejected_total", reason="image_too_large") == 1
    assert value("procedge_published_total", kind="inference") == 4


def _wait(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _collect(got: queue.Queue, wanted: dict[str, int], timeout_s: float = 30.0
             ) -> dict[str, list[bytes]]:
    """Payloads per topic, in arrival order, until each topic has its count."""
    seen: dict[str, list[bytes]] = {t: [] for t in wanted}
    deadline = time.monotonic() + timeout_s
    while any(len(seen[t]) < n for t, n in wanted.items()):
        topic, payload = got.get(timeout=max(deadline - time.monotonic(), 0.01))
        seen.setdefault(topic, []).append(payload)
    return seen


def test_unet_patch_training_saves_a_whole_frame_model(tmp_path):
    import keras

    data = imdata.scan(write_set(tmp_path / "data", per_class=6, seed=3))
    spec = ImageSpec(kind="segmenter", height=SIZE, width=SIZE, mean=0.47, std=0.1,
                     class_names=data.class_names, ok_class="MT_Free")
    split = _split(data, spec)
    batches = imdata.Batches(split.x, split.labels, split.masks, "masks", 8, 0.1, None, patch=32)
    xb, mb, _ = batches[0]
    assert xb.shape == (8, 32, 32, 1) and mb.shape == (8, 32, 32, 1)
    defective = split.masks.reshape(len(split.masks), -1).max(1) > 0
    order = batches.order[:8]
    assert (mb.reshape(8, -1).max(1) > 0).sum() >= defective[order].sum() // 2  # near defects
    config = ImageTrainConfig(name="patchy", family="unet", model={"width": 4}, epochs=1,
                              patch=32, output_dir=tmp_path / "runs")
    run_dir = train_image_model(config, spec, split, split)
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    assert model.input_shape == (None, SIZE, SIZE, 1)


def _cosine(minutes):
    import keras

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    schedule = _BudgetCosine(1e-3, epochs=4, minutes=minutes)
    schedule.set_model(model)
    schedule.set_params({"steps": 10})
    return schedule, model


def test_budget_cosine_anneals_over_the_epochs_or_an_explicit_time_limit():
    schedule, model = _cosine(minutes=60)
    rates = []
    for epoch in range(4):
        schedule.on_epoch_begin(epoch)
        for batch in range(10):
            schedule.on_train_batch_begin(batch)
            rates.append(float(model.optimizer.learning_rate))
    assert rates[0] == pytest.approx(1e-3)
    assert rates[20] == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))  # half of the epochs
    assert all(b <= a for a, b in zip(rates, rates[1:], strict=False)) and rates[-1] < 2e-5
    schedule.start -= 3600  # the time budget is spent before the epochs: the floor
    schedule.on_epoch_begin(0)
    schedule.on_train_batch_begin(0)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-5)


def test_image_defaults_budget_epochs_only_so_any_machine_trains_the_same_model():
    """Without an explicit limit, elapsed time changes nothing: a loaded machine runs the
    same epochs at the same learning rates as a quiet one."""
    from evaluation import images as evaluate

    assert evaluate.parse_args([]).max_minutes is None
    assert ImageTrainConfig(name="n", family="unet").max_minutes is None
    schedule, model = _cosine(minutes=None)
    schedule.start -= 10 * 3600  # ten hours on a slow machine
    schedule.on_epoch_begin(2)
    schedule.on_train_batch_begin(0)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))


def test_mask_supervised_bfloat16_classifier_saves_a_plain_float32_model(tmp_path):
    import keras

    data = imdata.scan(write_set(tmp_path / "data", per_class=4, seed=4))
    spec = ImageSpec(kind="classifier", height=SIZE, width=SIZE, mean=0.47, std=0.1,
                     class_names=data.class_names, ok_class="MT_Free")
    split = _split(data, spec)
    coarse = imdata.coarse_masks(split.masks, 16)
    assert coarse.shape == (len(split.masks), 3, 3, 1)
    assert (coarse.reshape(len(coarse), -1).max(1) == split.masks.reshape(
        len(coarse), -1).max(1)).all()  # a defect anywhere marks its cell
    config = ImageTrainConfig(name="guided", family="resnet", model={"width": 4}, epochs=1,
                              mask_weight=1.0, precision="mixed_bfloat16",
                              output_dir=tmp_path / "runs")
    run_dir = train_image_model(config, spec, split, split)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    assert [layer.name for layer in model.layers if layer.name == "mask_aux"] == []
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert model.output_shape == (None, len(data.class_names))
    probs = model.predict(split.x, verbose=0)
    assert probs.dtype == np.float32 and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_eval_images_command_reports_float_and_int8_rows(tmp_path):
    """``procedge eval images`` end to end on a tiny synthetic folder: both models trained
    (the U-Net on its own epoch budget), gated to int8, and the row shape the other eval
    commands write."""
    from evaluation import images as evaluate

    root = write_set(tmp_path / "data", per_class=10, seed=3, free_extra=6)
    out = tmp_path / "eval"
    result = evaluate.main(["--root", str(root), "--size", "32", "--epochs", "2",
                            "--segmenter-epochs", "1", "--latency-size", "0",
                            "--classifier", "small_cnn", "--classifier-width", "4",
                            "--segmenter-width", "4", "--segmenter-patch", "0",
                            "--precision", "float32", "--out", str(out),
                            "--json", str(out / "result.json")])
    written = json.loads((out / "result.json").read_text())
    check(written)  # the one result format of every benchmark
    assert set(written) == {"results", "settings"}
    assert [(r["model"], r["variant"], r["mode"]) for r in written["results"]] == [
        (r["model"], r["variant"], r["mode"]) for r in result["results"]]
    epochs = {role: json.loads((out / "runs" / f"tile_{role}" / "training.json").read_text())
              ["metrics"]["keras"]["epochs"] for role in ("classifier", "segmenter")}
    assert epochs == {"classifier": 2.0, "segmenter": 1.0}
    training = written["settings"]["training"]
    assert {role: (t["epochs"], t["epochs_budget"], t["truncated"])
            for role, t in training.items()} == {"classifier": (2, 2, False),
                                                 "segmenter": (1, 1, False)}
    rows = {f"{r['variant']}-{r['mode']}": r for r in result["results"]
            if r["model"] == "classifier+segmenter"}
    assert set(rows) == {"keras-float32", "edge-int8"}
    for metrics in rows.values():
        assert set(evaluate.METRIC_KEYS) <= set(metrics)
        for key in ("auroc", "balanced_accuracy", "accuracy_6class", "iou", "dice"):
            assert 0.0 <= metrics[key] <= 1.0, (key, metrics[key])
    assert rows["edge-int8"]["edge_ms_per_image"] > 0
    assert list((out / "bundles").glob("tile_classifier-int8*")) or list(
        (out / "bundles" / "ungated").glob("tile_classifier-int8*"))
