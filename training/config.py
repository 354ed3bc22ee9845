"""Training configuration (YAML), validated strictly: a typo is an error naming the field."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from edge_runtime.bundle import CalibrationSpec, PidSpec, ShieldSpec
from edge_runtime.contract import Strict, TaskName, task_spec
from edge_runtime.validation import ConfigError, did_you_mean, read_yaml, validate
from training.batch_config import BatchColumns, check_batch_config
from training.tune_config import TuneConfig


class SimulatorSource(Strict):
    steps: int = Field(default=6000, gt=0, description="Samples to simulate.")
    seed: int = Field(default=0, description="Random seed of the plant's disturbances.")


# what historians write where a value is missing or bad (PI, Aspen IP.21, Excel exports)
BAD_VALUES = ("", "NaN", "nan", "NULL", "null", "#N/A", "N/A", "Bad Input", "Bad",
              "I/O Timeout", "Shutdown", "Comm Fail", "Scan Off", "No Data")


class DataConfig(Strict):
    source: Literal["simulator", "historian"] = Field(
        default="simulator", description="Built-in plant simulator, or a historian export."
    )
    path: Path | None = Field(default=None, description="CSV or Parquet export (historian).")
    timestamp_column: str = Field(default="timestamp", description="Column with timestamps.")
    tags: list[str] | None = Field(default=None, description="Tag columns; default: all.")
    units: dict[str, str] = Field(default_factory=dict, description="Unit per tag.")
    timestamp_format: str = Field(
        default="ISO8601", description="How timestamps are written: 'ISO8601' (default; "
        "anything else is an error, never a guess), 'dayfirst' (01.02.2026 = 1 February), "
        "'monthfirst' (01/02/2026 = 2 January), or a strftime format such as "
        "'%d.%m.%Y %H:%M:%S'.")
    timezone: str | None = Field(
        default=None, description="IANA zone (e.g. 'Europe/Berlin') of timestamps written "
        "without an offset; default: UTC, and the data-quality report says it was assumed. "
        "Stamps with an offset or 'Z' keep theirs.")
    sep: str = Field(default=",", min_length=1, description="CSV column separator (';', '\\t').")
    decimal: str = Field(default=".", min_length=1, max_length=1,
                         description="CSV decimal mark (',' for decimal-comma exports).")
    bad_values: list[str] = Field(
        default_factory=lambda: list(BAD_VALUES), description="Cell texts that mean 'no "
        "value' (counted per tag in the data-quality report, then treated as missing).")
    strict: bool = Field(default=False, description="Data-quality warnings are errors "
                                                     "(also `procedge train --strict`).")
    simulator: SimulatorSource = Field(default_factory=SimulatorSource)
    batch: BatchColumns | None = Field(default=None, description="Historian batches (task "
                                       "soft_sensor): batch id and phase columns, targets.")

    @model_validator(mode="after")
    def _path_for_historian(self) -> DataConfig:
        if self.source == "historian" and self.path is None:
            raise ValueError("data.path is required when data.source is 'historian'")
        return self

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("path", mode="before")
    @classmethod
    def _expand(cls, value):
        return None if value is None else Path(os.path.expanduser(os.path.expandvars(value)))


class WindowConfig(Strict):
    period_s: float = Field(default=5.0, gt=0, description="Grid period the data is aligned to.")
    length: int = Field(default=24, gt=1, description="Window length L in grid steps.")
    stride: int = Field(default=1, gt=0, description="Steps between windows at the edge.")
    max_gap_s: float = Field(default=15.0, ge=0, description="Longest hold before data is a gap.")


class SplitConfig(Strict):
    """Chronological split: train, then validation, then test; never shuffled across.
    Soft sensors split their labels, by time (the same fractions) or by group
    (``by: group``: whole groups — batches, campaigns, grades — held out, GroupKFold)."""

    train: float = Field(default=0.7, gt=0, lt=1)
    val: float = Field(default=0.15, gt=0, lt=1)
    by: Literal["time", "group"] = Field(
        default="time", description="soft_sensor: 'time' (labels in time order, the fractions "
        "above) or 'group' (GroupKFold over `group_column`: one fold is the test set, the "
        "next the validation set, the rest train).")
    group_column: str | None = Field(
        default=None, description="by: group — the export column holding each label's group "
        "id (a number: batch, campaign, grade).")
    folds: int = Field(default=5, ge=3, description="by: group — GroupKFold folds (at most "
                       "the number of groups; folds = groups is leave-one-group-out).")
    test_fold: int = Field(default=-1, description="by: group — the fold held out for test "
                           "(-1: the last); the fold before it is the validation set.")

    @model_validator(mode="after")
    def _group_column_for_groups(self) -> SplitConfig:
        if self.by == "group" and not self.group_column:
            raise ValueError("split.group_column is required when split.by is 'group'")
        if not -self.folds <= self.test_fold < self.folds:
            raise ValueError(f"split.test_fold {self.test_fold} is not a fold of {self.folds}")
        return self


class SoftSensorConfig(Strict):
    """Task soft_sensor: a sparse lab or analyzer value estimated from process tags."""

    target: str = Field(description="Lab/analyzer value to estimate: an export column holding "
                        "values only at the rows of its samples (empty elsewhere), never an "
                        "input; with the simulator, 'conversion' (a lab-like quality value).")
    unit: str = Field(default="", description="Unit of the target (default: data.units).")
    kind: Literal["regression", "classification"] = Field(
        default="regression", description="regression: one value per window (MSE); "
        "classification: one class of `classes` per lab sample (softmax, cross-entropy), "
        "from a historian export whose target column holds class names.")
    classes: list[str] | None = Field(
        default=None, description="classification: the class names, in the order of the "
        "model's outputs (e.g. [on-spec, off-spec]); a label outside them is an error.")
    dead_time_s: float = Field(default=0.0, ge=0, description="A value stamped t describes "
                               "the process at t - dead_time_s (sampling to result); at most "
                               "the window's span.")
    missing: Literal["hold", "mask", "interpolate"] = Field(
        default="hold", description="Inputs silent longer than window.max_gap_s (a gap): "
        "'hold' drops the window, 'mask' sets the missing values to the training mean, "
        "'interpolate' fills each tag linearly, its last value held forwards; the edge does "
        "the same. A tag with no value in a window drops it in every mode.")
    lab_every_s: float = Field(default=600.0, gt=0, description="Simulator only: the lab "
                               "samples every this many seconds (with jitter).")
    lab_noise: float = Field(default=0.3, ge=0, description="Simulator only: lab error "
                             "(standard deviation, in the target's unit).")
    early_percent: list[float] = Field(
        default_factory=lambda: [10.0, 20.0, 30.0], min_length=1, description="With "
        "data.batch: each batch gives one sample per share K (%): its first K % (of the "
        "nominal batch), so the batch-end value is estimated as the batch runs.")
    pls_components: int = Field(default=3, ge=1, description="Components of the PLS "
                                "reference (scikit-learn PLSRegression on flat windows).")

    @model_validator(mode="after")
    def _classes_for_kind(self) -> SoftSensorConfig:
        names = self.classes or []
        if self.kind == "classification" and (len(names) < 2 or len(set(names)) < len(names)):
            raise ValueError(f"soft_sensor.classes: classification needs two or more distinct "
                             f"class names, got {names}")
        if self.kind == "regression" and self.classes is not None:
            raise ValueError("soft_sensor.classes: only with soft_sensor.kind classification")
        return self


class ControlTrainConfig(Strict):
    """Task control: the environment a policy is trained on, the agent, and the shield and
    PID fallback every action passes through (in training and, from the bundle, at the edge)."""

    env: Literal["kinetics", "jacketed"] = Field(description="training.control.envs.make_env "
                                                 "name: the kinetics benchmark or the "
                                                 "jacketed reactor.")
    overrides: dict[str, Any] = Field(default_factory=dict, description="Keyword overrides "
                                      "of the environment (make_env's **overrides).")
    agent: dict[str, Any] = Field(default_factory=dict, description="The agent's config "
                                  "(DQNConfig or PPOConfig fields, checked strictly), over "
                                  "the agents' REACTOR_DEFAULTS for the environment.")
    steps: int = Field(default=50_000, gt=0, description="Environment steps to train for.")
    levels: int = Field(default=11, ge=2, description="DQN: discrete action levels, evenly "
                        "over [-1, 1].")
    eval_seeds: list[int] = Field(default_factory=lambda: [10_001, 10_002, 10_003],
                                  min_length=1, description="Held-apart episode seeds: "
                                  "the yield metrics and the held-out observations.")
    representative_seeds: list[int] = Field(
        default_factory=lambda: [20_001, 20_002], min_length=1,
        description="Episodes whose observations calibrate int8.")
    max_gap_s: float | None = Field(default=None, ge=0, description="At the edge a tag value "
                                    "older than this is stale (default half a period).")
    shield: ShieldSpec = Field(description="Clamp, rate limit, temperature guard, watchdog.")
    pid: PidSpec = Field(description="The fallback the guard hands the loop to.")


IMAGE_GENERATORS = ("dcgan", "image_cvae")  # generative families over images
CVAE_SAMPLINGS = ("prior", "posterior")  # image_cvae's latent draws (model.sampling)


def check_cvae_sampling(sampling: str) -> None:
    """``image_cvae``'s ``model.sampling``, checked without Keras (config and builder)."""
    if sampling not in CVAE_SAMPLINGS:
        raise ValueError(f"model.sampling must be one of {list(CVAE_SAMPLINGS)}, "
                         f"not {sampling!r}")


