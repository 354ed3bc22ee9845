"""Rewrite a converted ``.tflite`` flatbuffer without the bytes the interpreter never reads.

Why: for the small models procedge ships, the graph around the weights (tensor names, a
signature, an empty quantization table per float tensor, one empty buffer per activation,
the same shape vector and quantization table written once per tensor) is as large as the int8
weights themselves (``converters/footprint.py``). This pass keeps every operator, tensor,
shape, quantization parameter and constant byte — the interpreter runs the same graph and
returns bit-identical outputs — and drops or shares only the rest:

* strings: tensor and subgraph names, the model description, and the signature defs (whose
  names are their only content; the gateway runs subgraph 0 by tensor index, never by
  signature), as TensorFlow's ``flatbuffer_utils.strip_strings`` does;
* an empty quantization table (what the converter writes on every float tensor);
* the ``has_rank`` flag of a tensor whose shape is not empty: the interpreter never reads it
  (``InterpreterBuilder::ParseTensors`` takes shape, type, buffer, quantization, shape
  signature, variable, sparsity), and a non-empty shape states the rank anyway;
* empty buffers: a tensor without constant data points at buffer 0, the schema's "always
  existent empty buffer", and the unused ones are dropped;
* duplicates: a scalar vector (shape, operator inputs, scales, constant data …) or a
  quantization / operator-options table identical to one already written is referenced, not
  written again — flatbuffers offsets may share a target; the verifier checks bounds only.

Reads and writes with the schema module shipped by ``ai-edge-litert`` (no TensorFlow).
"""

from __future__ import annotations

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

_FILE_IDENTIFIER = b"TFL3"
BUFFER_ALIGN = 16  # the schema's force_align for Buffer.data


def compact(data: bytes) -> bytes:
    """``data`` rewritten without names, signatures, empty tables and duplicates; returned
    unchanged when it stores buffers outside the flatbuffer (models above 2 GB)."""
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    if any(b.offset or b.size for b in model.buffers or []):
        return data
    _strip_strings(model)
    _drop_empty_quantization(model)
    _drop_evident_rank(model)
    _drop_empty_buffers(model)
    _share_tables(model)
    builder = _SharingBuilder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
    return bytes(builder.Output())


def _strip_strings(model) -> None:
    model.description = None
    model.signatureDefs = None
    for graph in model.subgraphs:
        graph.name = None
        for tensor in graph.tensors:
            tensor.name = None


def _drop_empty_quantization(model) -> None:
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            q = tensor.quantization
            if q is not None and q.details is None and not any(
                    _length(getattr(q, f)) for f in ("scale", "zeroPoint", "min", "max")):
                tensor.quantization = None


def _drop_evident_rank(model) -> None:
    """``has_rank`` off where the shape already gives the rank (scalars keep theirs)."""
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            if _length(tensor.shape):
                tensor.hasRank = False


def _drop_empty_buffers(model) -> None:
    """Tensors without constant data → buffer 0; buffers no one references are removed."""
    buffers = model.buffers
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            if tensor.buffer and not _length(buffers[tensor.buffer].data):
                tensor.buffer = 0
    metadata = model.metadata or []
    used = sorted({0} | {t.buffer for g in model.subgraphs for t in g.tensors}
                  | {m.buffer for m in metadata})
    index = {old: new for new, old in enumerate(used)}
    model.buffers = [buffers[old] for old in used]
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            tensor.buffer = index[tensor.buffer]
    for entry in metadata:
        entry.buffer = index[entry.buffer]


def _share_tables(model) -> None:
    """Identical quantization and builtin-options tables: one object, packed once."""
    seen: dict[tuple, object] = {}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            if tensor.quantization is not None:
                tensor.quantization = _first(seen, tensor.quantization)
        for op in graph.operators:
            if op.builtinOptions is not None:
                op.builtinOptions = _first(seen, op.builtinOptions)


def _first(seen: dict, obj):
    key = _content(obj)
    if key not in seen:
        _pack_once(obj)
        seen[key] = obj
    return seen[key]


def _pack_once(obj) -> None:
    """Make ``obj.Pack`` write the table the first time and return that offset after."""
    pack, offsets = obj.Pack, {}

    def once(builder):
        if id(builder) not in offsets:
            offsets[id(builder)] = pack(builder)
        return offsets[id(builder)]

    obj.Pack = once


def _content(value):
    """A hashable, exact description of an object-API value (type and every field)."""
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        return tuple(_content(v) for v in value)
    if hasattr(value, "__dict__"):
        return (type(value).__name__,) + tuple(
            (k, _content(v)) for k, v in sorted(vars(value).items()) if k != "Pack")
    return value


def _length(value) -> int:
    return 0 if value is None else len(value)


class _SharingBuilder(flatbuffers.Builder):
    """A builder that writes each distinct vector of scalars once: an identical later one
    (same bytes, element size and alignment) is rolled back and the first one's offset
    returned. Vectors of offsets are position-dependent and never shared."""

    def __init__(self, size: int):
        super().__init__(size)
        self._written: dict[tuple, int] = {}
        self._start: int | None = None
        self._kind: tuple[int, int] = (0, 0)
        self._holds_offsets = False

    def StartVector(self, elemSize, numElems, alignment):  # noqa: N802, N803 (flatbuffers API)
        self._start, self._kind, self._holds_offsets = self.Offset(), (elemSize, alignment), False
        return super().StartVector(elemSize, numElems, alignment)

    def PrependUOffsetTRelative(self, off):  # noqa: N802
        self._holds_offsets = True
        super().PrependUOffsetTRelative(off)

    def CreateString(self, s, encoding="utf-8", errors="strict"):  # noqa: N802
        self._start = None  # strings (metadata names, custom op codes) are written as they are
        return super().CreateString(s, encoding, errors)

    def CreateNumpyVector(self, x):  # noqa: N802
        """Constant tensor data (``Buffer.data``, bytes) starts on 16 bytes, as the converter
        writes it (the schema's ``force_align: 16``, which the Python builder ignores): SIMD
        kernels on a gateway's ARM core may read it with aligned loads."""
        if x.dtype != np.uint8:
            return super().CreateNumpyVector(x)
        self.StartVector(1, x.size, BUFFER_ALIGN)
        self.head -= x.size
        self.Bytes[self.head:self.head + x.size] = x.tobytes()
        return self.EndVector()

    def CreateByteVector(self, x):  # noqa: N802
        self._start = None
        return super().CreateByteVector(x)

    def EndVector(self, numElems=None):  # noqa: N802, N803
        count = self.vectorNumElems
        end = super().EndVector(numElems)
        start, self._start = self._start, None
        if start is None or self._holds_offsets:
            return end
        length = 4 + count * self._kind[0]
        key = (self._kind, bytes(self.Bytes[self.head:self.head + length]))
        if key in self._written:
            self.head = len(self.Bytes) - start  # forget this copy, padding included
            return self._written[key]
        self._written[key] = end
        return end
