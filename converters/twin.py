"""Conversion twins of a Keras 3 model: the same weights in a graph the converter handles.

Two twins, chosen per recurrent layer type (see ``converters/recurrent.py``):

* :func:`unrolled_clone` — a Keras 3 clone with ``unroll=True`` on every LSTM/GRU/SimpleRNN:
  no WHILE loop, so every mode converts and the batch stays dynamic; size grows with the
  sequence length.
* :func:`tf_keras_twin` — the same graph rebuilt layer by layer in tf-keras (optionally with a
  fixed batch), weights copied per layer. tf-keras LSTMs convert to the fused
  ``UNIDIRECTIONAL_SEQUENCE_LSTM`` kernel, which quantizes to full int8; tensorflow-model-
  optimization (QAT, pruning) also needs a tf-keras model.

Both are checked against the original on random windows before anyone converts them.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

RECURRENT = ("LSTM", "GRU", "SimpleRNN")
WRAPPERS = ("Bidirectional", "TimeDistributed")


def recurrent_kinds(model) -> set[str]:
    """Class names of the recurrent layers in ``model`` (looking inside wrappers)."""
    found: set[str] = set()
    _walk(model.get_config(), found)
    return found


def _walk(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        if node.get("class_name") in RECURRENT:
            found.add(node["class_name"])
        for value in node.values():
            _walk(value, found)
    elif isinstance(node, list):
        for value in node:
            _walk(value, found)


def max_abs_diff(a, b, shape: tuple[int, ...], batch: int = 4, seed: int = 0) -> float:
    """Largest output difference of two models on the same random windows."""
    x = np.random.default_rng(seed).normal(size=(batch, *shape)).astype(np.float32)
    ya = [np.asarray(t) for t in _as_list(_call(a, x))]
    yb = [np.asarray(t) for t in _as_list(_call(b, x))]
    return max(float(np.max(np.abs(p - q))) for p, q in zip(ya, yb, strict=True))


def _call(model, x: np.ndarray):
    fixed = model.inputs[0].shape[0]
    if fixed is None:
        return model(x, training=False)
    parts = [_as_list(model(x[i : i + fixed], training=False)) for i in range(0, len(x), fixed)]
    return [np.concatenate([np.asarray(p[k]) for p in parts]) for k in range(len(parts[0]))]


def _as_list(y) -> list:
    return list(y) if isinstance(y, list | tuple) else [y]


# --- Keras 3 clone with unrolled recurrent layers -------------------------------------------


def unrolled_clone(model):
    """Keras 3 clone with ``unroll=True`` on every recurrent layer, weights copied."""
    import keras

    def unroll(layer):
        config = layer.get_config()
        _set_unroll(config)
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=unroll)
    clone.set_weights(model.get_weights())
    return clone


def _set_unroll(config: dict) -> None:
    if "unroll" in config:
        config["unroll"] = True
    for key in ("layer", "backward_layer", "forward_layer"):
        inner = config.get(key)
        if isinstance(inner, dict) and "config" in inner:
            _set_unroll(inner["config"])


# --- tf-keras twin ---------------------------------------------------------------------------

# Keras 3 config keys whose values tf-keras would misread; weights are copied afterwards, so
# initializers, regularizers and constraints do not matter for a conversion twin.
_DROP = re.compile(r"(_initializer|_regularizer|_constraint)$|^(dtype|seed|optional|lora_.*|"
                   r"quantization_config|use_cudnn|build_config)$")


def tf_keras_twin(model, batch_size: int | None = None):
    """Rebuild a Keras 3 Functional/Sequential model in tf-keras; copy weights layer by layer."""
    import tf_keras

    config = model.get_config()
    if "input_layers" not in config:  # Sequential: chain the layers
        config = _sequential_as_functional(config["layers"], model)
    layers_cfg = config["layers"]
    tensors: dict[tuple[str, int, int], Any] = {}
    built: dict[str, Any] = {}
    for entry in layers_cfg:
        name = entry["config"]["name"]
        if entry["class_name"] == "InputLayer":
            shape = entry["config"].get("batch_shape") or entry["config"]["batch_input_shape"]
            tensors[(name, 0, 0)] = tf_keras.Input(shape=tuple(shape[1:]), name=name,
                                                   batch_size=batch_size or shape[0])
            continue
        layer = built[name] = _tf_layer(entry)
        for index, node in enumerate(entry.get("inbound_nodes", [])):
            args = _resolve(node["args"], tensors)
            kwargs = {k: _resolve(v, tensors) for k, v in node.get("kwargs", {}).items()
                      if k not in ("training", "mask") or v is not None}
            kwargs.pop("training", None)
            out = layer(*args, **kwargs)
            for k, t in enumerate(_as_list(out)):
                tensors[(name, index, k)] = t
    inputs = [tensors[tuple(ref)] for ref in _refs(config["input_layers"])]
    outputs = [tensors[tuple(ref)] for ref in _refs(config["output_layers"])]
    twin = tf_keras.Model(inputs if len(inputs) > 1 else inputs[0],
                          outputs if len(outputs) > 1 else outputs[0], name=model.name)
    for layer in model.layers:
        if layer.name in built and layer.weights:
            built[layer.name].set_weights(layer.get_weights())
    return twin


def _sequential_as_functional(layers_cfg: list[dict], model) -> dict:
    """Give a Sequential config the input/inbound structure of a Functional one."""
    out: list[dict] = []
    previous = None
    for entry in layers_cfg:
        entry = dict(entry, config=dict(entry["config"]))
        if entry["class_name"] != "InputLayer":
            if previous is None:  # Sequential built without an explicit Input
                shape = [None, *model.inputs[0].shape[1:]]
                out.append({"class_name": "InputLayer",
                            "config": {"name": "input", "batch_shape": shape}})
                previous = "input"
            entry["inbound_nodes"] = [{"args": [_history(previous)], "kwargs": {}}]
        out.append(entry)
        previous = entry["config"]["name"]
    first = out[0]["config"]["name"]
    return {"layers": out, "input_layers": [first, 0, 0], "output_layers": [previous, 0, 0]}


def _history(name: str) -> dict:
    return {"class_name": "__keras_tensor__", "config": {"keras_history": [name, 0, 0]}}


def _refs(spec) -> list[list]:
    """``["x", 0, 0]`` or ``[["x", 0, 0], ...]`` → a list of references."""
    return [spec] if spec and isinstance(spec[0], str) else list(spec)


def _resolve(value, tensors):
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        name, node, index = value["config"]["keras_history"]
        return tensors[(name, node, index)]
    if isinstance(value, list | tuple):
        return [_resolve(v, tensors) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, tensors) for k, v in value.items()}
    return value


def _tf_layer(entry: dict):
    """A tf-keras layer from a Keras 3 layer entry; unknown keyword arguments are dropped."""
    import tf_keras

    cls = getattr(tf_keras.layers, entry["class_name"], None)
    if cls is None:
        raise ValueError(f"layer {entry['class_name']} has no tf-keras equivalent")
    config = {k: v for k, v in entry["config"].items() if not _DROP.search(k)}
    if entry["class_name"] == "LSTM":  # the families build unroll=True; the fused kernel
        config["unroll"] = False  # replaces the loop, an unrolled twin would not fuse
    for key in ("layer", "backward_layer", "forward_layer"):  # wrappers hold layer configs
        if isinstance(config.get(key), dict):
            config[key] = _tf_layer(config[key])
    while True:
        try:
            return cls(**config)
        except TypeError as exc:
            unknown = re.findall(r"'(\w+)'", str(exc))
            bad = [k for k in unknown if k in config]
            if "keyword" not in str(exc) or not bad:
                raise
            for key in bad:
                config.pop(key)
