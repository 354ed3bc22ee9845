"""The operators a ``.tflite`` flatbuffer asks for, read from the file itself.

Read from the flatbuffer, not from a loaded interpreter, because LiteRT refuses to even load
a model with a Flex or custom op — and the refusal must still name the op. Uses the schema
module that ships with ``ai-edge-litert`` (flatbuffers only, no TensorFlow).
"""

from __future__ import annotations

from pathlib import Path

from ai_edge_litert import schema_py_generated as schema

_BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if k.isupper()}
_CUSTOM = schema.BuiltinOperator.CUSTOM


def model_ops(tflite_path: str | Path) -> list[str]:
    """Names of the operator codes the model uses: builtin names, or the custom op's code
    (``FlexConv3D`` for a Flex op, any other name for a custom op)."""
    buf = Path(tflite_path).read_bytes()
    model = schema.Model.GetRootAs(buf, 0)
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Older files store the code in a byte, newer in an int32: take the larger.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == _CUSTOM:
            custom = code.CustomCode()
            names.append("CUSTOM:" + (custom.decode() if custom else "?"))
        else:
            names.append(_BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}"))
    return sorted(set(names))


def non_builtin_ops(tflite_path: str | Path) -> list[str]:
    """The ops a plain LiteRT interpreter cannot run (Flex or custom), by name."""
    return [n.removeprefix("CUSTOM:") for n in model_ops(tflite_path) if n.startswith("CUSTOM:")]


def input_batch(tflite_path: str | Path) -> str:
    """``"one"`` when the first input of subgraph 0 has a fixed batch of one (the converter
    folded the batch into the graph; ``EdgeModel`` then loops over windows), else
    ``"dynamic"``."""
    model = schema.Model.GetRootAs(Path(tflite_path).read_bytes(), 0)
    graph = model.Subgraphs(0)
    tensor = graph.Tensors(graph.Inputs(0))
    signature = tensor.ShapeSignatureAsNumpy() if tensor.ShapeSignatureLength() else None
    first = int(signature[0]) if signature is not None else int(tensor.Shape(0))
    return "one" if first == 1 else "dynamic"
