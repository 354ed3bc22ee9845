"""Model bundle format v1: the one contract between the workstation and the gateway.

A bundle is a directory (or a ``.zip`` of one) holding ``model.tflite``, ``manifest.json`` and
any reports. The manifest says everything the edge needs to feed the model exactly as training
did (tags, period, window, scaler) and lists a SHA-256 for every other file; the manifest's own
hash covers its content, so a bundle that was corrupted or edited is refused with the file named.
An optional Ed25519 signature of ``manifest.json`` (``manifest.sig``) proves who built it: a
gateway configured with a public key refuses unsigned bundles and bundles signed by anyone else.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import tempfile
import zipfile
import zlib
from datetime import UTC, datetime
from pathlib import Path, PureWindowsPath
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from edge_runtime.batch_tracker import BatchSpec
from edge_runtime.calendar import check_known_future
from edge_runtime.contract import QuantMode, Strict, TaskName, image_task, task_spec

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL_FILE = "model.tflite"
SIGNATURE = "manifest.sig"
# a zip bundle is unpacked within these caps (the zip's declared sizes are checked first, and
# the bytes counted while unpacking: headers can lie); larger ones are refused
MAX_BUNDLE_BYTES = 256 << 20  # all of its files, uncompressed
MAX_MEMBER_BYTES = 128 << 20  # any one file, uncompressed
MAX_MANIFEST_BYTES = 1 << 20
MAX_MEMBERS = 1000
TEMP_PREFIX = "procedge-bundle-"  # the temporary folder of an unpacked zip bundle

Task = TaskName  # the task names live in edge_runtime.contract.TASKS


class BundleError(RuntimeError):
    """A bundle that must not be loaded; the message names the offending file."""



class TagSpec(Strict):
    name: str = Field(description="Tag name as published on the raw topic.")
    unit: str = Field(default="", description="Engineering unit, e.g. 'degC'.")


class InputSpec(Strict):
    tags: list[TagSpec] = Field(description="Ordered model inputs (column order of the window).")
    period_s: float = Field(gt=0, description="Sampling period of the aligned grid, seconds.")
    window: int = Field(gt=0, description="Window length L in grid steps.")
    stride: int = Field(default=1, gt=0, description="Run the model every `stride` grid steps.")
    max_gap_s: float = Field(ge=0, description="Longest hold of a last value; beyond, invalid.")
    known_future: list[str] = Field(
        default_factory=list, description="Calendar features the model takes for the past "
        "and the forecast steps, computed from the window's time at the edge "
        "(edge_runtime/calendar.py); empty: the window alone.")
    static: str = Field(default="", description="The tag that is the model's static "
                        "covariate (constant per series); empty: none.")

    @property
    def tag_names(self) -> list[str]:
        return [t.name for t in self.tags]

    @field_validator("known_future")
    @classmethod
    def _calendar(cls, names: list[str]) -> list[str]:
        return check_known_future(names, "input.known_future")

    @model_validator(mode="after")
    def _static_is_a_tag(self) -> InputSpec:
        if self.static and self.static not in self.tag_names:
            raise ValueError(f"input.static {self.static!r} is not one of the input tags "
                             f"{self.tag_names}")
        return self


class ScalerSpec(Strict):
    """Per-tag standardisation fitted on training rows only."""

    mean: list[float]
    scale: list[float]


class OutputSpec(Strict):
    horizon: int = Field(default=0, ge=0, description="Forecast steps H (0 for non-forecasts).")
    targets: list[str] = Field(default_factory=list, description="Forecast target tags.")
    quantiles: list[float] = Field(
        default_factory=list, description="Quantile levels of the output's last axis, "
        "ascending and holding 0.5 (e.g. [0.1, 0.5, 0.9]): the model outputs (N, H, T, Q). "
        "Empty: a point forecast (N, H, T).")
    conformal: list[list[list[float]]] = Field(
        default_factory=list, description="Split-conformal offsets (H, T, Q) in scaled units, "
        "fitted on validation windows and added to the quantiles at the edge (see "
        "edge_runtime/conformal.py); empty: the quantiles as the model gives them.")

    @model_validator(mode="after")
    def _check_quantiles(self) -> OutputSpec:
        check_quantile_levels(self.quantiles)
        shape = np.shape(self.conformal)
        expected = (self.horizon, len(self.targets), len(self.quantiles))
        if self.conformal and shape != expected:
            raise ValueError(f"output.conformal has shape {shape}, expected (horizon, targets, "
                             f"quantiles) = {expected}")
        return self

    @property
    def median_index(self) -> int | None:
        """Index of P50 on the quantile axis (None for a point forecast)."""
        return self.quantiles.index(0.5) if self.quantiles else None


def check_quantile_levels(levels: list[float]) -> list[float]:
    """Empty, or ascending levels in (0, 1) that include the median 0.5 (the point forecast
    every metric and the parity gate use)."""
    levels = [float(q) for q in levels]
    if not levels:
        return levels
    if any(not 0.0 < q < 1.0 for q in levels) or levels != sorted(set(levels)):
        raise ValueError(f"quantiles must be distinct, ascending, in (0, 1): {levels}")
    if 0.5 not in levels:
        raise ValueError(f"quantiles must include the median 0.5: {levels}")
    return levels


class ThresholdSpec(Strict):
    """Anomaly alarm limits on the reconstruction score, calibrated on normal data."""

    raise_at: float = Field(description="Score at or above which a window is anomalous.")
    clear_at: float = Field(description="Score below which an active alarm clears (deadband).")
    on_delay: int = Field(default=1, ge=1, description="Consecutive anomalous windows to raise.")
    off_delay: int = Field(default=1, ge=1, description="Consecutive normal windows to clear.")
    rule: str = Field(default="", description="How the limit was calibrated.")
    ewma_alpha: float = Field(default=1.0, gt=0, le=1,
                              description="EWMA weight of the newest score (1 = no smoothing).")
    vote_k: int = Field(default=1, ge=1, description="k of the last n scores must pass a limit.")
    vote_n: int = Field(default=1, ge=1, description="n of the k-of-n vote (1 = no vote).")
    score: Literal["reconstruction", "elbo"] = Field(
        default="reconstruction",
        description="Window score: mean squared reconstruction error, or (VAE with a KL "
                    "output) negative ELBO = that error + the KL output.")
    # how raise_at was calibrated, in numbers (None in bundles that predate them): what a
    # commissioning calibration at the edge needs to apply the same rule to the plant's scores
    method: Literal["quantile", "coverage", "kde"] | None = Field(
        default=None, description="Rule of the level point: empirical quantile, rank "
                                  "level·(n+1), or Gaussian-KDE quantile.")
    level: float | None = Field(default=None, gt=0, lt=1,
                                description="Level of the filtered normal scores' level point.")
    margin: float | None = Field(default=None, gt=0, description="raise_at = margin × point.")
    clear_ratio: float | None = Field(default=None, gt=0, le=1,
                                      description="clear_at = clear_ratio × raise_at.")


class CalibrationSpec(Strict):
    """Commissioning calibration at the edge (docs/anomaly.md, "Commissioning"): the daemon
    fits the scaler and/or the alarm limit on the first ``samples`` grid rows of *this* plant
    before it raises any alarm. ``mode: none`` (or no section): the bundle's own are used."""

    mode: Literal["none", "commission"] = Field(
        default="none", description="commission: fit on the plant's first samples at the edge.")
    samples: int = Field(default=0, ge=0, description="Grid rows (every tag valid) to collect; "
                         "at least the window length plus one.")
    fit: Literal["scaler", "limit", "both"] = Field(
        default="both", description="What the commissioning fits: the per-tag scaler, the "
                                    "alarm limit (same rule as training), or both.")

    @model_validator(mode="after")
    def _enough_samples(self) -> CalibrationSpec:
        if self.mode == "commission" and self.samples < 2:
            raise ValueError("calibration.samples must be given (>= 2) for mode commission")
        return self

    @property
    def commissioning(self) -> bool:
        return self.mode == "commission"


