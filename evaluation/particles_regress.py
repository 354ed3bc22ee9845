"""Route (b) of ``procedge eval particles``: a CNN that regresses the distribution's
D10/D50/D90 (log µm) straight from the preprocessed micrograph, no segmentation and no
count. Global average pooling makes it run at any frame size; it is judged on the same
held-apart images as the segmentation route, in Keras float32 and as int8 through LiteRT."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from training.images.particle_sizing import ParticleSet


def build(width: int = 16, input_shape=(None, None, 1)):
    """Four conv-BN-ReLU stages (the last without pooling), global average pooling, a small
    dense head: three outputs, log D10/D50/D90 standardised by the training targets."""
    import keras
    from keras import layers

    from training.images.models import conv_bn

    inputs = keras.Input(input_shape)
    x = inputs
    for b in range(3):
        x = layers.MaxPooling2D()(conv_bn(x, width * 2**b))
    x = conv_bn(x, width * 8)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(32, activation="relu")(x)
    return keras.Model(inputs, layers.Dense(3, name="log_d")(x), name="d_regressor")


def targets(data: ParticleSet) -> np.ndarray:
    return np.log(np.array([[m.stats[k] for k in ("d10_um", "d50_um", "d90_um")]
                            for m in data.images]))


def train_and_measure(train: ParticleSet, test: ParticleSet, epochs: int, out: Path,
                      width: int = 16) -> tuple[dict, dict, dict]:
    """Fit on ``train`` (flips and quarter turns), then D50 predictions of ``test`` by the
    Keras model and by its int8 LiteRT model (one thread): (keras D, int8 D, info)."""
    import keras

    from converters.tflite import convert
    from edge_runtime.interpreter import EdgeModel
    from training.keras_compile import compile_for_fit

    keras.utils.set_random_seed(0)
    y = targets(train)
    mean, std = y.mean(axis=0), y.std(axis=0) + 1e-6
    model = build(width)
    compile_for_fit(model, keras.optimizers.Adam(2e-3), "mse")
    xs = np.concatenate([np.rot90(train.x, k, axes=(1, 2)) for k in range(4)])
    ys = np.tile((y - mean) / std, (4, 1))
    start = time.monotonic()
    model.fit(xs, ys, batch_size=16, epochs=epochs, verbose=0, shuffle=True)
    fit_s = time.monotonic() - start
    shape = test.x.shape[1:]
    fixed = build(width, shape)
    fixed.set_weights(model.get_weights())
    keras_d = np.exp(fixed.predict(test.x, verbose=0) * std + mean)
    work = Path(tempfile.mkdtemp(dir=out))
    fixed.save(work / "regressor.keras")
    rep = _representative(train, shape, work)
    convert(work / "regressor.keras", work / "regressor_int8.tflite", "int8", rep)
    edge = EdgeModel(work / "regressor_int8.tflite", num_threads=1)
    ms, got = [], []
    for x in test.x:
        t = time.perf_counter()
        got.append(edge.predict(x[None])[0][0])
        ms.append(1000 * (time.perf_counter() - t))
    int8_d = np.exp(np.array(got) * std + mean)
    return keras_d, int8_d, {"fit_s": round(fit_s, 1), "epochs": epochs,
                             "model_ms_median": float(np.median(ms))}


def _representative(train: ParticleSet, shape: tuple, work: Path) -> Path:
    """int8 calibration frames of the test frame size: training frames tiled 2×2."""
    tiles = [np.block([[a, b], [c, d]]) for a, b, c, d in
             zip(train.x[0::4, ..., 0], train.x[1::4, ..., 0], train.x[2::4, ..., 0],
                 train.x[3::4, ..., 0], strict=False)]
    x = np.stack(tiles)[..., None][:, : shape[0], : shape[1]]
    path = work / "representative.npz"
    np.savez_compressed(path, x=x.astype(np.float32))
    return path