# image_cvae's samples: bare, or + a texture field (class-mean spectrum, or one tile's)
CVAE_TEXTURES = ("none", "spectrum", "exemplar")


def check_cvae_texture(texture: str) -> None:
    """``image_cvae``'s ``model.texture``, checked without Keras (config and builder)."""
    if texture not in CVAE_TEXTURES:
        raise ValueError(f"model.texture must be one of {list(CVAE_TEXTURES)}, "
                         f"not {texture!r}")


class GenerativeConfig(Strict):
    """Task generative: a conditional VAE or a WGAN-GP over tag windows (docs/generative.md).
    Training runs a fixed number of steps (``fit.epochs`` and early stopping do not apply);
    ``fit.seed`` seeds the weights, the batches and the noise."""

    condition_column: str | None = Field(
        default=None, description="Historian only: the export column holding each row's "
        "operating mode or fault class (numbers: class ids); a window's class is that of its "
        "rows (windows spanning two classes are dropped). None: one class, 'all'.")
    latent_dim: int = Field(default=8, gt=0, description="Size of the latent (noise) vector.")
    steps: int = Field(default=2000, gt=0, description="Optimizer steps (WGAN-GP: generator "
                       "steps, each after n_critic critic steps).")
    batch_size: int = Field(default=64, gt=1)
    learning_rate: float | None = Field(
        default=None, gt=0, description="Adam step; default 1e-3 (cvae) or 1e-4 with "
        "betas (0.0, 0.9) as in the WGAN-GP paper (wgan_gp).")
    beta: float = Field(default=1.0, gt=0, description="cvae: weight of the KL term.")
    n_critic: int = Field(default=5, gt=0, description="wgan_gp: critic steps per generator "
                          "step.")
    gp_weight: float = Field(default=10.0, ge=0, description="wgan_gp: gradient-penalty "
                             "weight lambda.")
    stride: int = Field(default=1, gt=0, description="Rows between training windows.")
    sample_hold: bool = Field(
        default=False, description="Windows: learn from the training windows which tags are "
        "sampled and held (an analyzer reporting every k-th step) and hold generated values "
        "of those tags alike (training/sample_hold.py).")
    classes: list[str] | None = Field(
        default=None, description="Images (an 'image' section, families dcgan and "
        "image_cvae): the class folders to learn, e.g. only the defects; default: all.")


