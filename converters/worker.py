"""Child process that runs the TFLite converter for one model and one or more modes.

Kept in its own process because the converter can crash (SIGSEGV on int8 recurrent loops)
or grow memory across conversions; the parent turns either into a clear error.

Recurrent models never reach the converter as they are (a Keras 3 LSTM/GRU with a dynamic
batch fails, with batch 1 its int8 crashes): the worker converts a twin instead, per layer type:

* LSTM only (also inside Bidirectional): a tf-keras twin with batch 1 → the fused
  ``UNIDIRECTIONAL_SEQUENCE_LSTM`` kernel, full int8, smallest file. The edge runs it one window
  at a time and resets its state before each invoke (``EdgeModel``). 16x8 has no fused kernel.
* GRU / SimpleRNN (no fused kernel), or when the fused route fails: a Keras 3 clone with
  ``unroll=True`` — every mode, dynamic batch, size grows with the window length.

Non-recurrent models (the ``keras`` route) are converted with a fixed batch of one by default
(``--batch one``): wrapped in a batch-1 ``keras.Input``, the converter folds the shape ops that
a dynamic batch needs (SHAPE → STRIDED_SLICE → PACK/CONCATENATION before each RESHAPE) into
constants. ``EdgeModel`` runs such a model one window per invoke (the daemon does that anyway);
``--batch dynamic`` keeps the batch dimension free. Recurrent routes are unchanged.

Every file is written through ``converters.compact`` (names, signature, empty tables and
duplicates dropped; same graph, bit-identical outputs). An int8 model with convolutions is
converted twice, per channel and per tensor, and the per-tensor one (one scale per filter
instead of one per output channel, for the filter and again for the bias) is kept when it is as
close to Keras on the calibration windows (``PER_TENSOR_SLACK``).

Usage: python -m converters.worker KERAS_PATH OUT_DIR MODE[,MODE...] [REPRESENTATIVE_NPZ]
       [--int8-io] [--route auto|keras|fused|unroll] [--batch one|dynamic]
Writes OUT_DIR/<mode>.tflite and prints one JSON line per mode as soon as it is done.
``python -m converters.worker --serve`` reads such argument lists as JSON lines from stdin
and ends each one's output with a ``{"done": true}`` line.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import sys
import tempfile
import weakref
from pathlib import Path

import numpy as np

from converters.compact import compact
from edge_runtime.contract import CALIBRATED_MODES

ROUTES = ("auto", "keras", "fused", "unroll")
SERVE = "--serve"  # run conversions from stdin until it closes (see serve)
DONE = '{"done": true}'  # the line that ends one conversion's output in serve mode
BATCHES = ("one", "dynamic")  # of the keras route (see fixed_batch)
DEFAULT_BATCH = "one"
TWIN_TOLERANCE = 1e-4
# A route whose converted model is off by more than this (mean |edge - keras| / mean |keras| on
# calibration windows) hands over to the next route: e.g. a fused Bidirectional LSTM in int8.
ROUTE_REL_ERROR = 0.1
# Per-tensor int8 convolutions are kept when their relative error on the calibration windows is
# at most this much above the per-channel model's (10 % of it).
PER_TENSOR_SLACK = 0.1


def routes_for(kinds: set[str]) -> list[str]:
    """Routes to try, best first, for a model holding recurrent layers ``kinds``."""
    if not kinds:
        return ["keras"]
    if kinds == {"LSTM"}:
        return ["fused", "unroll"]
    return ["unroll"]


def conversion_model(model, route: str, batch: str = DEFAULT_BATCH):
    """The model the converter sees on ``route`` (the original, with a fixed batch of one if
    ``batch`` says so, or a checked twin)."""
    from converters import twin

    if route == "keras":
        return fixed_batch(model) if batch == "one" else model, 0.0
    made = twin.tf_keras_twin(model, batch_size=1) if route == "fused" else (
        twin.unrolled_clone(model))
    diff = twin.max_abs_diff(model, made, tuple(model.inputs[0].shape[1:]))
    if not diff <= TWIN_TOLERANCE:
        raise ValueError(f"{route} twin differs from the model by {diff:.2e}")
    return made, diff


def fixed_batch(model):
    """``model`` behind batch-1 inputs, sharing its layers and weights. With a known batch the
    converter folds the dynamic-batch shape ops into constants (conv_ae/tep int8: 35 → 21
    operators); measured in ``bench/bench_convert.py --batch one,dynamic``."""
    import keras

    inputs = [keras.Input(batch_shape=(1, *t.shape[1:]), dtype=t.dtype) for t in model.inputs]
    outputs = model(inputs[0] if len(inputs) == 1 else inputs)
    return keras.Model(inputs, outputs)


def settings_fp32(converter, tf, windows, int8_io: bool, per_channel: bool) -> None:
    """The Keras model as is."""


def settings_dynamic(converter, tf, windows, int8_io: bool, per_channel: bool) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]


def settings_fp16(converter, tf, windows, int8_io: bool, per_channel: bool) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def settings_int8(converter, tf, windows, int8_io: bool, per_channel: bool) -> None:
    _calibrate(converter, tf, windows, "int8")
    # Per-channel FULLY_CONNECTED stores a float scale and an int64 zero point per output
    # unit, for the weights and again for the bias: 24 B per unit, as much as the weights
    # themselves for a wide head (see converters/footprint.py). Dense layers go per-tensor
    # (TFLite's classic int8 scheme; QAT does the same); convolutions only when measured as
    # close (``int8_granularity``): BatchNorm folding, e.g., gives channels very different
    # ranges.
    converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    converter._experimental_disable_per_channel = not per_channel
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        converter.inference_input_type = converter.inference_output_type = tf.int8


def settings_int16x8(converter, tf, windows, int8_io: bool, per_channel: bool) -> None:
    _calibrate(converter, tf, windows, "int16x8")
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    if int8_io:
        converter.inference_input_type = converter.inference_output_type = tf.int16


def _calibrate(converter, tf, windows, mode: str) -> None:
    if windows is None:
        raise ValueError(f"mode {mode} needs representative data")
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([w[None]] for w in windows)


def mode_settings(mode: str):
    """The converter settings of a mode of ``edge_runtime.contract.QUANT_MODES``: the function
    ``settings_<mode>`` of this module (a new mode is its row there plus that function here)."""
    settings = globals().get(f"settings_{mode}")
    if settings is None:
        raise ValueError(f"quantization mode {mode!r} has no converter settings "
                         f"(settings_{mode} in converters/worker.py)")
    return settings


def to_tflite(model, mode: str, windows: np.ndarray | None, int8_io: bool = False,
              per_channel: bool = True) -> bytes:
    """Run TFLiteConverter on a (Keras 3 or tf-keras) model: builtin ops only, never Flex.
    ``per_channel=False`` quantizes int8 convolutions per tensor too."""
    import tensorflow as tf

    export = saved_model(model)
    converter = (tf.lite.TFLiteConverter.from_keras_model(model) if export is None else
                 tf.lite.TFLiteConverter.from_saved_model(str(export)))
    converter.exclude_conversion_metadata = True  # TF version and options: not for the edge
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # never Flex/custom
    mode_settings(mode)(converter, tf, windows, int8_io, per_channel)
    return converter.convert()


_EXPORTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_MADE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def saved_model(model) -> Path | None:
    """``model`` exported once per process as the SavedModel ``from_keras_model`` would write
    (the same export, done once): tracing every layer for the export is most of a conversion's
    time (a Bidirectional LSTM twin: ~18 of ~20 s), and each mode, the per-tensor int8 twin and
    the while-loop check convert the same model again. None for a subclassed Keras 3 model
    (no symbolic inputs): the converter exports that one itself."""
    import keras

    if isinstance(model, keras.Model) and not isinstance(
            model, keras.src.models.Functional | keras.Sequential):
        return None
    if model not in _EXPORTS:
        path = Path(tempfile.mkdtemp(prefix="procedge-export-"))
        weakref.finalize(model, shutil.rmtree, path, True)  # gone with the model
        _export(model, path)
        _EXPORTS[model] = path
    return _EXPORTS[model]


def _export(model, path: Path) -> None:
    """What TFLiteKerasModelConverterV2 exports, minus what conversion never reads.

    Keras 3: its ExportArchive, a ``serve`` endpoint (also ``serving_default``) calling the
    model with ``training=False``. tf-keras (the fused-LSTM and tfmot twins): one
    ``serving_default`` function with the model's output names as keys, and its variables;
    ``tf.saved_model.save`` of the model itself would also trace and save every layer's call
    functions, which conversion never reads and the converter would load back again."""
    import keras
    import tensorflow as tf

    specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name.split(":")[0]) for t in model.inputs]
    if isinstance(model, keras.Model):
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", functools.partial(model.__call__, training=False),
                             [specs] if len(specs) > 1 else specs)
        archive.write_out(str(path), verbose=False)
        return

    @tf.function(input_signature=specs)
    def serve(*inputs):
        outputs = model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
        flat = tf.nest.flatten(outputs)
        return dict(zip(model.output_names, flat, strict=True))

    module = tf.Module()
    module.variables_ = list(model.variables)  # what ``serve`` captures, saved with it
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})


def cached_conversion_model(model, route: str, batch: str = DEFAULT_BATCH):
    """:func:`conversion_model` built once per model, route and batch, so that every mode
    converts the same twin (and its SavedModel export is reused)."""
    made = _MADE.setdefault(model, {})
    if (route, batch) not in made:
        made[(route, batch)] = conversion_model(model, route, batch)
    return made[(route, batch)]


def convert_one(model, kinds: set[str], out_path: Path, mode: str, windows, int8_io: bool,
                route: str, batch: str = DEFAULT_BATCH) -> dict:
    """Convert on the first route that works and stays close to the model; the result names
    it and why earlier routes were passed over."""
    tried: list[str] = []
    routes = routes_for(kinds) if route == "auto" else [route]
    fallback = None
    for candidate in routes:
        try:
            made, diff = cached_conversion_model(model, candidate, batch)
            if candidate == "fused" and mode in CALIBRATED_MODES:
                _refuse_while_loop(made)
            data = to_tflite(made, mode, windows, int8_io)
            granularity = {}
            if mode == "int8":
                data, granularity = int8_granularity(model, made, data, windows, int8_io)
        except Exception as exc:  # a route that fails hands over to the next one
            tried.append(f"{candidate}: {explain(exc)}")
            continue
        info = {"mode": mode, "route": candidate, "recurrent": sorted(kinds),
                "twin_max_abs_diff": diff, "failed_routes": list(tried)} | granularity
        rel = _relative_error(model, data, windows) if len(routes) > 1 else None
        info["route_rel_error"] = rel
        if rel is None or rel <= ROUTE_REL_ERROR:
            out_path.write_bytes(compact(data))
            return info
        tried.append(f"{candidate}: relative error {rel:.3f} > {ROUTE_REL_ERROR}")
        if fallback is None or rel < fallback[0]["route_rel_error"]:
            fallback = (info, data)
    if fallback is not None:  # every route is off: ship the closest, the parity gate decides
        out_path.write_bytes(compact(fallback[1]))
        return fallback[0] | {"failed_routes": tried}
    return {"mode": mode, "error": "; ".join(tried)}


def int8_granularity(model, made, data: bytes, windows, int8_io: bool) -> tuple[bytes, dict]:
    """Per-channel int8 ``data`` or its per-tensor twin, whichever is smaller while as close
    to ``model`` (relative error on the calibration windows, within ``PER_TENSOR_SLACK``)."""
    if not _per_channel_tensors(data):
        return data, {}
    try:
        per_tensor = to_tflite(made, "int8", windows, int8_io, per_channel=False)
    except Exception as exc:  # the per-channel model stands on its own
        return data, {"int8_granularity": "per-channel", "per_tensor_error": explain(exc)}
    errors = {"per_channel": _relative_error(model, data, windows),
              "per_tensor": _relative_error(model, per_tensor, windows)}
    keep = errors["per_tensor"] <= errors["per_channel"] * (1 + PER_TENSOR_SLACK)
    return (per_tensor if keep else data), {
        "int8_granularity": "per-tensor" if keep else "per-channel", "int8_rel_error": errors}


def _per_channel_tensors(data: bytes) -> list[str]:
    from converters.footprint import footprint

    with tempfile.NamedTemporaryFile(suffix=".tflite") as tmp:
        tmp.write(data)
        tmp.flush()
        return footprint(tmp.name).per_channel


def _refuse_while_loop(made) -> None:
    """A fused twin may keep a WHILE loop (e.g. a decoder LSTM fed an initial state); int8
    calibration of a loop crashes the converter (SIGSEGV), so check in float first."""
    from converters.ops import model_ops

    with tempfile.NamedTemporaryFile(suffix=".tflite") as tmp:
        tmp.write(to_tflite(made, "fp32", None))
        tmp.flush()
        if "WHILE" in model_ops(tmp.name):
            raise ValueError("the fused twin keeps a WHILE loop; quantizing it would crash")


def _relative_error(model, data: bytes, windows) -> float | None:
    """mean |LiteRT - Keras| / mean |Keras| on up to 32 calibration windows."""
    from edge_runtime.interpreter import EdgeModel

    if windows is None:
        return None
    x = windows[:32]
    out = model.predict(x, verbose=0)
    ref = np.asarray(out[0] if isinstance(out, list | tuple) else out)  # the main output
    with tempfile.NamedTemporaryFile(suffix=".tflite") as tmp:
        tmp.write(data)
        tmp.flush()
        got = next(g for g in EdgeModel(tmp.name).predict(x) if g.shape == ref.shape)
    return float(np.mean(np.abs(got - ref)) / (np.mean(np.abs(ref)) or 1.0))


def explain(exc: Exception) -> str:
    """One line; for ops the builtin set lacks, the op names (the converter buries them)."""
    text = str(exc)
    flex = re.findall(r"TF Select ops: ([^\n]+)", text)
    named = sorted(set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", text)))
    if flex or named:
        ops = ", ".join(named) or flex[0].strip()
        return (f"needs TensorFlow op(s) that are not LiteRT builtins: {ops} (Flex/Select TF ops "
                "cannot run on the gateway; replace them in the model)")
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def main(argv: list[str]) -> None:
    import keras

    from converters.twin import recurrent_kinds

    route = _option(argv, "--route", "auto")
    batch = _option(argv, "--batch", DEFAULT_BATCH)
    argv = [a for i, a in enumerate(argv) if not (a in ("--route", "--batch") or (
        i and argv[i - 1] in ("--route", "--batch")))]
    args = [a for a in argv if not a.startswith("--")]
    keras_path, out_dir, modes = Path(args[0]), Path(args[1]), args[2].split(",")
    windows = np.load(args[3])["x"].astype(np.float32) if len(args) > 3 else None
    # The run directory is the user's own training output: its Lambda layers are trusted.
    model = keras.models.load_model(keras_path, compile=False, safe_mode=False)
    kinds = recurrent_kinds(model)
    for mode in modes:
        info = convert_one(model, kinds, out_dir / f"{mode}.tflite", mode, windows,
                           "--int8-io" in argv, route, batch)
        print(json.dumps(info), flush=True)


def _option(argv: list[str], flag: str, default: str) -> str:
    return argv[argv.index(flag) + 1] if flag in argv else default


def serve() -> None:
    """Conversions one after another for ``converters.tflite.ConverterProcess``: one JSON argv
    per stdin line, its mode lines on stdout, then :data:`DONE`. TensorFlow starts once."""
    import keras

    for line in sys.stdin:
        main(json.loads(line))
        keras.backend.clear_session()
        print(DONE, flush=True)


if __name__ == "__main__":
    serve() if sys.argv[1:] == [SERVE] else main(sys.argv[1:])