class SoftSensorSpec(Strict):
    """What the edge needs to turn a soft sensor's output into engineering units and to match
    lab values against its estimates (task ``soft_sensor``)."""

    target: str = Field(description="The estimated lab/analyzer tag (never a model input).")
    unit: str = Field(default="", description="Engineering unit of the target.")
    kind: Literal["regression", "classification"] = Field(
        default="regression", description="regression: one value per window; classification: "
        "class probabilities per window (softmax), in the order of `classes`.")
    classes: list[str] = Field(default_factory=list, description="classification: the class "
                               "names of the model's outputs, in order.")
    missing: Literal["hold", "mask", "interpolate"] = Field(
        default="hold", description="A window with a gap: dropped (hold), its missing values "
        "set to the training mean (mask), or interpolated per tag (interpolate), as in "
        "training (edge_runtime.soft_sensing.fill_gaps).")
    dead_time_s: float = Field(ge=0, description="A lab value stamped t describes the process "
                               "at t - dead_time_s: it is matched with the estimate of the "
                               "window ending there.")
    mean: float = Field(description="Target mean of the training labels (the model's output "
                        "is (value - mean) / scale).")
    scale: float = Field(gt=0, description="Target standard deviation of the training labels.")
    batch: BatchSpec | None = Field(default=None, description="A batch-end model "
                                    "(edge_runtime.batch_tracker): batches and early windows.")

    def to_units(self, scaled: np.ndarray) -> np.ndarray:
        """Model outputs → engineering units."""
        return np.asarray(scaled, dtype=np.float64) * self.scale + self.mean