MEDIAN_LOSSES = ("pinball", "mse")  # fit.median_loss: a quantile model's 0.5 level


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
    clip_norm: float | None = Field(
        default=None, gt=0, description="Clip each gradient to this L2 norm (Keras "
        "`clipnorm`): recurrent nets on few labels can blow up without it; null = off.")
    lr_decay: float | None = Field(
        default=None, gt=0, le=1, description="Multiply the learning rate by this after "
        "every epoch, from epoch 2 on (0.5 is the Informer repository's `lradj type1`); "
        "null = the default, divide it by 10 when the validation loss stops improving.")
    median_loss: Literal[MEDIAN_LOSSES] = Field(
        default="pinball", description="Quantile forecasters (model.quantiles): the loss of "
        "the 0.5 level. pinball: a median; mse: the squared error, so that head forecasts "
        "the mean (what MSE scores); the other levels keep the pinball loss.")


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


class DriftTrainConfig(Strict):
    """Reference statistics of the edge drift monitor, fitted on the training rows (input PSI)
    and the validation split (forecast residual CUSUM); docs/edge_daemon.md, "Drift"."""

    enabled: bool = Field(default=True, description="Store drift statistics in the run.")
    window: int = Field(default=720, gt=1, description="Rows (grid steps) of the edge's "
                        "rolling PSI window the limits are derived for.")
    bins: int = Field(default=10, ge=2, le=100, description="Quantile bins per tag (10: deciles).")
    margin: float = Field(default=1.5, gt=0, description="PSI limit = margin x the largest "
                          "PSI of a training sub-window (at least `floor`).")
    floor: float = Field(default=0.25, gt=0, description="Smallest PSI limit (the "
                         "conventional 'significant shift').")
    residual_k: float = Field(default=0.5, ge=0, description="CUSUM allowance, in residual "
                              "standard deviations (half the bias to detect).")
    residual_margin: float = Field(default=1.5, gt=0, description="CUSUM limit = margin x "
                                   "its largest value on the validation residuals.")
    residual_floor: float = Field(default=5.0, gt=0, description="Smallest CUSUM limit.")


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


