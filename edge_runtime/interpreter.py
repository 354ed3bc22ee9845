"""The LiteRT interpreter behind one bundle: float windows in, float outputs out.

Prefers ``ai-edge-litert``; falls back to the legacy ``tflite-runtime`` (numpy<2, slower int8
kernels, no hybrid dynamic-range ops). Quantized inputs/outputs are (de)quantized here, so the
rest of the gateway only ever sees float32 in engineering-scaled units.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

try:  # the maintained runtime
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
except ImportError:  # pragma: no cover - legacy gateways only
    from tflite_runtime.interpreter import (  # type: ignore[no-redef]
        Interpreter,
        OpResolverType,
    )

log = logging.getLogger("procedge.edge")

# Bytes of batch-dependent tensors one invoke may allocate: a long batch is run in chunks, so
# evaluating thousands of windows of a long-horizon model (a tft at H = 720: up to 63.5 MB per
# window) does not allocate them all at once.
BATCH_BYTES = 256 * 2**20


class EdgeModel:
    """One loaded ``.tflite`` model; call :meth:`predict` with a batch of float windows.
    A model with a fixed batch of one (``procedge convert``'s default, the fused LSTM) runs
    the batch one window per invoke; a dynamic-batch model resizes to it."""

    def __init__(self, model_path: str | Path, num_threads: int = 1):
        self.path = Path(model_path)
        self._interp = _allocated(self.path, num_threads)
        self._input = self._interp.get_input_details()[0]
        self._outputs = self._interp.get_output_details()
        # Fused LSTM kernels keep state in variable tensors between invokes: reset every time.
        self._stateful = "UNIDIRECTIONAL_SEQUENCE_LSTM" in self.op_names()
        dynamic = int(self._input["shape_signature"][0]) == -1
        self._batched = dynamic and not self._stateful
        self._batch = int(self._input["shape"][0])
        # windows per invoke: one at a fixed batch of one, else as many as BATCH_BYTES holds
        self._rows = (max(1, BATCH_BYTES // max(self._batch_dependent_bytes(), 1))
                      if self._batched else 1)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._input["shape"][1:])

    def ops(self) -> list[dict]:
        return list(self._interp._get_ops_details())

    def op_names(self) -> set[str]:
        return {op["op_name"] for op in self.ops()}

    def predict(self, x: np.ndarray) -> list[np.ndarray]:
        """Run a batch ``x`` (N, *input_shape); returns every output as float32 (N, ...)."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"input shape {x.shape[1:]} != model input {self.input_shape}")
        # a fixed batch of one (the converter's default, fused LSTM): one window per invoke.
        # The method is picked here, not stored: a bound method on self would be a reference
        # cycle, and the daemon frees a replaced model by reference counting alone.
        return self._in_chunks(x, self._rows, self._resized if self._batched else self._invoke)

    def _resized(self, x: np.ndarray) -> list[np.ndarray]:
        if len(x) != self._batch:
            self._interp.resize_tensor_input(self._input["index"], [len(x), *self.input_shape])
            self._interp.allocate_tensors()
            self._input = self._interp.get_input_details()[0]
            self._outputs = self._interp.get_output_details()
            self._batch = len(x)
        return self._invoke(x)

    def _batch_dependent_bytes(self) -> int:
        """Bytes per window of the tensors whose first dimension is the batch (an upper bound
        of what one more window allocates: LiteRT reuses arena memory between tensors)."""
        total = 0
        for t in self._interp.get_tensor_details():
            signature = t.get("shape_signature", t["shape"])
            if len(signature) and int(signature[0]) == -1:
                total += int(np.prod(t["shape"][1:])) * np.dtype(t["dtype"]).itemsize
        return total

    def predict_each(self, x: np.ndarray) -> list[np.ndarray]:
        """As :meth:`predict`, one window per invoke at the allocated batch size: no tensor
        re-allocation (a resize costs ~150 µs, more than a tiny model's invoke)."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"input shape {x.shape[1:]} != model input {self.input_shape}")
        if self._batch != 1:
            return self.predict(x)
        return self._in_chunks(x, 1, self._invoke)

    @staticmethod
    def _in_chunks(x: np.ndarray, rows: int, run) -> list[np.ndarray]:
        """``run`` on ``x`` in chunks of at most ``rows`` windows, outputs stacked."""
        if len(x) <= rows:  # the daemon's hot path: no slicing, no stacking
            return run(x)
        parts = [run(x[i : i + rows]) for i in range(0, len(x), rows)]
        return [np.concatenate(outs) for outs in zip(*parts, strict=True)]

    def _invoke(self, x: np.ndarray) -> list[np.ndarray]:
        if self._stateful:
            self._interp.reset_all_variables()
        self._interp.set_tensor(self._input["index"], _quantize(x, self._input))
        self._interp.invoke()
        return [_dequantize(self._interp.get_tensor(o["index"]), o) for o in self._outputs]


def _allocated(path: Path, num_threads: int) -> Interpreter:
    """The interpreter, allocated, on LiteRT's default XNNPACK delegate where it takes it.
    XNNPACK claims some graphs it then fails to prepare (a small int8 Informer: "failed to
    create XNNPACK runtime"); such a model runs on LiteRT's own kernels instead, slower but
    the same operators, logged. The parity gate and the latency a bundle records are measured
    through this class, so they hold for the path the gateway takes."""
    interp = Interpreter(model_path=str(path), num_threads=num_threads)
    try:
        interp.allocate_tensors()
        return interp
    except RuntimeError as exc:
        if "XNNPACK" not in str(exc):
            raise
        log.warning("%s: XNNPACK refused the graph (%s); running it on LiteRT's builtin "
                    "kernels", path.name, " ".join(str(exc).split()))
    interp = Interpreter(model_path=str(path), num_threads=num_threads,
                         experimental_op_resolver_type=(
                             OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    interp.allocate_tensors()
    return interp


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    """``y`` from ``get_tensor``, which is already a copy the caller owns (not a view of
    the interpreter's buffer): a float output is returned as is, an integer one converted
    in one new array (a 256×256×4 mask: 1 MB copied once instead of three times)."""
    if detail["dtype"] == np.float32:
        return y
    scale, zero = detail["quantization"]
    out = y.astype(np.float32)
    out -= zero
    out *= scale
    return out
