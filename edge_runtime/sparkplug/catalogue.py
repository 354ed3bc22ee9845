"""Which Sparkplug metrics the gateway publishes, and how daemon outputs become them.

The NBIRTH must list every metric the node will ever send, so the catalogue is derived from
the running bundles' manifests: per model ``<model>/version``; forecasters
``<model>/forecast/<target>/<k>`` (k = 1..horizon); detectors ``<model>/score``,
``raw_score``, ``threshold``, ``alarm_active`` and the alarm's ``alarm/state``,
``alarm/priority``, ``alarm/event``, ``alarm/event_id``; soft sensors ``<model>/estimate``,
``raw_estimate``, ``bias`` (every period) and ``residual``, ``lab_value`` (per lab value);
control policies ``<model>/setpoint``, ``raw_action``, ``verdict``, ``source`` (advice).
Aliases are 1..N in sorted order,
for every metric but ``Node Control/Rebirth``, which Sparkplug 3.0 forbids an alias
(``tck-id-operational-behavior-data-commands-rebirth-name-aliases``): it goes by name only.

Outputs are stored in the outbox by metric *name* (JSON), not as protobuf: aliases, ``seq``
and ``is_historical`` are only known when a row is sent (after a restart or a hot reload the
catalogue may differ; a name no longer born is dropped and logged then, not sent wrongly).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from edge_runtime.outbox import Message
from edge_runtime.payloads import PayloadError, parse_timestamp
from edge_runtime.sparkplug import codec

NODE_METRICS = [(codec.BDSEQ, codec.INT64), (codec.REBIRTH, codec.BOOLEAN)]
_ANOMALY = [("score", codec.DOUBLE), ("raw_score", codec.DOUBLE), ("threshold", codec.DOUBLE),
            ("alarm_active", codec.BOOLEAN), ("alarm/state", codec.STRING),
            ("alarm/priority", codec.STRING), ("alarm/event", codec.STRING),
            ("alarm/event_id", codec.STRING)]
_SOFT_SENSOR = ["estimate", "raw_estimate", "bias", "residual", "lab_value"]
_CONTROL = [("setpoint", codec.DOUBLE), ("raw_action", codec.DOUBLE), ("verdict", codec.STRING),
            ("source", codec.STRING)]


@dataclass(frozen=True)
class Route:
    """A daemon output topic this catalogue turns into metrics."""

    kind: str  # "inference", "alarm" or "residual"
    model: str


class Catalogue:
    def __init__(self, pipelines: dict, topic_of) -> None:
        """``pipelines``: name → ModelPipeline; ``topic_of(kind, **fields)``: the daemon's
        topic templates (so the JSON topics and these routes cannot drift apart)."""
        self.types: dict[str, int] = dict(NODE_METRICS)
        self.routes: dict[str, Route] = {}
        for name, pipeline in pipelines.items():
            manifest = pipeline.bundle.manifest
            self.types[f"{name}/version"] = codec.STRING
            if manifest.task == "forecast":
                for target in manifest.output.targets:
                    for k in range(1, manifest.output.horizon + 1):
                        self.types[f"{name}/forecast/{target}/{k}"] = codec.DOUBLE
            elif manifest.task == "control":
                self.types.update({f"{name}/{m}": t for m, t in _CONTROL})
                self.routes[topic_of("advice", model=name)] = Route("advice", name)
            elif manifest.task == "soft_sensor":
                self.types.update({f"{name}/{m}": codec.DOUBLE for m in _SOFT_SENSOR})
                self.routes[topic_of("residual", model=name)] = Route("residual", name)
            elif pipeline.alarm is not None:
                self.types.update({f"{name}/{m}": t for m, t in _ANOMALY})
                self.routes[topic_of("alarm", model=name, alarm_id=pipeline.alarm_id)] = \
                    Route("alarm", name)
            self.routes[topic_of("inference", model=name)] = Route("inference", name)
        self.aliases = {name: i for i, name in enumerate(
            sorted(n for n in self.types if n != codec.REBIRTH), start=1)}

    def metrics_of(self, messages: list[Message]) -> list[tuple[int, list[list]]]:
        """(source time ms, [[name, value], ...]) for each output this catalogue covers."""
        rows = []
        for msg in messages:
            route = self.routes.get(msg.topic)
            if route is None:
                continue
            body = json.loads(msg.payload)
            try:
                ts_ms = round(parse_timestamp(body.get("source_ts", body.get("ts"))) * 1000)
            except PayloadError:
                continue
            values = (self._inference(route.model, body) if route.kind == "inference"
                      else self._residual(route.model, body) if route.kind == "residual"
                      else self._advice(route.model, body) if route.kind == "advice"
                      else self._alarm(route.model, body))
            rows.append((ts_ms, [[n, v] for n, v in values if n in self.types]))
        return rows

    @staticmethod
    def _inference(model: str, body: dict) -> list[tuple[str, object]]:
        values: list[tuple[str, object]] = [(f"{model}/version", body.get("version"))]
        for target, series in body.get("forecast", {}).items():
            values += [(f"{model}/forecast/{target}/{k}", v) for k, v in enumerate(series, 1)]
        for key in ("score", "raw_score", "threshold", "alarm_active", "estimate",
                    "raw_estimate", "bias"):
            if key in body:
                values.append((f"{model}/{key}", body[key]))
        return values

    @staticmethod
    def _advice(model: str, body: dict) -> list[tuple[str, object]]:
        return [(f"{model}/version", body.get("version"))] + [
            (f"{model}/{m}", body.get(m)) for m, _ in _CONTROL if body.get(m) is not None]

    @staticmethod
    def _residual(model: str, body: dict) -> list[tuple[str, object]]:
        return [(f"{model}/residual", body.get("residual")),
                (f"{model}/lab_value", body.get("measured")), (f"{model}/bias", body.get("bias"))]

    @staticmethod
    def _alarm(model: str, body: dict) -> list[tuple[str, object]]:
        return [(f"{model}/alarm/{key}", body.get(field)) for key, field in
                (("state", "state"), ("priority", "priority"), ("event", "event"),
                 ("event_id", "event_id"))]


def row_payload(ts_ms: int, metrics: list[list]) -> bytes:
    return json.dumps({"ts": ts_ms, "metrics": metrics}).encode()