class ParticleTrainConfig(Strict):
    """Task particle_size: micrographs drawn by the generator (training.images.micrographs,
    the test bed with exact ground truth) at the calibration of the plant's microscope."""

    um_per_px: float = Field(gt=0, description="Calibration, µm per pixel (scale bar).")
    size: int = Field(default=128, ge=32, description="Square frame, pixels (a multiple of "
                      "2**levels of the U-Net); the edge rejects frames of another size.")
    train_images: int = Field(default=200, gt=0, description="Generated training images.")
    val_images: int = Field(default=40, gt=0, description="Generated held-out images.")
    seed: int = Field(default=0, description="Training images from (seed, i); held-out ones "
                      "from (seed + 1, i).")
    flatten_px: int = Field(default=31, ge=3, description="Illumination-flattening window.")
    boundary_weight: float = Field(default=3.0, gt=0, description="Loss weight of boundary "
                                   "pixels (they keep touching particles apart).")
    core_px: float = Field(default=3.0, ge=0, le=16, description="0: the segmenter predicts "
                           "background, interior, boundary. > 0: also a core class (interior "
                           "pixels this far from the particle's edge), and each core seeds one "
                           "particle at the edge, which splits touching particles whose "
                           "boundary the model misses.")
    generator: dict[str, Any] = Field(
        default_factory=dict, description="Further options of the micrograph generator "
        "(training.images.micrographs.MicrographConfig: distribution, d50_um, sigma, count, "
        "max_aspect, touch, illumination, blur, noise); checked strictly.")

    @model_validator(mode="after")
    def _generator(self) -> ParticleTrainConfig:
        from training.images.micrographs import MicrographConfig

        for key in ("size", "um_per_px"):
            if key in self.generator:
                raise ValueError(f"particles.generator.{key}: set particles.{key} instead")
        MicrographConfig.model_validate(self.generator)
        return self


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
    calibration: CalibrationSpec = Field(
        default_factory=CalibrationSpec, description="Anomaly: `{mode: commission, samples: "
        "N, fit: scaler|limit|both}` ships a bundle whose gateway fits the scaler and/or the "
        "limit on the plant's first N samples (docs/anomaly.md, Commissioning).")
    drift: DriftTrainConfig = Field(default_factory=DriftTrainConfig,
                                    description="Series tasks: the edge drift monitor's "
                                                "reference statistics.")
    image: ImageDataConfig | None = Field(default=None, description="Image tasks: the data.")
    particles: ParticleTrainConfig | None = Field(default=None, description="Task particle_size.")
    soft_sensor: SoftSensorConfig | None = Field(
        default=None, description="Task soft_sensor: target, dead time, lab options.")
    control: ControlTrainConfig | None = Field(
        default=None, description="Task control: environment, agent, steps, shield, PID.")
    generative: GenerativeConfig | None = Field(
        default=None, description="Task generative: condition column, latent size, steps.")
    output_dir: Path = Field(default=Path("artifacts"), description="Where runs are written.")
    tune: TuneConfig | None = Field(default=None, description="`procedge tune`: the search "
                                    "space and algorithm (ignored by `procedge train`).")


    @model_validator(mode="after")
    def _section_for_task(self) -> TrainConfig:
        if (self.task == "particle_size") != (self.particles is not None):
            raise ValueError("a 'particles' section (um_per_px: the calibration) goes with "
                             f"task 'particle_size' (and only with it); task is {self.task!r}")
        if (task_spec(self.task).inputs == "image" and self.image is None
                and self.task != "particle_size"):
            raise ValueError(f"task {self.task!r} needs an 'image' section (root: a folder)")
        if (self.task == "soft_sensor") != (self.soft_sensor is not None):
            raise ValueError(f"a 'soft_sensor' section goes with task 'soft_sensor' (and only "
                             f"with it); task is {self.task!r}")
        if (self.task == "control") != (self.control is not None):
            raise ValueError(f"a 'control' section goes with task 'control' (and only with "
                             f"it); task is {self.task!r}")
        if (self.task == "generative") != (self.generative is not None):
            raise ValueError(f"a 'generative' section goes with task 'generative' (and only "
                             f"with it); task is {self.task!r}")
        if self.split.by == "group" and self.task != "soft_sensor":
            raise ValueError("split.by 'group' is for task 'soft_sensor' (labels in groups)")
        if self.soft_sensor is not None:
            span = self.window.length * self.window.period_s
            if self.soft_sensor.dead_time_s > span:
                raise ValueError(
                    f"soft_sensor.dead_time_s {self.soft_sensor.dead_time_s:g} s is longer "
                    f"than the window ({self.window.length} x {self.window.period_s:g} s = "
                    f"{span:g} s): lengthen window.length, or check the dead time's unit "
                    "(seconds)")
        return self

    @model_validator(mode="after")
    def _commissionable(self) -> TrainConfig:
        """The checks of :func:`edge_runtime.bundle.check_commissionable`, before training."""
        cal = self.calibration
        if not cal.commissioning:
            return self
        if self.task != "anomaly":
            raise ValueError(f"calibration.mode commission is for task anomaly, not {self.task!r}")
        if cal.samples <= self.window.length:
            raise ValueError(f"calibration.samples {cal.samples} must exceed window.length "
                             f"{self.window.length}")
        return self


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate; errors (:class:`ConfigError`) name the file and the field. A
    relative ``data.path`` is relative to the config file's folder, as in the edge config."""
    path = Path(path)
    config = validate(TrainConfig, read_yaml(path, "training config"), path, "training config")
    if config.data.path is not None:
        config.data.path = Path(os.path.expanduser(os.path.expandvars(config.data.path)))
        if not config.data.path.is_absolute():
            config.data.path = (path.parent / config.data.path).resolve()
    if config.data.batch is not None and config.data.batch.targets is not None:
        config.data.batch.targets = (path.parent / config.data.batch.targets).resolve()
    return config


