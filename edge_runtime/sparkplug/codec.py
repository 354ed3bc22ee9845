"""Sparkplug B payloads and topics.

The protobuf classes come from ``sparkplug_b_pb2.py`` beside this module, generated from
``sparkplug_b.proto`` (procedge's own schema of the Sparkplug 3.0 payload, field numbers as
the specification gives them) by ``make proto`` and committed: a gateway needs the protobuf
runtime only, neither ``grpc`` nor a compiler. tests/test_packaging.py regenerates it and
fails when it no longer matches the ``.proto``. The wire format is protobuf's own; this
module only maps metric values to and from Python numbers.

Generated code checks the protobuf runtime against the generator's version (the file's
"Protobuf Python Version"), so pyproject's ``protobuf`` range starts there and stays within
that major. The proto is registered under the file name
``edge_runtime/sparkplug/sparkplug_b.proto``; another copy of the same messages (e.g.
``pysparkplug``'s) cannot live in the same process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from edge_runtime.sparkplug import sparkplug_b_pb2 as _pb

PROTO = "edge_runtime/sparkplug/sparkplug_b.proto"
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