class ObservationTagSpec(Strict):
    """One observation of a control policy: ``(measured value - center) / scale``, in the
    order of ``control.observation`` (the environment's ``observation_tags``)."""

    name: str = Field(description="Tag name as published on the raw topic.")
    unit: str = Field(default="", description="Engineering unit.")
    center: float = Field(description="Subtracted from the measured value.")
    scale: float = Field(gt=0, description="Divides (value - center).")


class ActionSpecModel(Strict):
    """The manipulated variable: the policy's action a in [-1, 1] is the set-point
    ``low + (a + 1) / 2 · (high - low)`` (engineering units)."""

    name: str = Field(description="Set-point tag, e.g. 'T_setpoint' or 'T_jacket_in_sp'.")
    unit: str = Field(default="", description="Engineering unit of the set-point.")
    low: float = Field(description="Set-point at action -1.")
    high: float = Field(description="Set-point at action +1.")
    max_rate: float | None = Field(default=None, gt=0, description="Largest change per "
                                   "control period the plant accepts (None: any).")

    @model_validator(mode="after")
    def _range(self) -> ActionSpecModel:
        if not self.low < self.high:
            raise ValueError(f"action.low {self.low} must be below action.high {self.high}")
        return self

    def to_setpoint(self, action: float) -> float:
        return self.low + (float(action) + 1.0) / 2.0 * (self.high - self.low)

    def to_action(self, setpoint: float) -> float:
        return 2.0 * (float(setpoint) - self.low) / (self.high - self.low) - 1.0


class GuardSpec(Strict):
    """The shield's temperature guard: above ``trip`` the PID fallback takes over, below
    ``reset`` the policy gets the loop back."""

    tag: str = Field(description="The guarded tag (an observation tag, e.g. 'T').")
    trip: float = Field(description="Above this the policy is overridden (engineering units).")
    reset: float = Field(description="Below this the policy drives again (< trip).")


class WatchdogSpec(Strict):
    """Inputs stale or NaN for more than ``stale_periods`` control periods: alarm, and hold
    the last set-point (``hold``) or hand over to the PID fallback (``pid``)."""

    stale_periods: int = Field(default=3, ge=1, description="Periods without valid input "
                               "tolerated before the watchdog alarm.")
    on_stale: Literal["hold", "pid"] = Field(default="hold", description="What drives the "
                                             "set-point once the watchdog fired.")


class ShieldSpec(Strict):
    """Limits every action passes through (edge_runtime/shield.py), engineering units."""

    low: float = Field(description="Lowest set-point the shield lets through.")
    high: float = Field(description="Highest set-point the shield lets through.")
    max_rate: float | None = Field(default=None, gt=0, description="Largest set-point "
                                   "change per period (None: the action's max_rate).")
    guard: GuardSpec
    watchdog: WatchdogSpec = Field(default_factory=WatchdogSpec)

    @model_validator(mode="after")
    def _consistent(self) -> ShieldSpec:
        if not self.low < self.high:
            raise ValueError(f"shield.low {self.low} must be below shield.high {self.high}")
        if not self.guard.reset < self.guard.trip:
            raise ValueError(f"shield.guard.reset {self.guard.reset} must be below "
                             f"shield.guard.trip {self.guard.trip} (hysteresis)")
        return self


class PidSpec(Strict):
    """The PID fallback (edge_runtime/pid.py) the shield hands the loop to: it holds the
    guard tag at ``setpoint`` by moving the action's set-point."""

    kp: float = Field(description="Gain, set-point units per guard-tag unit: positive when "
                      "a higher set-point raises the guard tag (too hot: the set-point goes "
                      "down); negative for a reverse-acting loop.")
    ti_s: float = Field(gt=0, description="Integral time, s (inf: none).")
    td_s: float = Field(default=0.0, ge=0, description="Derivative time, s.")
    setpoint: float = Field(description="Guard-tag value the fallback holds.")


