"""Sparkplug B payloads and topics.

The protobuf classes are generated from ``sparkplug_b.proto`` beside this module (procedge's
own schema of the Sparkplug 3.0 payload, field numbers as the specification gives them) when
this module is first imported: a child process runs
the protoc bundled in ``grpcio-tools`` into a temporary folder, and the generated source is
executed here, unmodified, as ``edge_runtime.sparkplug.sparkplug_b_pb2``. Nothing generated is
committed or kept on disk (a gateway's home may be read-only), and the daemon process loads
neither ``grpc`` nor the compiler (≈ 20 MB RSS saved). The wire format is protobuf's own; this
module only maps metric values to and from Python numbers.

Generated code checks the protobuf runtime against the generator's version, so
``grpcio-tools`` is pinned and ``protobuf`` constrained to what it supports (pyproject).
The proto is registered under the file name ``edge_runtime/sparkplug/sparkplug_b.proto``;
another copy of the same messages (e.g. ``pysparkplug``'s) cannot live in the same process.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import DecodeError

PROTO = "edge_runtime/sparkplug/sparkplug_b.proto"
_ROOT = Path(__file__).resolve().parents[2]  # the folder holding edge_runtime/


def _generate() -> types.ModuleType:
    """protoc (from grpcio-tools) in a child process → the generated module, in memory."""
    name = PROTO[:-len(".proto")].replace("/", ".") + "_pb2"
    if name in sys.modules:
        return sys.modules[name]
    with tempfile.TemporaryDirectory(prefix="procedge-sparkplug-") as out:
        try:
            subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{_ROOT}",
                            f"--python_out={out}", str(_ROOT / PROTO)], check=True,
                           capture_output=True, text=True, timeout=120)
        except subprocess.CalledProcessError as exc:
            raise ImportError(f"generating Sparkplug B classes from {PROTO} failed (is "
                              f"grpcio-tools installed? pip install procedge[edge]): "
                              f"{exc.stderr.strip()[-500:]}") from exc
        source = (Path(out) / PROTO).with_name("sparkplug_b_pb2.py").read_text()
    module = types.ModuleType(name, f"Generated at import from {PROTO} by grpcio-tools' protoc.")
    sys.modules[name] = module
    exec(compile(source, f"<{name}, generated from {PROTO}>", "exec"), module.__dict__)
    return module


_pb = _generate()
Payload = _pb.Payload
Metric = _pb.Payload.Metric

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
BDSEQ = "bdSeq"

INT8, INT16, INT32, INT64 = 1, 2, 3, 4
UINT8, UINT16, UINT32, UINT64 = 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT = 9, 10, 11, 12, 13, 14
_SIGNED_BITS = {INT8: 8, INT16: 16, INT32: 32}
_NUMERIC = {INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64, FLOAT, DOUBLE, BOOLEAN}


class SparkplugError(ValueError):
    """A Sparkplug message that cannot be used; the message is the counted reason."""


@dataclass(frozen=True)
class Topic:
    """``spBv1.0/<group>/<kind>/<node>[/<device>]``."""

    group: str
    kind: str  # NBIRTH, NDATA, NDEATH, NCMD, DBIRTH, DDATA, DDEATH, DCMD
    node: str
    device: str = ""


_KINDS = {"NBIRTH", "NDATA", "NDEATH", "NCMD", "DBIRTH", "DDATA", "DDEATH", "DCMD"}


def parse_topic(topic: str) -> Topic:
    parts = topic.split("/")
    if len(parts) not in (4, 5) or parts[0] != NAMESPACE or parts[2] not in _KINDS:
        raise SparkplugError("sparkplug_bad_topic")
    device = parts[4] if len(parts) == 5 else ""
    if (parts[2][0] == "D") != bool(device):
        raise SparkplugError("sparkplug_bad_topic")
    return Topic(parts[1], parts[2], parts[3], device)


def topic(group: str, kind: str, node: str, device: str = "") -> str:
    return "/".join([NAMESPACE, group, kind, node] + ([device] if device else []))


def decode(data: bytes) -> Payload:
    """Parse a payload; any protobuf error becomes ``sparkplug_malformed``."""
    payload = Payload()
    try:
        payload.ParseFromString(data)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise SparkplugError("sparkplug_malformed") from exc
    return payload


def number(metric: Metric, datatype: int) -> float:
    """A numeric metric value as float (signed types are two's complement in the unsigned
    fields); raises for null, non-numeric and non-finite values."""
    if metric.is_null:
        raise SparkplugError("sparkplug_null")
    if datatype not in _NUMERIC:
        raise SparkplugError("not_a_number")
    field = metric.WhichOneof("value")
    if field is None:
        raise SparkplugError("sparkplug_no_value")
    raw = getattr(metric, field)
    if field == "int_value" and datatype in _SIGNED_BITS:
        bits = _SIGNED_BITS[datatype]
        if raw >= 1 << 31:  # sign-extended to 32 bits (Tahu)
            raw -= 1 << 32
        elif raw >= 1 << (bits - 1):  # or only the type's own width
            raw -= 1 << bits
    elif field == "long_value" and datatype == INT64 and raw >= 1 << 63:
        raw -= 1 << 64
    if field not in ("int_value", "long_value", "float_value", "double_value", "boolean_value"):
        raise SparkplugError("not_a_number")
    value = float(raw)
    if not math.isfinite(value):
        raise SparkplugError("not_finite")
    return value


def set_value(metric: Metric, datatype: int, value: float | bool | str | int | None) -> None:
    """Fill a metric's value field for the datatypes procedge publishes."""
    if value is None:
        metric.is_null = True
    elif datatype == BOOLEAN:
        metric.boolean_value = bool(value)
    elif datatype == DOUBLE:
        metric.double_value = float(value)
    elif datatype in (STRING, TEXT):
        metric.string_value = str(value)
    elif datatype in (INT64, UINT64):
        metric.long_value = int(value) & ((1 << 64) - 1)
    else:
        raise ValueError(f"procedge does not publish Sparkplug datatype {datatype}")


def rebirth_request(now_ms: int) -> bytes:
    """An NCMD payload asking an edge node to publish its births again."""
    payload = Payload(timestamp=now_ms)
    metric = payload.metrics.add(name=REBIRTH, timestamp=now_ms, datatype=BOOLEAN)
    metric.boolean_value = True
    return payload.SerializeToString()
