"""Sparkplug B in: births tracked per node/device, DATA metrics resolved to model tags.

A BIRTH (NBIRTH / DBIRTH) announces every metric a node or device will send: name, alias,
datatype and current value. DATA then usually carries only aliases, so DATA from a node or
device whose BIRTH was not seen cannot be read: it is counted (``sparkplug_before_birth``),
skipped, and the node is asked to publish its births again (NCMD ``Node Control/Rebirth``, at
most once per ``rebirth_interval_s``). An NDEATH whose ``bdSeq`` matches the NBIRTH, or a
DDEATH, forgets the births. DATA metrics are resolved by name when the BIRTH has that name,
else by alias (some implementations send other names in DATA than in the BIRTH; those are
counted in ``Decoded.alias_fallbacks``). Pure logic: the daemon feeds messages and publishes
what it returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from edge_runtime.config import SparkplugInputConfig
from edge_runtime.payloads import MAX_FUTURE_S, MIN_EPOCH_S
from edge_runtime.sparkplug import codec


@dataclass
class Birth:
    """What one BIRTH announced: alias → name and name → datatype."""

    names: dict[int, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)
    bd_seq: int | None = None  # NBIRTH only


@dataclass
class Decoded:
    """The outcome of one Sparkplug message."""

    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    rejects: dict[str, int] = field(default_factory=dict)
    rebirth_topic: str = ""  # publish codec.rebirth_request() here when set
    kind: str = ""
    alias_fallbacks: int = 0  # metrics whose name was unknown, resolved by their alias

    def reject(self, reason: str, n: int = 1) -> None:
        self.rejects[reason] = self.rejects.get(reason, 0) + n


class SparkplugInput:
    def __init__(self, config: SparkplugInputConfig):
        self.config = config
        self.by_name: dict[tuple[str, str, str], str] = {}  # (node, device, metric) → tag
        self.by_alias: dict[tuple[str, str, int], str] = {}  # (node, device, alias) → tag
        for t in config.tags:
            if t.metric:
                self.by_name[(t.node, t.device, t.metric)] = t.tag
            else:
                self.by_alias[(t.node, t.device, t.alias)] = t.tag
        self.nodes = sorted({t.node for t in config.tags})
        self.births: dict[tuple[str, str], Birth] = {}
        self._last_rebirth: dict[str, float] = {}

    def subscriptions(self) -> list[str]:
        g = self.config.group
        return [t for n in self.nodes
                for t in (codec.topic(g, "+", n), codec.topic(g, "+", n, "+"))]

    def handle(self, topic_name: str, data: bytes, received_s: float) -> Decoded:
        out = Decoded()
        try:
            tp = codec.parse_topic(topic_name)
            if tp.group != self.config.group or tp.node not in self.nodes:
                raise codec.SparkplugError("unknown_topic")
            out.kind = tp.kind
            if tp.kind in ("NCMD", "DCMD"):
                return out  # commands (ours included) are not inputs
            if len(data) > self.config.max_payload_bytes:
                raise codec.SparkplugError("too_large")
            payload = codec.decode(data)
        except codec.SparkplugError as exc:
            out.reject(str(exc))
            return out
        key = (tp.node, tp.device)
        if tp.kind in ("NBIRTH", "DBIRTH"):
            self._birth(tp, payload)
        elif tp.kind in ("NDEATH", "DDEATH"):
            self._death(tp, payload)
            return out
        elif key not in self.births:
            out.reject("sparkplug_before_birth")
            self._maybe_rebirth(tp, received_s, out)
            return out
        self._read_metrics(tp, payload, received_s, out)
        return out

    def _birth(self, tp: codec.Topic, payload) -> None:
        if tp.kind == "NBIRTH":  # a node's birth invalidates its devices' births
            for k in [k for k in self.births if k[0] == tp.node]:
                del self.births[k]
        birth = Birth()
        for m in payload.metrics:
            if m.name:
                birth.types[m.name] = m.datatype
                if m.HasField("alias"):
                    birth.names[m.alias] = m.name
                    birth.aliases[m.name] = m.alias
                if m.name == codec.BDSEQ and m.HasField("long_value"):
                    birth.bd_seq = m.long_value
        self.births[(tp.node, tp.device)] = birth

    def _death(self, tp: codec.Topic, payload) -> None:
        if tp.kind == "DDEATH":
            self.births.pop((tp.node, tp.device), None)
            return
        node_birth = self.births.get((tp.node, ""))
        bd_seq = next((m.long_value for m in payload.metrics if m.name == codec.BDSEQ), None)
        if node_birth is not None and None not in (bd_seq, node_birth.bd_seq) \
                and bd_seq != node_birth.bd_seq:
            return  # the will of an older session: the node is alive in a newer one
        for k in [k for k in self.births if k[0] == tp.node]:
            del self.births[k]

    def _read_metrics(self, tp: codec.Topic, payload, received_s: float, out: Decoded) -> None:
        birth = self.births[(tp.node, tp.device)]
        for m in payload.metrics:
            by_alias = birth.names.get(m.alias, "") if m.HasField("alias") else ""
            name = m.name or by_alias
            if name not in birth.types and by_alias:
                name = by_alias  # DATA names that differ from the BIRTH's: the alias decides
                out.alias_fallbacks += 1
            if not name or name not in birth.types:
                out.reject("sparkplug_unknown_metric")
                continue
            tag = self.by_name.get((tp.node, tp.device, name))
            if tag is None and name in birth.aliases:
                tag = self.by_alias.get((tp.node, tp.device, birth.aliases[name]))
            if tag is None or m.is_null:
                continue  # a metric no model uses, or no value (allowed, e.g. in a BIRTH)
            ms = m.timestamp if m.HasField("timestamp") else payload.timestamp
            ts = ms / 1000.0 if ms else received_s
            try:
                value = codec.number(m, birth.types[name])
                if not MIN_EPOCH_S <= ts <= received_s + MAX_FUTURE_S:
                    raise codec.SparkplugError("timestamp_out_of_range")
            except codec.SparkplugError as exc:
                out.reject(str(exc))
                continue
            out.samples.setdefault(tag, []).append((ts, value))

    def _maybe_rebirth(self, tp: codec.Topic, received_s: float, out: Decoded) -> None:
        if not self.config.request_rebirth:
            return
        now = time.monotonic()
        if now - self._last_rebirth.get(tp.node, -1e12) < self.config.rebirth_interval_s:
            return
        self._last_rebirth[tp.node] = now
        out.rebirth_topic = codec.topic(self.config.group, "NCMD", tp.node)
