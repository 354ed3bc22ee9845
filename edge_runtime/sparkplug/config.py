"""The ``sparkplug:`` section of the gateway config (pydantic, unknown keys are errors).

Kept beside the Sparkplug code and plugged into :class:`edge_runtime.config.EdgeConfig` as one
field, so the rest of the config does not change when Sparkplug does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from edge_runtime.contract import Strict

_FORBIDDEN = set("+#/ ")  # Sparkplug ids are single MQTT topic levels


def _topic_level(value: str) -> str:
    if not value or _FORBIDDEN & set(value) or value.startswith("$"):
        raise ValueError(f"{value!r} must be one non-empty topic level without + # / $ or space")
    return value



class SparkplugTag(Strict):
    """One Sparkplug metric that feeds one model tag."""

    tag: str = Field(description="Model input tag (as in the bundle manifest) that this feeds.")
    node: str = Field(description="Edge node id (`spBv1.0/<group>/NDATA/<node>`).")
    device: str = Field(default="", description="Device id for DBIRTH/DDATA; empty = node metric.")
    metric: str = Field(default="", description="Metric name as announced in the BIRTH.")
    alias: int | None = Field(default=None, ge=0,
                              description="Or: the metric's alias as announced in the BIRTH.")

    _levels = field_validator("node")(_topic_level)

    @model_validator(mode="after")
    def _name_or_alias(self) -> SparkplugTag:
        if bool(self.metric) == (self.alias is not None):
            raise ValueError(f"tag {self.tag!r}: give exactly one of `metric` or `alias`")
        if self.device:
            _topic_level(self.device)
        return self


class SparkplugInputConfig(Strict):
    """Read model inputs from Sparkplug B edge nodes (births tracked, aliases resolved)."""

    group: str = Field(description="Sparkplug group id to subscribe to.")
    tags: list[SparkplugTag] = Field(min_length=1, description="Metric → tag mapping.")
    request_rebirth: bool = Field(
        default=True, description="Send `Node Control/Rebirth` (NCMD) when DATA arrives from a "
                                  "node or device whose BIRTH was not seen.")
    rebirth_interval_s: float = Field(default=30.0, gt=0,
                                      description="At most one rebirth request per node per this.")
    max_payload_bytes: int = Field(default=1 << 20, gt=0, description="Larger payloads: rejected.")

    _group = field_validator("group")(_topic_level)


class SparkplugOutputConfig(Strict):
    """Publish forecasts, scores and alarm states as a Sparkplug B edge node (NBIRTH/NDATA)."""

    group: str = Field(description="Sparkplug group id to publish under.")
    node: str = Field(default="", description="Edge node id; default: the gateway name.")
    client_id: str = Field(default="", description="MQTT client id of the edge node's own "
                                                   "connection; default <mqtt client id>-spb.")
    qos: Literal[0, 1] = Field(
        default=1, description="QoS of NBIRTH/NDATA. Sparkplug 3.0 says 0; 1 (default) lets "
                               "the outbox delete a row only on the broker's PUBACK.")
    outbox_path: Path | None = Field(
        default=None, description="SQLite outbox of the Sparkplug rows (and bdSeq); default: "
                                  "beside `outbox.path`, suffix `-sparkplug`.")

    _group = field_validator("group")(_topic_level)

    @field_validator("node")
    @classmethod
    def _optional_level(cls, value: str) -> str:
        return _topic_level(value) if value else value


class SparkplugConfig(Strict):
    """Sparkplug B input and/or output; both off by default (JSON on ISA-95 topics)."""

    input: SparkplugInputConfig | None = Field(default=None, description="Sparkplug inputs.")
    output: SparkplugOutputConfig | None = Field(
        default=None, description="Also publish results as a Sparkplug B edge node.")