def check_train_config(config: TrainConfig, path: str | Path) -> None:
    """What the schema cannot see, checked before TensorFlow loads and before a run directory
    exists: the family (its name and task) and, for series tasks, the data's columns
    (``data.timestamp_column``, ``data.tags``, ``targets``) read from the export's header or
    the simulator's tag list. Raises :class:`ConfigError` naming ``path`` and the field."""
    from training.registry import declared_families

    def fail(field: str, message: str) -> None:
        raise ConfigError(f"{path}: invalid training config\n  {field}: {message}")

    known = declared_families()
    for_task = ", ".join(sorted(n for n, tasks in known.items() if config.task in tasks))
    if config.family not in known:
        fail("family", f"unknown model family {config.family!r}"
             f"{did_you_mean(config.family, known)} (known for {config.task}: {for_task})")
    if config.task not in known[config.family]:
        fail("family", f"{config.family!r} is a {' and '.join(sorted(known[config.family]))} "
             f"family, not {config.task} (known for {config.task}: {for_task})")
    check_family_model(config, fail)
    if config.task == "generative" and check_generative_input(config, fail):
        return  # an image generator: a folder, no data columns
    if config.task == "control":
        check_control_env(config.control, fail)
        return  # an environment, no data columns
    if task_spec(config.task).inputs == "image":
        return  # a folder, no data columns
    data = config.data
    if data.source == "simulator":
        from training.simulator import TAGS

        where, columns, timestamp = "the simulator", [name for name, _ in TAGS], None
    else:
        where, columns = str(data.path), export_columns(data.path, lambda m: fail("data.path", m))
        timestamp = data.timestamp_column
        if timestamp not in columns:
            fail("data.timestamp_column", f"no column {timestamp!r} in {where}"
                 f"{did_you_mean(timestamp, columns)} (columns: {_listed(columns)})")
    if config.soft_sensor is not None:
        if data.source == "simulator":
            from training.simulator import LAB_TAG

            columns = [*columns, LAB_TAG[0]]
        if data.batch is not None and data.batch.targets is not None:  # a per-batch table
            columns = [*columns, config.soft_sensor.target]
        check_soft_sensor_columns(config, where, [c for c in columns if c != timestamp], fail)
        check_batch_config(config, columns, where, fail)
        columns = [c for c in columns
                   if c not in (config.soft_sensor.target, config.split.group_column)]
    if config.generative is not None and config.generative.condition_column is not None:
        check_condition_column(config, where, columns, fail)
        columns = [c for c in columns if c != config.generative.condition_column]
    available = [c for c in columns if c != timestamp]
    for field, names, among in (("data.tags", data.tags or [], available),
                                ("targets", config.targets, data.tags or available)):
        for name in names:
            if name not in among:
                fail(field, f"{name!r} is not a {'column of' if among is available else 'tag in'}"
                     f" {where if among is available else 'data.tags'}"
                     f"{did_you_mean(name, among)} (there: {_listed(among)})")


