"""Gateway configuration (YAML): one strict pydantic model per section, Frigate-style."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MqttConfig(_Strict):
    host: str = Field(default="127.0.0.1", description="Broker host.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port.")
    client_id: str = Field(default="", description="MQTT client id; default procedge-<gateway>.")
    keepalive_s: int = Field(default=30, ge=5, description="MQTT keepalive, seconds.")
    qos: Literal[0, 1] = Field(default=1, description="QoS of subscriptions and publications.")
    protocol: Literal["3.1.1", "5"] = Field(default="3.1.1", description="MQTT version.")


class TopicConfig(_Strict):
    """ISA-95 style namespace; ``{uns}``, ``{tag}``, ``{model}``, ``{gateway}`` are filled in."""

    uns: str = Field(default="procedge/site/area/line1", description="Namespace prefix.")
    raw: str = Field(default="{uns}/raw/{tag}", description="Where each sensor tag arrives.")
    inference: str = Field(default="{uns}/inference/{model}", description="Forecasts, scores.")
    alarm: str = Field(default="{uns}/alarm/{model}/{alarm_id}", description="Alarm events.")
    status: str = Field(default="edge/{gateway}/status", description="Retained online/offline.")

    @field_validator("uns")
    @classmethod
    def _valid_levels(cls, value: str) -> str:
        bad = [c for c in " +#$" if c in value]
        if bad or not all(value.split("/")):
            raise ValueError(f"namespace levels must be non-empty without {bad or ' +#$'}")
        return value


class ModelConfig(_Strict):
    name: str = Field(description="Name used in topics; default the bundle's name.")
    bundle: Path = Field(description="Bundle directory or .zip.")
    threads: int = Field(default=1, ge=1, description="Interpreter threads.")
    public_key: Path | None = Field(
        default=None, description="Ed25519 public key (PEM): refuse unsigned or foreign bundles.")


class EdgeConfig(_Strict):
    gateway: str = Field(default="gw1", description="This gateway's name (status topic).")
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    topics: TopicConfig = Field(default_factory=TopicConfig)
    models: list[ModelConfig] = Field(min_length=1, description="Bundles to run.")
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Prometheus; 0 = off.")
    queue_size: int = Field(default=100_000, gt=0, description="Inbound messages held at most.")
    log_level: str = Field(default="INFO")


def load_edge_config(path: str | Path) -> EdgeConfig:
    """Read and validate; an error names the file and the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    try:
        config = EdgeConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid edge config\n{exc}") from exc
    for model in config.models:  # bundle paths are relative to the config file
        if not model.bundle.is_absolute():
            model.bundle = (path.parent / model.bundle).resolve()
        if model.public_key is not None and not model.public_key.is_absolute():
            model.public_key = (path.parent / model.public_key).resolve()
    return config
