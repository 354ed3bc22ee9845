"""Transfer learning (family ``transfer``): a backbone's weights come from a local file and
nothing else (a file of another network is refused, naming it), stage 1 leaves the backbone
(BatchNorm statistics included) untouched, stage 2 changes only the top layers, and a run
with both stages converts to int8 through the parity gate."""

from __future__ import annotations

import numpy as np
import pytest

from training.images.backbone_config import check_transfer_model

SHAPE = (32, 32, 1)
V2 = {"name": "mobilenet_v2", "alpha": 0.35}


def test_config_errors_name_the_field_before_keras(tmp_path):
    with pytest.raises(ValueError, match=r"model\.backbone\.weights: .*nope\.weights\.h5"):
        check_transfer_model("transfer", {"backbone": {**V2, "weights": tmp_path
                                                       / "nope.weights.h5"}}, {})
    with pytest.raises(ValueError, match=r"model\.backbone\.name"):
        check_transfer_model("transfer", {"backbone": {"name": "vgg99"}}, {})
    with pytest.raises(ValueError, match=r"model\.backbone: required"):
        check_transfer_model("transfer", {}, {})
    with pytest.raises(ValueError, match=r"image\.trainer\.fine_tune: needs model\.backbone"):
        check_transfer_model("transfer", {"backbone": V2}, {"fine_tune": {"layers": 3,
                                                                          "epochs": 1}})
    with pytest.raises(ValueError, match=r"image\.trainer\.fine_tune\.layers"):
        weights = tmp_path / "b.weights.h5"
        weights.write_bytes(b"")
        check_transfer_model("transfer", {"backbone": {**V2, "weights": weights}},
                             {"fine_tune": {"layers": 0, "epochs": 1}})


@pytest.fixture(scope="module")
def own_backbone(tmp_path_factory):
    """A MobileNetV2 (alpha 0.35) backbone with non-trivial weights and BN statistics,
    saved as procedge saves one."""
    import keras

    from training.images.backbone_config import BackboneConfig
    from training.images.backbones import build_backbone, save_backbone

    keras.utils.set_random_seed(0)
    net = build_backbone(BackboneConfig(**V2), SHAPE[:2])
    rng = np.random.default_rng(0)
    net.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) if w.ndim == 1
                     else w for w in net.get_weights()])  # BN stats/biases off their init
    return net, save_backbone(net, tmp_path_factory.mktemp("bb") / "v2.weights.h5")


def _transfer(weights, **backbone):
    from training.registry import get_family

    return get_family("transfer").build(SHAPE, 3, backbone={**V2, **backbone,
                                                            "weights": weights})


def test_saved_backbone_loads_to_identical_features(own_backbone):
    net, path = own_backbone
    model = _transfer(path)
    x = np.random.default_rng(1).normal(size=(4, *SHAPE[:2], 3)).astype(np.float32)
    loaded = model.get_layer("backbone")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), net.predict(x, verbose=0))
    assert not loaded.trainable


def test_weights_of_another_backbone_are_refused_naming_the_file(own_backbone):
    _, path = own_backbone
    for other in ({"alpha": 0.5}, {"name": "mobilenet_v3_small", "alpha": 1.0}):
        with pytest.raises(ValueError, match=rf"model\.backbone\.weights: {path} does not "
                                             rf"match backbone"):
            _transfer(path, **other)


@pytest.mark.parametrize("name, params", [("efficientnet_b0", 4_049_571),
                                          ("resnet50", 23_587_712)])
def test_larger_backbones_build_without_weights_and_refuse_a_foreign_file(own_backbone, name,
                                                                         params):
    """EfficientNetB0 and ResNet50 at a small input, ``weights=None`` (nothing fetched): the
    no-top network of keras.applications under the head; a MobileNetV2 file is refused,
    naming the field and the file."""
    from training.registry import get_family

    build = get_family("transfer").build
    model = build(SHAPE, 3, backbone={"name": name})
    backbone = model.get_layer("backbone")
    assert backbone.count_params() == params and backbone.trainable
    assert model.output_shape == (None, 3)
    path = own_backbone[1]
    with pytest.raises(ValueError, match=rf"model\.backbone\.weights: {path} does not match "
                                         rf"backbone {name}"):
        build(SHAPE, 3, backbone={"name": name, "weights": path})