class ControlSpec(Strict):
    """Task ``control``: what the gateway needs to rebuild the policy's observation from tag
    values, turn its output into a set-point, and shield it (docs/control_edge.md)."""

    observation: list[ObservationTagSpec] = Field(min_length=1, description="In order.")
    action: ActionSpecModel
    levels: list[float] = Field(default_factory=list, description="Discrete (DQN) policy: "
                                "the action in [-1, 1] of each output (argmax picks one); "
                                "empty: the output is the action itself (PPO).")
    shield: ShieldSpec = Field(description="Required: a bundle without shield settings is "
                               "refused.")
    pid: PidSpec
    period_s: float = Field(gt=0, description="Control period, seconds.")

    @model_validator(mode="after")
    def _consistent(self) -> ControlSpec:
        names = [t.name for t in self.observation]
        if self.shield.guard.tag not in names:
            raise ValueError(f"shield.guard.tag {self.shield.guard.tag!r} is not an "
                             f"observation tag {names}")
        a, s = self.action, self.shield
        if s.low < a.low or s.high > a.high:
            raise ValueError(f"shield.low/high [{s.low}, {s.high}] must lie within "
                             f"action.low/high [{a.low}, {a.high}]")
        if any(not -1.0 <= v <= 1.0 for v in self.levels):
            raise ValueError(f"levels must lie in [-1, 1]: {self.levels}")
        return self

    @property
    def max_rate(self) -> float | None:
        return self.shield.max_rate if self.shield.max_rate is not None else self.action.max_rate

    def input_spec(self, max_gap_s: float | None = None) -> InputSpec:
        """The series input the gateway's pipeline builds: the observation tags, one row per
        control period; a value older than ``max_gap_s`` (default half a period) is stale."""
        gap = self.period_s / 2 if max_gap_s is None else max_gap_s
        return InputSpec(tags=[TagSpec(name=t.name, unit=t.unit) for t in self.observation],
                         period_s=self.period_s, window=1, stride=1, max_gap_s=gap)

    def scaler_spec(self) -> ScalerSpec:
        """``(value - center) / scale`` is exactly the standard scaler's transform."""
        return ScalerSpec(mean=[t.center for t in self.observation],
                          scale=[t.scale for t in self.observation])


class TagReference(Strict):
    """One input tag's reference distribution (training rows only) for the edge's drift
    monitor: decile bin edges, the share of training rows in each bin, and the PSI limit."""

    tag: str = Field(description="Tag name (as in input.tags).")
    edges: list[float] = Field(description="Inner bin edges, engineering units, ascending "
                               "(training quantiles; a value equal to an edge counts above it).")
    expected: list[float] = Field(description="Share of training rows in each bin "
                                  "(len(edges) + 1 values, summing to 1).")
    mean: float = Field(description="Mean of the training rows, engineering units.")
    std: float = Field(description="Standard deviation of the training rows.")
    psi_limit: float = Field(gt=0, description="PSI of a rolling window at or above which "
                             "the tag is drifting (the rule is DriftSpec.rule).")

    @model_validator(mode="after")
    def _bins(self) -> TagReference:
        if len(self.expected) != len(self.edges) + 1:
            raise ValueError(f"tag {self.tag!r}: {len(self.edges)} edges need "
                             f"{len(self.edges) + 1} expected shares, not {len(self.expected)}")
        if self.edges != sorted(self.edges):
            raise ValueError(f"tag {self.tag!r}: edges must be ascending")
        return self


class ResidualReference(Strict):
    """One forecast target's one-step residual (realised - forecast, scaled units) on the
    validation split, and the two-sided CUSUM (Page-Hinkley) limit calibrated on it."""

    target: str = Field(description="Forecast target tag.")
    mean: float = Field(description="Mean validation residual, scaled units.")
    std: float = Field(gt=0, description="Standard deviation of the validation residuals.")
    k: float = Field(ge=0, description="CUSUM allowance in standard deviations (half the "
                     "shift to detect).")
    limit: float = Field(gt=0, description="CUSUM statistic at or above which the forecast "
                         "residuals are drifting.")


class DriftSpec(Strict):
    """Reference statistics of the edge drift monitor (docs/edge_daemon.md, "Drift"). Optional
    in a bundle: one without it runs without a drift monitor."""

    window: int = Field(gt=1, description="Rows of the rolling window the PSI limits hold for.")
    rows: int = Field(ge=0, description="Reference rows the statistics were computed from.")
    rule: str = Field(default="", description="How the limits were derived.")
    tags: list[TagReference] = Field(default_factory=list, description="Per input tag.")
    residuals: list[ResidualReference] = Field(
        default_factory=list, description="Per forecast target (forecasts only).")


class ImageSpec(Strict):
    """How a camera frame becomes the model input (task "image"): grey or RGB, resized to a
    fixed size (stretched, or letterboxed to keep the aspect ratio), ``(pixel/255 - mean)/std``.
    """

    kind: Literal["classifier", "segmenter", "particles"] = Field(
        description="Class scores, a mask, or particle classes (background/interior/boundary).")
    height: int = Field(gt=0, description="Model input height, pixels.")
    width: int = Field(gt=0, description="Model input width, pixels.")
    channels: Literal[1, 3] = Field(default=1, description="1 = grey (mode L), 3 = RGB.")
    resize: Literal["stretch", "pad"] = Field(default="stretch",
                                              description="Stretch, or pad to keep the aspect.")
    mean: float = Field(default=0.0, description="Subtracted from pixel/255.")
    std: float = Field(default=1.0, gt=0, description="Divides (pixel/255 - mean).")
    class_names: list[str] = Field(default_factory=list, description="Classifier outputs.")
    ok_class: str = Field(default="", description="Defect-free class: p(NOK) = 1 - p(ok).")
    mask_threshold: float = Field(default=0.5, gt=0, lt=1, description="Segmenter: defect if >=.")
    um_per_px: float | None = Field(default=None, gt=0, description="Particles: the "
                                    "calibration, µm per pixel (sizes are reported in µm).")
    flatten_px: int = Field(default=0, ge=0, description="Particles: the illumination-"
                            "flattening window, pixels (edge_runtime.particles.preprocess).")

    @model_validator(mode="after")
    def _calibrated(self) -> ImageSpec:
        if self.kind == "particles" and (self.um_per_px is None or not self.flatten_px):
            raise ValueError("image.um_per_px and image.flatten_px: a particles model needs "
                             "its calibration (µm per pixel > 0) and flattening window")
        return self


