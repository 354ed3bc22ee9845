"""Child process that runs the TFLite converter for one model and mode.

Kept in its own process because the converter can crash (SIGSEGV on int8 recurrent loops)
or grow memory across conversions; the parent turns either into a clear error.
Usage: python -m converters.worker KERAS_PATH OUT_PATH MODE [REPRESENTATIVE_NPZ] [--int8-io]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def convert(keras_path: Path, out_path: Path, mode: str, rep_path: Path | None,
            int8_io: bool = False) -> None:
    import keras
    import tensorflow as tf

    model = keras.models.load_model(keras_path, compile=False)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    ops = tf.lite.OpsSet
    converter.target_spec.supported_ops = [ops.TFLITE_BUILTINS]  # never Flex, never custom
    if mode != "fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if mode in ("int8", "int16x8"):
        if rep_path is None:
            raise SystemExit(f"mode {mode} needs representative data")
        windows = np.load(rep_path)["x"].astype(np.float32)
        converter.representative_dataset = lambda: ([w[None]] for w in windows)
        converter.target_spec.supported_ops = (
            [ops.TFLITE_BUILTINS_INT8] if mode == "int8"
            else [ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        )
        if int8_io:
            io_type = tf.int8 if mode == "int8" else tf.int16
            converter.inference_input_type = io_type
            converter.inference_output_type = io_type
    out_path.write_bytes(converter.convert())


def main(argv: list[str]) -> None:
    args = [a for a in argv if not a.startswith("--")]
    keras_path, out_path, mode = Path(args[0]), Path(args[1]), args[2]
    rep = Path(args[3]) if len(args) > 3 else None
    convert(keras_path, out_path, mode, rep, int8_io="--int8-io" in argv)


if __name__ == "__main__":
    main(sys.argv[1:])
