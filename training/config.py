"""Training configuration (YAML), validated strictly: a typo is an error naming the field."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from edge_runtime.contract import Strict, TaskName, task_spec


class SimulatorSource(Strict):
    steps: int = Field(default=6000, gt=0, description="Samples to simulate.")
    seed: int = Field(default=0, description="Random seed of the plant's disturbances.")


class DataConfig(Strict):
    source: Literal["simulator", "historian"] = Field(
        default="simulator", description="Built-in plant simulator, or a historian export."
    )
    path: Path | None = Field(default=None, description="CSV or Parquet export (historian).")
    timestamp_column: str = Field(default="timestamp", description="Column with timestamps.")
    tags: list[str] | None = Field(default=None, description="Tag columns; default: all.")
    units: dict[str, str] = Field(default_factory=dict, description="Unit per tag.")
    simulator: SimulatorSource = Field(default_factory=SimulatorSource)

    @model_validator(mode="after")
    def _path_for_historian(self) -> DataConfig:
        if self.source == "historian" and self.path is None:
            raise ValueError("data.path is required when data.source is 'historian'")
        return self


class WindowConfig(Strict):
    period_s: float = Field(default=5.0, gt=0, description="Grid period the data is aligned to.")
    length: int = Field(default=24, gt=1, description="Window length L in grid steps.")
    stride: int = Field(default=1, gt=0, description="Steps between windows at the edge.")
    max_gap_s: float = Field(default=15.0, ge=0, description="Longest hold before data is a gap.")


class SplitConfig(Strict):
    """Chronological split: train, then validation, then test; never shuffled across."""

    train: float = Field(default=0.7, gt=0, lt=1)
    val: float = Field(default=0.15, gt=0, lt=1)


class FitConfig(Strict):
    epochs: int = Field(default=30, gt=0, description="Epoch budget: the same on any machine; "
                        "early stopping on the validation loss may end the fit sooner.")
    batch_size: int = Field(default=64, gt=0)
    patience: int = Field(default=5, ge=0, description="Early-stopping patience (epochs).")
    learning_rate: float = Field(default=1e-3, gt=0)
    seed: int = Field(default=0, description="Seeds Python, numpy and the backend.")
    strategy: Literal["auto", "default", "mirrored", "multi_worker"] = Field(
        default="auto", description="tf.distribute strategy; auto: TF_CONFIG → multi_worker, "
                                    ">1 GPU → mirrored, else default (one device).")
    mixed_precision: bool = Field(default=False, description="mixed_float16 (GPU only).")
    tensorboard: bool = Field(default=True, description="TensorBoard logs in <run>/logs.")
    max_minutes: float | None = Field(
        default=None, gt=0, description="Optional wall-clock limit; when it stops the fit "
        "before the epoch budget, the run record says truncated: true.")
    resume: bool = Field(default=False, description="Continue an interrupted fit from its "
                         "checkpoint in <run>/backup (what `procedge train --resume` sets).")


class ThresholdConfig(Strict):
    quantile: float = Field(default=0.995, gt=0, lt=1, description="Of normal val scores.")
    margin: float = Field(default=1.2, gt=0, description="Multiplies the quantile.")
    clear_ratio: float = Field(default=0.8, gt=0, le=1, description="clear_at = ratio·raise_at.")
    on_delay: int = Field(default=3, ge=1, description="Anomalous windows in a row to raise.")
    off_delay: int = Field(default=3, ge=1, description="Normal windows in a row to clear.")
    rule: Literal["quantile", "coverage", "kde"] = Field(
        default="quantile", description="Empirical quantile, rank level·(n+1) (expected "
                                        "coverage = level), or KDE quantile.")
    ewma_alpha: float = Field(default=1.0, gt=0, le=1, description="Score EWMA (1 = off).")
    vote_k: int = Field(default=1, ge=1, description="k of the last n scores must pass.")
    vote_n: int = Field(default=1, ge=1, description="n of the k-of-n vote (1 = off).")
    score: Literal["reconstruction", "elbo"] = Field(
        default="reconstruction", description="elbo: VAE negative ELBO (ships a KL output).")


class ImageDataConfig(Strict):
    """Image tasks: a folder of ``<class>/Imgs/<stem>.jpg`` (masks ``<stem>.png``), as the
    magnetic-tile set; ``${PROCEDGE_DATA}`` and ``~`` in paths are expanded."""

    root: Path = Field(description="Training folder; a stratified share is held out for val.")
    test_root: Path | None = Field(default=None, description="Test folder, same layout; "
                                   "default: metrics on the validation split.")
    size: int = Field(default=128, gt=0, description="Square model input, pixels.")
    val_fraction: float = Field(default=0.2, gt=0, lt=1, description="Of every class.")
    trainer: dict[str, Any] = Field(
        default_factory=dict, description="Further options of the image trainer "
        "(training.images.train.ImageTrainConfig: schedule, max_minutes, augment, patch, "
        "mask_weight, class_weight_power, defect_share, precision); checked strictly.")

    @field_validator("root", "test_root", mode="before")
    @classmethod
    def _expand(cls, value):
        return None if value is None else Path(os.path.expanduser(os.path.expandvars(value)))


class TrainConfig(Strict):
    name: str = Field(description="Model name; also the bundle and MQTT topic name.")
    task: TaskName = Field(description="A task of edge_runtime.contract.TASKS.")
    family: str = Field(description="Registry name, e.g. 'tcn' or 'dense_ae'.")
    model: dict[str, Any] = Field(default_factory=dict, description="Family keyword arguments.")
    data: DataConfig = Field(default_factory=DataConfig)
    window: WindowConfig = Field(default_factory=WindowConfig)
    horizon: int = Field(default=6, gt=0, description="Forecast steps H.")
    targets: list[str] = Field(default_factory=list, description="Forecast targets; default all.")
    split: SplitConfig = Field(default_factory=SplitConfig)
    fit: FitConfig = Field(default_factory=FitConfig)
    threshold: ThresholdConfig = Field(default_factory=ThresholdConfig)
    image: ImageDataConfig | None = Field(default=None, description="Image tasks: the data.")
    output_dir: Path = Field(default=Path("artifacts"), description="Where runs are written.")


    @model_validator(mode="after")
    def _section_for_task(self) -> TrainConfig:
        if task_spec(self.task).inputs == "image" and self.image is None:
            raise ValueError(f"task {self.task!r} needs an 'image' section (root: a folder)")
        return self


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate; errors name the file and the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid training config\n{exc}") from exc
