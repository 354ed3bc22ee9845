"""Child process for tensorflow-model-optimization: quantization-aware training and pruning.

tfmot 0.8 only accepts tf-keras models and sets ``TF_USE_LEGACY_KERAS=1`` for the whole process,
so it lives in its own process on a tf-keras twin of the Keras 3 model (``converters.twin``).
Fine-tuning distils the float model: the targets are the float model's own outputs on the
run's calibration windows, so no labels (and no held-out data) are needed.

Only Dense and Conv layers are wrapped (``quantize_annotate_layer`` / ``prune_low_magnitude``
per layer); other layers run as they are. Recurrent layers are not supported by tfmot's QAT.

Usage: python -m converters.tfmot_worker KERAS_PATH REP_NPZ OUT_DIR (--qat | --prune S)
Writes OUT_DIR/int8.tflite (QAT) or OUT_DIR/pruned.keras (pruning; a Keras 3 model again)
and prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np  # noqa: E402

from converters.compact import compact  # noqa: E402

WRAPPABLE = ("Dense", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv1D",
             "SeparableConv2D", "Conv2DTranspose")
EPOCHS = 8


def _wrap(model, wrap_layer):
    """Clone ``model`` with Dense/Conv layers wrapped; the trained layers themselves are reused,
    so the wrappers start from the trained weights."""
    import tf_keras

    def clone(layer):
        if type(layer).__name__ in WRAPPABLE and layer.trainable:
            return wrap_layer(layer)
        return layer

    return tf_keras.models.clone_model(model, clone_function=clone)


def _annotate(layer):
    """QAT annotation; Conv1D has no default config in tfmot 0.8 (and the per-channel conv one
    assumes 2-D kernels): quantize its kernel per tensor."""
    import tensorflow_model_optimization as tfmot

    q = tfmot.quantization.keras
    if type(layer).__name__ in ("Conv1D", "SeparableConv1D"):
        from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
            default_8bit_quantize_registry as configs,
        )

        return q.quantize_annotate_layer(
            layer, configs.Default8BitQuantizeConfig(["kernel"], ["activation"], False))
    return q.quantize_annotate_layer(layer)


def _fit(model, x, y, callbacks=()):
    import tf_keras

    model.compile(optimizer=tf_keras.optimizers.Adam(1e-4), loss="mse")
    model.fit(x, y, epochs=EPOCHS, batch_size=32, verbose=0, callbacks=list(callbacks))


def qat(model3, windows: np.ndarray, out_dir: Path) -> dict:
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    from converters.twin import tf_keras_twin

    twin = tf_keras_twin(model3)
    teacher = twin.predict(windows, verbose=0)
    q = tfmot.quantization.keras
    with q.quantize_scope():
        model = q.quantize_apply(_wrap(twin, _annotate))
    start_diff = float(np.abs(model.predict(windows, verbose=0) - teacher).max())
    _fit(model, windows, teacher)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([w[None]] for w in windows)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.exclude_conversion_metadata = True
    path = out_dir / "int8.tflite"
    path.write_bytes(compact(converter.convert()))  # as converters.worker writes every mode
    wrapped = sum(type(layer).__name__ == "QuantizeWrapperV2" for layer in model.layers)
    return {"mode": "int8", "route": "qat", "wrapped_layers": int(wrapped), "epochs": EPOCHS,
            "fake_quant_start_max_abs_diff": start_diff,
            "recurrent": [], "failed_routes": []}


def prune(model3, windows: np.ndarray, out_dir: Path, sparsity: float) -> dict:
    import tensorflow_model_optimization as tfmot

    from converters.twin import tf_keras_twin

    twin = tf_keras_twin(model3)
    teacher = twin.predict(windows, verbose=0)
    steps = EPOCHS * int(np.ceil(len(windows) / 32))
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, sparsity, begin_step=0,
                                                    end_step=max(steps // 2, 1), frequency=1)
    model = _wrap(twin, lambda layer: tfmot.sparsity.keras.prune_low_magnitude(
        layer, pruning_schedule=schedule))
    if float(np.abs(model.predict(windows, verbose=0) - teacher).max()) > 1e-4:
        raise SystemExit("pruning wrapper lost the trained weights")
    _fit(model, windows, teacher, [tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(model)
    zeros = total = 0
    for layer in model3.layers:  # back into the Keras 3 model, layer by layer
        if layer.weights:
            weights = stripped.get_layer(layer.name).get_weights()
            layer.set_weights(weights)
            if type(layer).__name__ in WRAPPABLE and layer.trainable:
                zeros += int(np.sum(weights[0] == 0))
                total += weights[0].size
    path = out_dir / "pruned.keras"
    model3.save(path)
    return {"path": str(path), "target_sparsity": sparsity,
            "kernel_sparsity": zeros / total if total else 0.0, "epochs": EPOCHS}


def main(argv: list[str]) -> None:
    import keras

    keras_path, rep, out_dir = Path(argv[0]), Path(argv[1]), Path(argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    windows = np.load(rep)["x"].astype(np.float32)
    model3 = keras.models.load_model(keras_path, compile=False, safe_mode=False)
    if "--qat" in argv:
        info = qat(model3, windows, out_dir)
    else:
        info = prune(model3, windows, out_dir, float(argv[argv.index("--prune") + 1]))
    print(json.dumps(info), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