class TrainingInfo(Strict):
    """How the fit went: its epoch budget and what ended it, the hardware and the pace. The
    budget is in epochs, so the same config trains the same epochs on any machine; only a
    wall-clock limit (``max_minutes``, an explicit option) can cut a run short, and then
    ``truncated`` is true."""

    epochs: int = Field(ge=0, description="Epochs run (a resumed run counts all of them).")
    epochs_budget: int = Field(gt=0, description="Epochs the config allowed.")
    best_epoch: int | None = Field(default=None, description="1-based epoch whose weights "
                                   "were kept (early stopping restores the best).")
    early_stopped: bool = Field(default=False, description="Stopped by early stopping.")
    truncated: bool = Field(default=False, description="Stopped by the wall-clock limit "
                            "before the epoch budget or early stopping ended the fit.")
    max_minutes: float | None = Field(default=None, description="The wall-clock limit, if set.")
    resumed_from: int = Field(default=0, ge=0, description="Epochs restored from a checkpoint "
                              "(procedge train --resume); 0 for an uninterrupted fit.")
    device: str = Field(default="", description="Where it trained, e.g. 'GPU:0 (NVIDIA …)'.")
    seconds_per_epoch: float = Field(default=0.0, ge=0, description="Mean wall time.")
    loss: str = Field(default="", description="A quantile forecaster's loss: 'pinball', or "
                      "'pinball, squared error at 0.5' (fit.median_loss: mse); '' for the "
                      "other models (their task's one loss).")
    env_steps: int | None = Field(default=None, gt=0, description="An agent trained by "
                                  "interaction (task control): its budget in environment "
                                  "steps, run in one pass (epochs 1 of 1).")
    optimizer_steps: int | None = Field(default=None, gt=0, description="A generator trained "
                                        "for a fixed number of optimizer steps (task "
                                        "generative), run in one pass (epochs 1 of 1).")

    def summary(self, name: str) -> str:
        """One line for the end of a command: epochs of the budget, what ended the fit (in
        capitals when the wall-clock limit cut it short), pace and device; an agent's
        environment steps or a generator's optimizer steps and time instead of epochs."""
        for steps, kind in ((self.env_steps, "environment"), (self.optimizer_steps, "training")):
            if steps is not None:
                return (f"{name}: {steps} {kind} steps (budget done), "
                        f"{self.seconds_per_epoch:.1f} s on {self.device}")
        end = (f"TRUNCATED by the wall-clock limit of {self.max_minutes:g} min: not fully "
               "trained" if self.truncated
               else "early stopping" if self.early_stopped else "budget done")
        best = f", best epoch {self.best_epoch}" if self.best_epoch else ""
        resumed = f", resumed after epoch {self.resumed_from}" if self.resumed_from else ""
        return (f"{name}: {self.epochs}/{self.epochs_budget} epochs ({end}){best}{resumed}, "
                f"{self.seconds_per_epoch:.2f} s/epoch on {self.device}")


