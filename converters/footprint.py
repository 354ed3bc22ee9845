"""Where the bytes of a ``.tflite`` file go, read from the flatbuffer itself.

Why: "int8 is 4× smaller than float" only holds for the constant data. A flatbuffer also
carries a graph (operators, tensor tables and names, a signature, metadata) whose size does not
shrink with quantization, and int8 adds quantization parameters per tensor and per output
channel (a float scale and an int64 zero point each). For a model of a few thousand weights
that graph dominates the file; this module separates the two so a size claim can be honest,
and lists any constant that int8 conversion left in float.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from ai_edge_litert import schema_py_generated as schema

_TYPE_NAMES = {v: k for k, v in vars(schema.TensorType).items() if k.isupper()}
_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if k.isupper()}
# Shape-sized int32 constants (reshape targets, paddings, strides) are graph, not weights.
_SMALL_CONSTANT = 64


@dataclass
class Footprint:
    """Byte accounting of one flatbuffer (first subgraph holds the model's weights)."""

    file_bytes: int
    constant_bytes: dict[str, int]  # tensor type → bytes of constant data of that type
    quantization_bytes: int  # scales (4 B) and zero points (8 B) of every quantized tensor
    name_bytes: int  # tensor names: not needed to run (``converters.compact`` drops them)
    tensors: int
    operators: int
    # Tensors are labelled by name, or (names stripped) as "<first op reading it> input <k>".
    float_constants: list[str] = field(default_factory=list)  # > _SMALL_CONSTANT bytes
    duplicate_constant_bytes: int = 0  # identical constant buffers stored more than once
    per_channel: list[str] = field(default_factory=list)  # tensors with one scale per channel

    @property
    def weight_bytes(self) -> int:
        return sum(self.constant_bytes.values())

    @property
    def overhead_bytes(self) -> int:
        """Everything that is not constant data: graph, names, quantization parameters."""
        return self.file_bytes - self.weight_bytes

    def as_dict(self) -> dict:
        return asdict(self) | {"weight_bytes": self.weight_bytes,
                               "overhead_bytes": self.overhead_bytes}


def footprint(tflite_path: str | Path) -> Footprint:
    """Account the bytes of ``tflite_path`` (weights by type, graph overhead, duplicates)."""
    buf = Path(tflite_path).read_bytes()
    model = schema.Model.GetRootAs(buf, 0)
    by_type: dict[str, int] = {}
    floats: list[str] = []
    per_channel: list[str] = []
    quant = names = tensors = operators = 0
    seen_buffers: set[int] = set()
    digests: dict[str, int] = {}
    duplicates = 0
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        operators += graph.OperatorsLength()
        tensors += graph.TensorsLength()
        readers = _readers(model, graph)
        for i in range(graph.TensorsLength()):
            tensor = graph.Tensors(i)
            names += len(tensor.Name() or b"")
            label = tensor.Name().decode() if tensor.Name() else readers.get(i, f"tensor {i}")
            q = tensor.Quantization()
            if q is not None:
                quant += 4 * q.ScaleLength() + 8 * q.ZeroPointLength()
                if q.ScaleLength() > 1:
                    per_channel.append(label)
            index = tensor.Buffer()
            data = model.Buffers(index).DataAsNumpy() if index else 0
            if isinstance(data, int) or index in seen_buffers:
                continue  # no constant data, or a buffer already counted (shared on purpose)
            seen_buffers.add(index)
            kind = _TYPE_NAMES.get(tensor.Type(), str(tensor.Type()))
            by_type[kind] = by_type.get(kind, 0) + data.nbytes
            if kind in ("FLOAT32", "FLOAT16") and data.nbytes > _SMALL_CONSTANT:
                floats.append(f"{label} ({kind}, {data.nbytes} B)")
            digest = hashlib.sha256(np.ascontiguousarray(data).tobytes()).hexdigest()
            if data.nbytes > _SMALL_CONSTANT and digest in digests:
                duplicates += data.nbytes
            digests.setdefault(digest, index)
    return Footprint(len(buf), by_type, quant, names, tensors, operators, floats, duplicates,
                     per_channel)


def _readers(model, graph) -> dict[int, str]:
    """Tensor index → "<op> input <k>" of the first operator that reads it."""
    found: dict[int, str] = {}
    for j in range(graph.OperatorsLength()):
        op = graph.Operators(j)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = _OP_NAMES.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        for k in range(op.InputsLength()):
            found.setdefault(op.Inputs(k), f"{name} input {k}")
    return found
