"""The tables every layer reads: the tasks a bundle can carry and the quantization modes a
model can be shipped in, plus the one strict pydantic base of every config and manifest model.

Adding a quantization mode is one row in :data:`QUANT_MODES` plus its converter settings
(``converters/worker.py``); adding a task is one row in :data:`TASKS` plus its modules
(``training/tasks/<task>.py`` for training and parity, ``edge_runtime/tasks/<task>.py`` for the
gateway). The CLI choices, the bundle schema, the converter, ``auto``'s ranking and the
evaluations all read these tables, so no list of names is written out anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Base of every config section and manifest model: an unknown key (a typo) is an error
    that names the field, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class QuantModeSpec:
    """One way to ship a model. ``calibrated``: needs representative windows (full integer
    quantization); ``auto_rank``: smaller ranks are smaller files (``auto`` breaks ties by it)."""

    name: str
    calibrated: bool
    auto_rank: int
    doc: str


QUANT_MODES: tuple[QuantModeSpec, ...] = (
    QuantModeSpec("fp32", False, 4, "float32: the Keras model as is"),
    QuantModeSpec("fp16", False, 3, "float16 weights, float32 compute"),
    QuantModeSpec("dynamic", False, 2, "int8 weights, float activations (dynamic range)"),
    QuantModeSpec("int8", True, 0, "full integer: int8 weights and activations"),
    QuantModeSpec("int16x8", True, 1, "int8 weights, int16 activations (reference kernels)"),
)
MODE_NAMES: tuple[str, ...] = tuple(m.name for m in QUANT_MODES)
#: ``auto``'s candidates, smallest first (the order ties are broken in).
AUTO_ORDER: tuple[str, ...] = tuple(m.name for m in sorted(QUANT_MODES, key=lambda m: m.auto_rank))
#: Modes calibrated on representative windows (integer activations).
CALIBRATED_MODES: tuple[str, ...] = tuple(m.name for m in QUANT_MODES if m.calibrated)
QuantMode = Literal[MODE_NAMES]  # type: ignore[valid-type]


@dataclass(frozen=True)
class TaskSpec:
    """One task: what its bundles take in (``series``: tag windows from MQTT samples;
    ``image``: camera frames), and the metric its parity gate holds with the default budget
    (``budget_kind``: ``relative`` = a fraction of the float metric, ``points`` = a drop in
    points as a fraction, 0.01 = 1 point). ``ships``: False for a workstation-only task
    (``generative``): its runs are used where they are trained and never bundled."""

    name: str
    inputs: Literal["series", "image"]
    parity_metric: str
    budget: float
    budget_kind: Literal["relative", "points"]
    budget_key: str  # its key in a conversion report's "budgets"
    budget_flag: str  # `procedge convert --<flag>` overrides the budget for this task
    doc: str
    image_kind: Literal["", "classifier", "segmenter", "particles"] = ""  # bundle image.kind
    ships: bool = True  # False: a workstation job; `procedge convert` refuses its runs


TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("forecast", "series", "mse", 0.02, "relative", "forecast_mse_rel", "forecast-mse",
             "future values of chosen tags from a window of every tag"),
    TaskSpec("anomaly", "series", "f1", 0.01, "points", "anomaly_f1_points", "anomaly-f1",
             "a reconstruction score against a calibrated limit, with ISA-18.2 alarms"),
    TaskSpec("image_class", "image", "accuracy", 0.005, "points", "classifier_accuracy_points",
             "accuracy", "class scores of a camera frame (OK/NOK, defect class)", "classifier"),
    TaskSpec("image_segment", "image", "iou", 0.01, "points", "segmentation_iou_points", "iou",
             "a defect mask of a camera frame (area, boxes)", "segmenter"),
    TaskSpec("soft_sensor", "series", "mse", 0.02, "relative", "soft_sensor_mse_rel",
             "soft-sensor-mse", "a lab or analyzer value estimated every period from a window "
             "of process tags, corrected by the lab values as they arrive"),
    TaskSpec("control", "series", "action_error", 0.01, "points", "control_action_points",
             "control-action", "a recommended set-point from a policy on the current tag "
             "values, behind a safety shield (advisory unless the config says closed_loop)"),
    TaskSpec("generative", "series", "none", 0.0, "relative", "generative_none",
             "generative-none", "synthetic tag windows (per operating mode or fault class) "
             "written to CSV/Parquet by `procedge generate`; nothing ships", ships=False),
    TaskSpec("particle_size", "image", "interior_iou", 0.01, "points", "particle_iou_points",
             "particle-iou", "particle sizes of a micrograph: count, D10/D50/D90 in µm, aspect "
             "ratios, histogram, with the calibration used", "particles"),
)
TASK_NAMES: tuple[str, ...] = tuple(t.name for t in TASKS)
#: The tasks whose runs `procedge convert` bundles for a gateway.
SHIPPED_TASKS: tuple[TaskSpec, ...] = tuple(t for t in TASKS if t.ships)
TaskName = Literal[TASK_NAMES]  # type: ignore[valid-type]


def task_spec(name: str) -> TaskSpec:
    """The row of task ``name``; a clear error naming the known tasks otherwise."""
    for spec in TASKS:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown task {name!r}; known: {list(TASK_NAMES)}")


def image_task(kind: str) -> str:
    """The task whose bundles carry ``image.kind == kind`` (classifier or segmenter)."""
    for spec in TASKS:
        if spec.image_kind and spec.image_kind == kind:
            return spec.name
    raise KeyError(f"no image task for image kind {kind!r}")


def mode_spec(name: str) -> QuantModeSpec:
    """The row of quantization mode ``name``; a clear error naming the known modes otherwise."""
    for spec in QUANT_MODES:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown quantization mode {name!r}; known: {list(MODE_NAMES)}")