class RunRecord(Strict):
    """What ``procedge train`` writes (``training.json`` in the run directory) and
    ``procedge convert`` reads: the manifest minus what conversion adds (the quantization, the
    batch, the edge metrics, the version, the file hashes)."""

    name: str = Field(description="Model name; also the bundle and MQTT topic name.")
    task: Task = Field(description="A task of edge_runtime.contract.TASKS.")
    family: str = Field(description="Model family from the training registry, e.g. 'dense_ae'.")
    input: InputSpec | None = Field(default=None, description="Series tasks only.")
    scaler: ScalerSpec | None = Field(default=None, description="Series tasks only.")
    image: ImageSpec | None = Field(default=None, description="Image tasks only.")
    output: OutputSpec = Field(default_factory=OutputSpec)
    thresholds: ThresholdSpec | None = None
    soft_sensor: SoftSensorSpec | None = Field(default=None, description="Task soft_sensor "
                                               "only: target, unit, dead time, target scale.")
    control: ControlSpec | None = Field(default=None, description="Task control only: "
                                        "observation, action, levels, shield, PID fallback.")
    training_data_sha256: str = Field(description="Fingerprint of the training rows.")
    data_quality: dict[str, Any] | None = Field(
        default=None, description="Series tasks: the data-quality report of the training "
        "data (rows, span, zone, out-of-order and duplicate timestamps, bad values, gaps and "
        "flat-lined tags per tag, warnings); None in runs and bundles that predate it.")
    metrics: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Held-out metrics per variant: {'keras': ..}, and "
        "in a manifest also {'training': .., 'edge': ..}.")
    training: TrainingInfo | None = Field(
        default=None, description="Epochs, truncation, device, pace; None in runs and "
        "bundles that predate it.")
    calibration: CalibrationSpec | None = Field(
        default=None, description="Commissioning calibration at the edge (anomaly); None: "
        "the bundle's own scaler and limits, as in bundles that predate it.")
    drift: DriftSpec | None = Field(
        default=None, description="Series tasks: reference statistics of the edge drift "
        "monitor; None in runs and bundles that predate it (they run without one).")

    @model_validator(mode="before")
    @classmethod
    def _legacy_task(cls, data: Any) -> Any:
        return migrate_task(data)

    @model_validator(mode="after")
    def _inputs_for_task(self):
        if task_spec(self.task).inputs == "image":
            if self.image is None:
                raise ValueError(f"task {self.task!r} needs an 'image' section")
            kind = task_spec(self.task).image_kind
            if self.image.kind != kind:
                raise ValueError(f"task {self.task!r} needs image.kind {kind!r}, "
                                 f"not {self.image.kind!r}")
        elif self.image is not None and not task_spec(self.task).ships:
            pass  # an image generator (task generative on a folder of images): never bundled
        elif self.input is None or self.scaler is None:
            raise ValueError(f"task {self.task!r} needs 'input' and 'scaler' sections")
        if self.calibration is not None and self.calibration.commissioning:
            check_commissionable(self)
        if (self.task == "soft_sensor") != (self.soft_sensor is not None):
            raise ValueError("a 'soft_sensor' section goes with task 'soft_sensor' (and only "
                             f"with it); task is {self.task!r}")
        if (self.task == "control") != (self.control is not None):
            raise ValueError("a 'control' section goes with task 'control' (and only with "
                             f"it); task is {self.task!r}")
        if self.control is not None:
            check_control(self)
        return self

    def save(self, run_dir: Path) -> Path:
        path = Path(run_dir) / RUN_RECORD
        path.write_text(self.model_dump_json(indent=2, exclude_none=True) + "\n")
        return path

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord:
        """Read and validate ``training.json``; an error names the file and the field."""
        path = Path(run_dir) / RUN_RECORD
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (is {run_dir} a run directory of "
                                    "`procedge train`?)")
        try:
            return cls.model_validate_json(path.read_text())
        except ValueError as exc:
            raise ValueError(f"{path}: invalid run record\n{exc}") from exc


RUN_RECORD = "training.json"


def check_commissionable(record: RunRecord) -> None:
    """A commissioning calibration needs an anomaly model, enough samples for a window, and
    (to fit the limit) the limit's rule in numbers."""
    cal = record.calibration
    if record.task != "anomaly":
        raise ValueError(f"calibration.mode commission is for task anomaly, not {record.task!r}")
    if cal.samples <= record.input.window:
        raise ValueError(f"calibration.samples {cal.samples} must exceed the window length "
                         f"{record.input.window} (the limit is fitted on the windows of them)")
    t = record.thresholds
    if cal.fit in ("limit", "both") and (
            t is None or None in (t.method, t.level, t.margin, t.clear_ratio)):
        raise ValueError("calibration.fit limit needs thresholds.method, level, margin and "
                         "clear_ratio (retrain: the run predates them)")


def check_control(record: RunRecord) -> None:
    """The gateway rebuilds the observation through the series pipeline: one row (window 1)
    of the observation tags, in order, scaled by exactly their center and scale, every
    control period."""
    c, inp, sc = record.control, record.input, record.scaler
    names = [t.name for t in c.observation]
    if inp.tag_names != names:
        raise ValueError(f"input.tags {inp.tag_names} must be control.observation {names}")
    if inp.window != 1 or inp.stride != 1:
        raise ValueError("task control: input.window and input.stride must be 1 (the "
                         "policy sees the current values)")
    if abs(inp.period_s - c.period_s) > 1e-9:
        raise ValueError(f"input.period_s {inp.period_s} != control.period_s {c.period_s}")
    if (sc.mean != [t.center for t in c.observation]
            or sc.scale != [t.scale for t in c.observation]):
        raise ValueError("scaler.mean/scale must be the observation tags' center/scale")


