"""Image QC pieces that need no training: decoding limits, resizing, regions, manifests."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edge_runtime.bundle import ImageSpec, Manifest
from edge_runtime.imaging import (
    ImageError,
    ImageLimits,
    connected_regions,
    decode_image,
    mask_to_frame,
    to_input,
)


def _jpeg(width=120, height=80, value=128) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((height, width), value, np.uint8)).save(out, format="JPEG")
    return out.getvalue()


def test_decode_accepts_jpeg_and_png_as_grey():
    img = decode_image(_jpeg())
    assert (img.mode, img.size) == ("L", (120, 80))
    png = io.BytesIO()
    Image.new("RGB", (30, 20), (10, 200, 30)).save(png, format="PNG")
    assert decode_image(png.getvalue()).mode == "L"


@pytest.mark.parametrize(("payload", "reason"), [
    (b"", "image_empty"),
    (b"\xff\xd8\xff\xe0 not really a jpeg", "image_corrupt"),
    (_jpeg()[:200], "image_corrupt"),  # truncated: fails at full decode, not later
    (b"GIF89a" + bytes(100), "image_corrupt"),
])
def test_decode_rejects_bad_payloads_with_a_reason(payload, reason):
    with pytest.raises(ImageError) as err:
        decode_image(payload)
    assert err.value.reason == reason


def test_decode_rejects_too_many_bytes_and_pixels_before_decoding():
    with pytest.raises(ImageError, match="image_too_large"):
        decode_image(_jpeg(), limits=ImageLimits(max_bytes=100))
    with pytest.raises(ImageError, match="image_too_large"):
        decode_image(_jpeg(400, 300), limits=ImageLimits(max_pixels=100_000))
    gif = io.BytesIO()
    Image.new("L", (10, 10)).save(gif, format="GIF")
    with pytest.raises(ImageError, match="image_format"):
        decode_image(gif.getvalue())


def test_to_input_stretch_and_pad_normalise_and_mask_maps_back():
    img = Image.fromarray(np.full((50, 100), 255, np.uint8))
    spec = ImageSpec(kind="segmenter", height=32, width=32, mean=0.5, std=0.25)
    x = to_input(img, spec)
    assert x.shape == (32, 32, 1) and np.allclose(x, 2.0)
    padded = to_input(img, spec.model_copy(update={"resize": "pad"}))
    assert np.allclose(padded[:8], 0.0, atol=0.01)  # mean-grey band
    assert np.allclose(padded[8:24], 2.0)
    mask = np.zeros((32, 32), bool)
    mask[8:24, :16] = True  # left half of the letterboxed frame
    back = mask_to_frame(mask, 100, 50, spec.model_copy(update={"resize": "pad"}))
    assert back.shape == (50, 100) and back[:, :50].all() and not back[:, 50:].any()


def test_connected_regions_match_scipy_with_8_connectivity():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    for _ in range(50):
        mask = rng.random((37, 53)) < rng.uniform(0.05, 0.6)
        regions = connected_regions(mask)
        labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
        assert len(regions) == n
        assert [g.area for g in regions] == sorted(np.bincount(labels.ravel())[1:], reverse=True)
        for g in regions[:3]:
            x0, y0, x1, y1 = g.box
            assert mask[y0 : y1 + 1, x0 : x1 + 1].sum() >= g.area


def test_regions_boxes_on_a_known_mask():
    mask = np.zeros((10, 12), bool)
    mask[1:3, 1:4] = True  # 6 px
    mask[5:9, 8:11] = True  # 12 px
    mask[9, 11] = True  # diagonal neighbour of the second: same region
    regions = connected_regions(mask)
    assert [(g.area, g.box) for g in regions] == [(13, (8, 5, 11, 9)), (6, (1, 1, 3, 2))]
    assert connected_regions(np.zeros((4, 4), bool)) == []


def _manifest(**kw):
    base = {"name": "m", "version": "1", "family": "f", "quantization": "int8",
            "training_data_sha256": "x"}
    return Manifest(**(base | kw))


def test_manifest_image_task_needs_image_and_time_series_still_need_input():
    spec = ImageSpec(kind="classifier", height=8, width=8, class_names=["a", "b"], ok_class="a")
    assert _manifest(task="image", image=spec).input is None
    with pytest.raises(ValueError, match="needs an 'image' section"):
        _manifest(task="image")
    with pytest.raises(ValueError, match="needs 'input' and 'scaler'"):
        _manifest(task="forecast")


def test_folder_watcher_takes_finished_files_once_and_caps_reads(tmp_path):
    from edge_runtime.imaging import FolderWatcher

    watcher = FolderWatcher(tmp_path, max_bytes=1000)
    (tmp_path / "a.jpg").write_bytes(_jpeg())
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "big.png").write_bytes(bytes(5000))
    assert watcher.poll() == []  # first sight: maybe still being written
    ready = dict((p.name, data) for p, data in watcher.poll())
    assert set(ready) == {"a.jpg", "big.png"}
    assert len(ready["big.png"]) == 1001  # enough to be rejected as too large, no more
    assert (tmp_path / "done" / "a.jpg").is_file() and not (tmp_path / "a.jpg").exists()
    assert watcher.poll() == [] and (tmp_path / "notes.txt").exists()


def test_mask_nok_score_is_the_largest_pixel_probability():
    """One confident pixel makes a part NOK; a faint area over the whole frame does not (a
    mean or area score would rank the faint defect-free frame above the one-pixel defect)."""
    from training.images.metrics import mask_nok_metrics

    probs = np.zeros((4, 8, 8, 1), np.float32)
    probs[0, 3, 3] = 0.9  # defect: one confident pixel
    probs[1] = 0.4  # defect: faint everywhere
    probs[2] = 0.3  # defect-free: fainter everywhere
    labels = np.array([1, 2, 0, 0])  # class 0 is the OK class
    m = mask_nok_metrics(labels, probs, ok_index=0)
    assert m["auroc"] == 1.0
    assert m["balanced_accuracy"] == 0.75  # NOK at >= 0.5: 1 of 2 defects, both OK parts
    assert np.isnan(mask_nok_metrics(labels[:2], probs[:2], ok_index=0)["auroc"])


@pytest.mark.slow
def test_nok_rate_alarm_goes_through_the_isa_alarm_and_takes_an_ack(tmp_path, broker):
    """The camera's NOK-rate alarm is an ISA-18.2 :class:`Alarm` like the anomaly alarms:
    raise event, retained state, and an operator ack over the command topic. A real (1-epoch)
    classifier in a real int8 bundle; ``nok_threshold`` 0.01 makes every part NOK."""
    from converters.build import build_bundle
    from edge_runtime.config import EdgeConfig
    from edge_runtime.daemon import EdgeDaemon
    from tests.daemon_support import Collector, commander, send, wait_for
    from training.images import data as imdata
    from training.images.synthetic import write_set
    from training.images.train import ImageTrainConfig, Split, train_image_model

    data = imdata.scan(write_set(tmp_path / "data", per_class=4))
    spec = ImageSpec(kind="classifier", height=24, width=24, mean=0.47, std=0.1,
                     class_names=data.class_names, ok_class="MT_Free")
    x, m = imdata.load_arrays(data, spec)
    split = Split(x, data.labels, m)
    run_dir = train_image_model(ImageTrainConfig(
        name="nok_cls", family="small_cnn", model={"width": 2, "blocks": 2}, epochs=1,
        output_dir=tmp_path / "runs"), spec, split, split)
    bundle = build_bundle(run_dir, tmp_path / "bundles", "int8", budget=1.0)
    config = EdgeConfig.model_validate({
        "gateway": "gwtest", "mqtt": {"host": broker.host, "port": broker.port},
        "outbox": {"path": str(tmp_path / "outbox.db")},
        "commands": {"allowed": ["operator1"]},
        "cameras": [{"name": "press2", "classifier": str(bundle.root), "nok_window": 2,
                     "nok_rate_limit": 0.5, "nok_threshold": 0.01}]})
    uns, aid = config.topics.uns, "press2.nok_rate"
    watch = Collector(broker.port, [f"{uns}/#", "edge/gwtest/#"], client_id="nok-watch")
    daemon = EdgeDaemon(config)
    daemon.start()
    console = commander(broker.port)
    try:
        assert daemon.subscribed.wait(10)  # not just connected: inputs flow
        for _ in range(2):
            console.publish(f"{uns}/camera/press2", _jpeg(value=90), qos=1).wait_for_publish(5)
        state_topic = f"{uns}/alarm/press2/{aid}/state"
        assert wait_for(lambda: watch.json(state_topic), 20), "no retained alarm state"
        verdicts = watch.json(f"{uns}/inference/press2")
        assert [v["verdict"] for v in verdicts] == ["NOK", "NOK"]
        raised = [e for e in watch.json(f"{uns}/alarm/press2/{aid}") if "event" in e]
        assert raised[0]["event"] == "raise" and raised[0]["nok_rate"] == 1.0
        assert raised[0]["event_id"].startswith(f"{aid}@")  # an ISA-18.2 event, not a raw one
        assert watch.json(state_topic)[-1]["state"] == "active_unacknowledged"
        send(console, "alarm/ack", {"alarm_id": aid, "by": "operator1", "request_id": "n1"})
        assert wait_for(lambda: any(r.get("request_id") == "n1" and r["accepted"]
                                    for r in watch.json("edge/gwtest/reply")), 10)
        assert wait_for(lambda: watch.json(state_topic)[-1]["state"] == "active_acknowledged",
                        10)
    finally:
        console.loop_stop()
        console.disconnect()
        watch.close()
        daemon.stop()
