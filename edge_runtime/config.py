"""Gateway configuration (YAML): one strict pydantic model per section, Frigate-style."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


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


class CameraConfig(_Strict):
    """Image QC for one camera: frames (JPEG/PNG) arrive as binary MQTT payloads."""

    name: str = Field(description="Camera / station name, used in topics.")
    topic: str = Field(default="", description="Frame topic; default {uns}/camera/{name}.")
    classifier: Path | None = Field(default=None, description="Image classifier bundle.")
    segmenter: Path | None = Field(default=None, description="Image segmenter bundle.")
    threads: int = Field(default=1, ge=1, description="Interpreter threads per model.")
    max_bytes: int = Field(default=10_000_000, gt=0, description="Larger payloads: rejected.")
    max_pixels: int = Field(default=25_000_000, gt=0, description="Larger frames: rejected.")
    nok_window: int = Field(default=50, ge=1, description="Parts in the NOK-rate window.")
    nok_rate_limit: float = Field(default=0.2, gt=0, le=1, description="Alarm at this rate.")
    nok_threshold: float = Field(default=0.5, gt=0, lt=1, description="NOK when p(NOK) >=.")
    min_defect_px: int = Field(default=20, ge=1, description="Segmenter-only NOK area, px.")
    debug_mask: bool = Field(default=False, description="Publish the mask PNG on {uns}/debug.")
    watch_dir: Path | None = Field(default=None, description="Also take frames dropped here.")
    watch_interval_s: float = Field(default=0.5, gt=0, description="Folder poll period.")

    @model_validator(mode="after")
    def _a_model(self) -> CameraConfig:
        if self.classifier is None and self.segmenter is None:
            raise ValueError(f"camera {self.name!r}: give a classifier and/or a segmenter")
        return self


class EdgeConfig(_Strict):
    gateway: str = Field(default="gw1", description="This gateway's name (status topic).")
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    topics: TopicConfig = Field(default_factory=TopicConfig)
    models: list[ModelConfig] = Field(default_factory=list, description="Bundles to run.")
    cameras: list[CameraConfig] = Field(default_factory=list, description="Image QC stations.")
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Prometheus; 0 = off.")
    queue_size: int = Field(default=100_000, gt=0, description="Inbound messages held at most.")
    log_level: str = Field(default="INFO")

    @model_validator(mode="after")
    def _something_to_run(self) -> EdgeConfig:
        if not self.models and not self.cameras:
            raise ValueError("give at least one entry in 'models' or 'cameras'")
        return self


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
    for camera in config.cameras:
        for role in ("classifier", "segmenter"):
            bundle = getattr(camera, role)
            if bundle is not None and not bundle.is_absolute():
                setattr(camera, role, (path.parent / bundle).resolve())
        if camera.watch_dir is not None and not camera.watch_dir.is_absolute():
            camera.watch_dir = (path.parent / camera.watch_dir).resolve()
    return config