def check_control_env(control: ControlTrainConfig, fail) -> None:
    """``control.overrides``: the environment is built with them (a few microseconds, no
    TensorFlow), so an unknown keyword or a bad value is named before any training."""
    from training.control.envs import make_env

    try:
        make_env(control.env, **control.overrides)
    except (TypeError, ValueError) as exc:
        fail("control.overrides", f"the {control.env} environment refuses them: {exc}")


def check_family_model(config: TrainConfig, fail) -> None:
    """``model:`` keys checked without Keras (forecasters: ``norm``; Informer: the window
    distilling needs; TFT: head and size), so a network that cannot be built is refused
    before any data is read."""
    from training.channels import check_channels
    from training.covariates import check_covariates
    from training.images.backbone_config import check_transfer_model
    from training.informer_args import check_config_model
    from training.instance_norm import check_norm, default_norm
    from training.tft_args import check_config_model as check_tft_model

    try:
        if config.task == "forecast":
            check_norm(config.model.get("norm") or default_norm(config.family),
                       config.model.get("norm_affine", False))
            check_channels(config.model.get("channels", "joint"), config.model.get("static"))
        check_config_model(config.family, config.window.length, config.horizon, config.model)
        check_tft_model(config.family, config.model)
        check_covariates(config.family, config.model, config.targets)
    except ValueError as exc:
        fail("model", str(exc))
    try:
        check_transfer_model(config.family, config.model, config.image.trainer if config.image
                             else {})
    except ValueError as exc:  # "<field>: <message>"
        fail(*str(exc).split(": ", 1))