def migrate_task(data: Any) -> Any:
    """Bundles and runs made before the task table said ``task: image`` and told a classifier
    from a segmenter by ``image.kind``; they load as ``image_class`` / ``image_segment``."""
    if isinstance(data, dict) and data.get("task") == "image":
        if not data.get("image"):
            raise ValueError("task 'image' needs an 'image' section (its kind names the task)")
        kind = data["image"].get("kind") if isinstance(data["image"], dict) else data["image"].kind
        try:
            data = data | {"task": image_task(kind)}
        except KeyError as exc:
            raise ValueError(f"task 'image' with image.kind {kind!r}: rebuild the bundle "
                             "with `procedge convert`") from exc
    return data


class Manifest(RunRecord):
    format_version: int = FORMAT_VERSION
    version: str = Field(description="Bundle version, published by the daemon.")
    quantization: QuantMode
    batch: Literal["one", "dynamic"] | None = Field(
        default=None, description="Batch dimension of model.tflite's input: 'one' (fixed; the "
        "edge runs one window per invoke) or 'dynamic'; None in bundles that predate it.")
    representative_sha256: str = Field(
        default="", description="Fingerprint of the int8 calibration windows (if quantized).")
    representative_sampling: dict[str, Any] = Field(
        default_factory=dict, description="How the calibration windows were drawn (if "
        "quantized): operating modes found, windows per mode in training and in the sample.")
    created_at: str = Field(default_factory=lambda: utc_now_iso())
    files: dict[str, str] = Field(default_factory=dict, description="SHA-256 of each file.")
    manifest_sha256: str = Field(default="", description="SHA-256 of this manifest without it.")


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest_digest(data: dict[str, Any]) -> str:
    body = {k: v for k, v in data.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_bundle(directory: Path, manifest: Manifest) -> Path:
    """Hash every file already in ``directory`` and write the manifest that seals them."""
    directory = Path(directory)
    if not (directory / MODEL_FILE).is_file():
        raise BundleError(f"{directory / MODEL_FILE}: missing")
    files = {
        p.relative_to(directory).as_posix(): sha256_file(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name not in (MANIFEST, SIGNATURE)
    }
    data = manifest.model_copy(update={"files": files, "manifest_sha256": ""}).model_dump()
    data["manifest_sha256"] = _manifest_digest(data)
    (directory / MANIFEST).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return directory


def pack_bundle(directory: Path, archive: Path) -> Path:
    """Write the bundle directory as a single ``.zip`` for shipping."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(Path(directory).rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(directory).as_posix())
    return archive


class Bundle:
    """A verified bundle on disk: the manifest plus the path of the model file.

    A bundle loaded from a ``.zip`` lives in a temporary folder of its own (``temporary``):
    :meth:`release` removes it once the model is loaded (the daemon does, right after the
    interpreter is built); a refused zip leaves no folder behind.
    """

    def __init__(self, root: Path, manifest: Manifest, temporary: bool = False):
        self.root = root
        self.manifest = manifest
        self.temporary = temporary

    @property
    def model_path(self) -> Path:
        return self.root / MODEL_FILE

    def release(self) -> None:
        """Remove the temporary folder of a bundle unpacked from a zip (idempotent); a
        directory bundle is left alone."""
        if self.temporary:
            shutil.rmtree(self.root, ignore_errors=True)
            self.temporary = False

    @classmethod
    def load(cls, path: str | Path, public_key: str | Path | None = None) -> Bundle:
        """Load and verify (and check the signature when ``public_key`` is given); raise
        :class:`BundleError` naming the file that fails."""
        root = Path(path)
        if root.is_file() and zipfile.is_zipfile(root):
            unpacked = _extract(root)
            try:
                return cls(unpacked, _verified(unpacked, public_key), temporary=True)
            except BaseException:
                shutil.rmtree(unpacked, ignore_errors=True)
                raise
        return cls(root, _verified(root, public_key))


def _verified(root: Path, public_key: str | Path | None) -> Manifest:
    """The manifest of the bundle in ``root``, every check passed."""
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path}: missing")
    if public_key is not None:
        verify_signature(root, Path(public_key))
    try:
        data = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{manifest_path}: unsupported format_version")
    if data.get("manifest_sha256") != _manifest_digest(data):
        raise BundleError(f"{manifest_path}: content does not match its SHA-256")
    manifest = Manifest.model_validate(data)
    if MODEL_FILE not in manifest.files:
        raise BundleError(f"{root / MODEL_FILE}: not listed in the manifest")
    # every entry inside the bundle before any is read: a file outside it is never hashed,
    # and the refusal says nothing about it (not even whether its hash matched)
    real_root = root.resolve()
    for name in manifest.files:
        if not inside_path(name) or not (root / name).resolve().is_relative_to(real_root):
            raise BundleError(f"{manifest_path}: files entry {name!r} is outside the bundle "
                              "(must be a relative path inside it, no '..', no link out)")
    for name, expected in manifest.files.items():
        file = root / name
        if not file.is_file():
            raise BundleError(f"{file}: listed in the manifest but missing")
        if sha256_file(file) != expected:
            raise BundleError(f"{file}: SHA-256 does not match the manifest")
    return manifest


def inside_path(name: object) -> bool:
    """Whether ``name`` is a relative POSIX path that stays inside the bundle: not absolute,
    no drive, no backslash, no empty, ``.`` or ``..`` part."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        return False
    parts = name.split("/")
    return (not name.startswith("/") and not PureWindowsPath(name).drive
            and all(part not in ("", ".", "..") for part in parts))


def sign_bundle(directory: Path, private_key: Path) -> Path:
    """Sign ``manifest.json`` with an Ed25519 private key (PEM); writes ``manifest.sig``."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(Path(private_key).read_bytes(), password=None)
    signature = key.sign((Path(directory) / MANIFEST).read_bytes())
    (Path(directory) / SIGNATURE).write_bytes(signature)
    return Path(directory) / SIGNATURE


def verify_signature(root: Path, public_key: Path) -> None:
    """Refuse a bundle whose manifest is unsigned or not signed by ``public_key``'s owner."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    sig_path = root / SIGNATURE
    if not sig_path.is_file():
        raise BundleError(f"{sig_path}: missing, and a public key is configured (unsigned)")
    key = load_pem_public_key(Path(public_key).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{public_key}: not an Ed25519 public key")
    try:
        key.verify(sig_path.read_bytes(), (root / MANIFEST).read_bytes())
    except InvalidSignature as exc:
        raise BundleError(f"{sig_path}: signature does not match {MANIFEST} "
                          f"for key {public_key}") from exc


def _extract(archive: Path) -> Path:
    """Unpack a zip bundle into a new temporary folder: only the files its manifest lists (and
    the manifest, its signature), within the size caps; no absolute path, ``..`` or link.
    Anything refused: :class:`BundleError` naming the member, and no folder left behind."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = _checked_members(archive, zf)
            target = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
            try:
                budget = MAX_BUNDLE_BYTES
                for info in members:
                    budget -= _unpack(archive, zf, info, target, budget)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
    except BundleError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError,
            OSError, EOFError, zlib.error) as exc:
        raise BundleError(f"{archive}: unreadable zip ({exc})") from exc
    return target


def _checked_members(archive: Path, zf: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The members to unpack, every name, kind and declared size checked before any is."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise BundleError(f"{archive}: more than {MAX_MEMBERS} members")
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if not inside_path(name.removesuffix("/") if info.is_dir() else name):
            raise BundleError(f"{archive}: unsafe path {name!r} in archive")
        if name in seen:
            raise BundleError(f"{archive}: {name!r} appears twice in the archive")
        seen.add(name)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise BundleError(f"{archive}: {name!r} is a symbolic link")
    manifest = next((i for i in infos if i.filename == MANIFEST), None)
    if manifest is None:
        raise BundleError(f"{archive}: {MANIFEST} missing")
    if manifest.file_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{archive}: {MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
    with zf.open(manifest) as handle:
        text = handle.read(MAX_MANIFEST_BYTES + 1)
    try:
        files = json.loads(text).get("files") if len(text) <= MAX_MANIFEST_BYTES else None
    except (ValueError, AttributeError, RecursionError) as exc:  # not JSON, not an object
        raise BundleError(f"{archive}: {MANIFEST} is not a valid manifest ({exc})") from exc
    if not isinstance(files, dict):
        raise BundleError(f"{archive}: {MANIFEST} has no 'files' table")
    listed = {MANIFEST, SIGNATURE, *files}
    folders = {"/".join(n.split("/")[:k]) for n in listed for k in range(1, n.count("/") + 1)}
    members = []
    for info in infos:
        name = info.filename
        if info.is_dir() and name.removesuffix("/") in folders:
            continue  # a folder of listed files: made as they are unpacked
        if name not in listed:
            raise BundleError(f"{archive}: {name!r} is not listed in the manifest")
        if info.file_size > MAX_MEMBER_BYTES:
            raise BundleError(f"{archive}: {name!r} is larger than {MAX_MEMBER_BYTES} bytes "
                              f"uncompressed ({info.file_size})")
        members.append(info)
    total = sum(i.file_size for i in members)
    if total > MAX_BUNDLE_BYTES:
        raise BundleError(f"{archive}: its files hold more than {MAX_BUNDLE_BYTES} bytes "
                          f"uncompressed ({total})")
    return members


def _unpack(archive: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path,
            budget: int) -> int:
    """Copy one member, counting its bytes (a header can lie); returns the bytes written."""
    limit = min(info.file_size, MAX_MEMBER_BYTES, budget)
    dest = target / info.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zf.open(info) as src, dest.open("xb") as out:
        while block := src.read(1 << 20):
            written += len(block)
            if written > limit:
                raise BundleError(f"{archive}: {info.filename!r} inflates beyond its declared "
                                  f"size or the caps ({limit} bytes)")
            out.write(block)
    return written