def _fit_steps(model, lr: float = 1e-2, steps: int = 3):
    import keras

    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, *SHAPE)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  run_eagerly=True)  # a few steps: tracing the graph would cost more
    model.fit(x, y, batch_size=8, epochs=steps // 2 + 1, verbose=0)


def _by_layer(backbone) -> dict[str, list[np.ndarray]]:
    return {layer.name: [w.copy() for w in layer.get_weights()] for layer in backbone.layers
            if layer.weights}


def _changed(a, b) -> set[str]:
    return {k for k in a if any(not np.array_equal(x, y) for x, y in zip(a[k], b[k],
                                                                         strict=True))}


def test_stage1_freezes_backbone_and_bn_stats_stage2_only_the_top(own_backbone):
    from keras import layers

    from training.images.backbones import unfreeze_top

    model = _transfer(own_backbone[1])
    backbone = model.get_layer("backbone")
    head_before = model.get_layer("logits").get_weights()[0].copy()
    start = _by_layer(backbone)
    _fit_steps(model)
    assert _changed(start, _by_layer(backbone)) == set()  # BN moving stats included
    assert not np.array_equal(head_before, model.get_layer("logits").get_weights()[0])

    opened = unfreeze_top(model, 12)
    top = {layer.name for layer in backbone.layers[-12:] if layer.weights}
    bn = {layer.name for layer in backbone.layers
          if isinstance(layer, layers.BatchNormalization)}
    assert opened and set(opened) == top - bn
    after1 = _by_layer(backbone)
    _fit_steps(model, lr=1e-3)
    changed = _changed(after1, _by_layer(backbone))
    assert changed and changed <= set(opened), changed - set(opened)


@pytest.mark.slow
def test_two_stage_run_converts_through_the_parity_gate(own_backbone, tmp_path):
    """Both stages through the image trainer on a tiny synthetic set, then int8 + parity."""
    import json

    from converters.build import build_bundle
    from edge_runtime.bundle import ImageSpec
    from training.images import data as imdata
    from training.images.synthetic import write_set
    from training.images.train import ImageTrainConfig, Split, train_image_model

    data = imdata.scan(write_set(tmp_path / "data", per_class=4, seed=0))
    spec = ImageSpec(kind="classifier", height=SHAPE[0], width=SHAPE[1], mean=0.47, std=0.1,
                     class_names=data.class_names, ok_class="MT_Free")
    x, m = imdata.load_arrays(data, spec)
    split = Split(x, data.labels, m)
    config = ImageTrainConfig(
        name="tl", family="transfer", epochs=1, batch_size=8, augment=False,
        model={"backbone": {**V2, "weights": str(own_backbone[1])}},
        fine_tune={"layers": 10, "epochs": 1, "learning_rate": 1e-4},
        output_dir=tmp_path / "runs")
    run = train_image_model(config, spec, split, split, split, "synthetic")
    record = json.loads((run / "training.json").read_text())
    assert record["family"] == "transfer" and record["training"]["epochs"] == 2
    assert record["training"]["epochs_budget"] == 2
    bundle = build_bundle(run, tmp_path / "bundles", "int8", budget=0.05)
    assert bundle.manifest.metrics["edge"]["agreement"] >= 0.9


def test_quarter_turns_label_each_rotation():
    from training.images.pretrain import quarter_turns

    x = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 1)
    turned, k = quarter_turns(x)
    assert turned.shape == (8, 3, 3, 1) and k.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    np.testing.assert_array_equal(turned[3, ..., 0], np.rot90(x[1, ..., 0]))


@pytest.mark.slow
def test_pretrain_skips_the_validation_split_and_writes_loadable_weights(tmp_path):
    import json

    from training.images import data as imdata
    from training.images.backbone_config import PretrainConfig
    from training.images.pretrain import pretrain
    from training.images.synthetic import write_set

    root = write_set(tmp_path / "data", per_class=3, seed=0)
    config = PretrainConfig(name="t", backbone=V2, source={"root": root, "split_seed": 4},
                            size=SHAPE[0], epochs=1, batch_size=16,
                            out=tmp_path / "bb.weights.h5")
    path = pretrain(config)
    record = json.loads(path.with_name("bb.weights.h5.json").read_text())
    train_idx, _ = imdata.stratified_split(imdata.scan(root).labels, 0.2, 4)
    assert record["images"] + record["check_images"] == len(train_idx)
    assert record["pretext"].startswith("rotation")
    model = _transfer(path)  # the transfer family loads what pretrain wrote
    assert not model.get_layer("backbone").trainable


def test_pretrain_config_error_names_the_field(tmp_path, capsys):
    from procedge.cli import main

    config = tmp_path / "pre.yaml"
    config.write_text("name: p\nbackbone: {name: mobilenet_v2}\nsource: {root: .}\n"
                      "out: backbone.h5\n")
    with pytest.raises(SystemExit) as exit_:
        main(["pretrain", str(config)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and str(config) in err and "out" in err, err
    assert ".weights.h5" in err and "Traceback" not in err


def test_train_refuses_a_missing_weights_file_naming_config_and_field(tmp_path, capsys):
    import yaml

    from procedge.cli import main

    config = tmp_path / "tl.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tl", "task": "image_class", "family": "transfer",
        "model": {"backbone": {**V2, "weights": str(tmp_path / "absent.weights.h5")}},
        "image": {"root": str(tmp_path), "trainer": {"fine_tune": {"layers": 5, "epochs": 1}}}}))
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(config)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and str(config) in err, err
    assert "model.backbone.weights" in err and "absent.weights.h5" in err, err
    assert not (tmp_path / "artifacts").exists()


def test_imagenet_style_h5_loads_at_another_size_and_a_mismatch_is_refused(tmp_path):
    """The no-top ImageNet files keras.applications downloads are legacy HDF5 weights
    (matched by layer order): one written the same way from a 48-px network loads into a
    32-px backbone exactly; another width is refused naming the file."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    source = keras.applications.MobileNetV2(input_shape=(48, 48, 3), alpha=0.35,
                                            include_top=False, weights=None)
    path = tmp_path / "mobilenet_v2_0.35_no_top.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    loaded = _transfer(path).get_layer("backbone")
    assert all(np.array_equal(a, b) for a, b in zip(source.get_weights(),
                                                    loaded.get_weights(), strict=True))
    with pytest.raises(ValueError, match=rf"model\.backbone\.weights: {path} does not match"):
        _transfer(path, alpha=0.5)