def check_soft_sensor_columns(config: TrainConfig, where: str, columns: list[str],
                              fail) -> None:
    """The target and the group column exist, and neither is a model input."""
    target, group = config.soft_sensor.target, config.split.group_column
    inputs = config.data.tags or []
    if target not in columns:
        fail("soft_sensor.target", f"no column {target!r} in {where}"
             f"{did_you_mean(target, columns)} (there: {_listed(columns)})")
    if target in inputs:
        fail("soft_sensor.target", f"{target!r} is also an input (data.tags): a soft sensor "
             "estimates a value it does not read; remove it from data.tags")
    if config.soft_sensor.kind == "classification":
        from training.lab_classes import check_classes

        check_classes(config, fail)
    if config.split.by != "group":
        return
    if config.data.source == "simulator":
        fail("split.group_column", "the simulator has no group column: split by time, or "
             "export the data with a group column (data.source: historian)")
    if group not in columns:
        fail("split.group_column", f"no column {group!r} in {where}"
             f"{did_you_mean(group, columns)} (there: {_listed(columns)})")
    if group == target or group in inputs:
        fail("split.group_column", f"{group!r} is the target or an input (data.tags); the "
             "group id is neither")


def check_generative_input(config: TrainConfig, fail) -> bool:
    """Image generators (``IMAGE_GENERATORS``) go with an ``image`` section, window
    generators without one; True for an image generator."""
    images = config.family in IMAGE_GENERATORS
    if images and config.image is None:
        fail("image", f"family {config.family!r} generates images: give an 'image' section "
             "(root: a folder of <class>/Imgs)")
    if not images and config.image is not None:
        fail("image", f"family {config.family!r} generates tag windows; an 'image' section "
             f"needs an image family ({', '.join(IMAGE_GENERATORS)})")
    if not images and config.generative.classes is not None:
        fail("generative.classes", "only for image families (windows: condition_column)")
    if images and config.generative.condition_column is not None:
        fail("generative.condition_column", "not for images: the classes are the folders "
             "(generative.classes picks some)")
    if config.family == "image_cvae":
        try:
            check_cvae_sampling(config.model.get("sampling", CVAE_SAMPLINGS[0]))
            check_cvae_texture(config.model.get("texture", CVAE_TEXTURES[0]))
        except ValueError as exc:
            fail("model", str(exc))
    return images


def check_condition_column(config: TrainConfig, where: str, columns: list[str], fail) -> None:
    """The generative condition column exists in the export and is not a model input."""
    column = config.generative.condition_column
    if config.data.source == "simulator":
        fail("generative.condition_column", "the simulator has no mode or class column: "
             "leave it unset (one class), or export the data with one (data.source: historian)")
    if column not in columns:
        fail("generative.condition_column", f"no column {column!r} in {where}"
             f"{did_you_mean(column, columns)} (there: {_listed(columns)})")
    if column in (config.data.tags or []):
        fail("generative.condition_column", f"{column!r} is also a tag (data.tags): the "
             "condition is not generated; remove it from data.tags")


def _listed(names: list[str], most: int = 30) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def export_columns(path: Path, fail) -> list[str]:
    """Column names of a historian export from its header only (CSV: delimiter sniffed among
    , ; tab |; Parquet: the schema)."""
    if not path.is_file():
        fail(f"{path}: no such file")
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = handle.readline()
        try:
            dialect = csv.Sniffer().sniff(header, delimiters=",;\t|")
        except csv.Error:
            dialect = csv.excel
        return next(csv.reader([header.rstrip("\r\n")], dialect), [])
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        fail(f"{path}: cannot read its header: {exc}")
        raise  # (fail raises)
