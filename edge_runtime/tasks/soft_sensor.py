"""Task ``soft_sensor`` at the edge: every window gives an ``inference`` payload with the
estimate of the lab/analyzer value in engineering units; every lab value that arrives gives a
``residual`` payload (estimate − measured, for the window its dead time points at) and, with
``bias_update``, moves the bias that later estimates carry (:class:`BiasFilter`).

Payloads: inference ``{"ts", "target", "estimate", "raw_estimate", "bias", "unit",
"dead_time_s"}`` (``estimate`` = ``raw_estimate`` + ``bias``), plus ``"limit": "low" | "high"``
when the estimate crosses the edge config's ``limits`` and ``"contributions"`` (per-tag
occlusion contributions, ranked: :mod:`edge_runtime.occlusion`) when it crosses them or the
config asks for them on every estimate; residual ``{"ts" (the lab
stamp), "process_ts" (the window it measures), "target", "measured", "estimate",
"raw_estimate", "residual", "raw_residual", "bias" (after this value), "bias_update",
"unit"}``. A classification soft sensor publishes ``{"ts", "target", "class",
"probabilities": {class: p}, "dead_time_s"}`` instead, plus ``"contributions"`` (the
occlusion contributions to the given class's probability) when the config asks for them on
every estimate or the class is one of ``explain_classes``, and skips lab values (counted,
``lab_classification``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edge_runtime.bundle import Manifest
from edge_runtime.occlusion import Occluder, contributions, ranked
from edge_runtime.payloads import PayloadError, iso_ms
from edge_runtime.soft_sensing import BiasFilter, EstimateHistory, fill_gaps, process_time

if TYPE_CHECKING:
    from edge_runtime.config import SoftSensorEdgeConfig
    from edge_runtime.pipelines import ModelPipeline, Output


@dataclass
class SoftSensorState:
    """What one soft-sensor pipeline remembers between windows and lab values."""

    history: EstimateHistory
    bias: BiasFilter
    options: SoftSensorEdgeConfig
    occluder: Occluder | None = None  # set on first use: no interpreter unless asked
    last_lab_s: float = float("-inf")  # stamp of the newest lab value used


def initial_state(manifest: Manifest, options: SoftSensorEdgeConfig | None) -> SoftSensorState:
    """A fresh state (bias 0): the history keeps three windows' worth of estimates, more than
    the longest dead time training accepts (one window span) plus lab values arriving late."""
    from edge_runtime.config import SoftSensorEdgeConfig

    o = options or SoftSensorEdgeConfig()
    classes = manifest.soft_sensor.classes if manifest.soft_sensor else []
    unknown = [c for c in o.explain_classes if c not in classes]
    if unknown:
        raise ValueError(f"soft_sensor.explain_classes: {unknown} not among the bundle's "
                         f"classes {classes}")
    keep = 3 * manifest.input.window + 2
    return SoftSensorState(EstimateHistory(manifest.input.period_s, keep),
                           BiasFilter(o.bias_alpha, o.bias_update), o)


def snapshot(pipeline: ModelPipeline) -> dict:
    """What a restart must not lose: the bias and the newest lab value used, for this
    bundle version (the daemon keeps it in the outbox's state table)."""
    state: SoftSensorState = pipeline.task_state
    return {"version": pipeline.bundle.manifest.version, "bias": state.bias.bias,
            "last_lab_s": state.last_lab_s}


def restore(pipeline: ModelPipeline, saved: dict) -> bool:
    """Take up a :func:`snapshot` of the same bundle version (another model's bias does not
    apply: it starts at 0); whether it was taken."""
    if saved.get("version") != pipeline.bundle.manifest.version:
        return False
    state: SoftSensorState = pipeline.task_state
    state.bias.bias = float(saved["bias"])
    state.last_lab_s = float(saved["last_lab_s"])
    return True


def fill(pipeline: ModelPipeline, window: np.ndarray) -> np.ndarray | None:
    """A window with a gap filled as in training (``soft_sensor.missing`` of the bundle:
    mask with the training mean, or interpolate), or None to drop it (``hold``)."""
    return fill_gaps(window, pipeline.bundle.manifest.soft_sensor.missing, pipeline.scaler.mean)


def post(pipeline: ModelPipeline, times: list[float], x: np.ndarray,
         ys: list[np.ndarray]) -> list[Output]:
    from edge_runtime.pipelines import Output

    spec = pipeline.bundle.manifest.soft_sensor
    if spec.kind == "classification":
        return _classes(pipeline, times, x, ys)
    state: SoftSensorState = pipeline.task_state
    scaled = np.asarray(ys[0]).reshape(len(times), -1)[:, 0]
    raw = spec.to_units(scaled)
    base = pipeline.base_payload() | {"target": spec.target, "unit": spec.unit,
                                      "dead_time_s": spec.dead_time_s}
    outputs = []
    for i, (grid_t, value) in enumerate(zip(times, raw.tolist(), strict=True)):
        bias = state.bias.bias
        state.history.add(grid_t, value, bias)
        payload = base | {"ts": iso_ms(grid_t), "estimate": round(value + bias, 6),
                          "raw_estimate": round(value, 6), "bias": round(bias, 6)}
        explained = _explained(pipeline, x[i], float(scaled[i]), value + bias)
        outputs.append(Output("inference", payload | explained | _batch(pipeline, grid_t),
                              grid_t=grid_t))
    return outputs


def _classes(pipeline: ModelPipeline, times: list[float], x: np.ndarray,
             ys: list[np.ndarray]) -> list[Output]:
    """A classification soft sensor's payloads: the most probable class and every class's
    probability (no bias: a class is not corrected by lab values), explained when asked."""
    from edge_runtime.pipelines import Output

    spec = pipeline.bundle.manifest.soft_sensor
    probs = np.asarray(ys[0], np.float64).reshape(len(times), -1)
    base = pipeline.base_payload() | {"target": spec.target, "dead_time_s": spec.dead_time_s}
    outputs = []
    for i, (grid_t, p) in enumerate(zip(times, probs, strict=True)):
        k = int(p.argmax())
        payload = base | {"ts": iso_ms(grid_t), "class": spec.classes[k], "probabilities": {
            c: round(float(v), 6) for c, v in zip(spec.classes, p, strict=True)}}
        outputs.append(Output("inference", payload | _class_explained(pipeline, x[i], k,
                                                                      float(p[k])),
                              grid_t=grid_t))
    return outputs


def _class_explained(pipeline: ModelPipeline, window: np.ndarray, k: int,
                     probability: float) -> dict:
    """``contributions`` to class ``k``'s probability when the config asks for them always
    or ``k`` is one of ``explain_classes``; nothing is run otherwise."""
    state: SoftSensorState = pipeline.task_state
    o, spec = state.options, pipeline.bundle.manifest.soft_sensor
    if not (o.contributions or spec.classes[k] in o.explain_classes):
        return {}
    occluder = _occluder(pipeline)
    values = contributions(lambda w: occluder.outputs(w)[:, k], window, probability)
    return {"contributions": ranked(values, pipeline.tags,
                                    [pipeline.units[t] for t in pipeline.tags])}


def _occluder(pipeline: ModelPipeline) -> Occluder:
    """The occlusion interpreter, loaded on first use."""
    state: SoftSensorState = pipeline.task_state
    if state.occluder is None:
        state.occluder = Occluder(pipeline.bundle.model_path)
    return state.occluder


def _explained(pipeline: ModelPipeline, window: np.ndarray, scaled: float,
               estimate: float) -> dict:
    """``limit`` when the estimate crosses one, and ``contributions`` when it does or the
    config asks for them always; nothing is run otherwise."""
    state: SoftSensorState = pipeline.task_state
    o, spec = state.options, pipeline.bundle.manifest.soft_sensor
    limits, extra = o.limits, {}
    if limits is not None and limits.low is not None and estimate < limits.low:
        extra["limit"] = "low"
    elif limits is not None and limits.high is not None and estimate > limits.high:
        extra["limit"] = "high"
    if not (o.contributions or extra):
        return extra
    values = contributions(_occluder(pipeline).predict, window, scaled) * spec.scale
    return extra | {"contributions": ranked(values, pipeline.tags,
                                            [pipeline.units[t] for t in pipeline.tags])}


def _batch(pipeline: ModelPipeline, grid_t: float) -> dict:
    """A batch-end model's batch fields (edge_runtime/batch_tracker.py), else none."""
    info = pipeline.batches.info(grid_t) if pipeline.batches is not None else None
    if info is None:
        return {}
    bid = int(info.batch_id) if info.batch_id.is_integer() else info.batch_id
    return {"batch_id": bid, "batch_rows": info.rows,
            "batch_progress_pct": round(info.progress_pct, 3)}


def on_lab(pipeline: ModelPipeline, stamp_s: float, measured: float) -> Output:
    """The residual of one lab value (and the bias update it makes). Raises
    :class:`PayloadError` ``lab_stale`` for a value not newer than the last one used (a
    redelivery would otherwise move the bias twice) and ``lab_unmatched`` when the window
    it measures was not estimated (a gap, not yet run, or older than the history)."""
    from edge_runtime.pipelines import Output

    spec = pipeline.bundle.manifest.soft_sensor
    state: SoftSensorState = pipeline.task_state
    if spec.kind == "classification":  # residuals and bias are for numbers
        raise PayloadError("lab_classification")
    if stamp_s <= state.last_lab_s:
        raise PayloadError("lab_stale")
    found = state.history.at(process_time(stamp_s, spec.dead_time_s))
    if found is None:
        raise PayloadError("lab_unmatched")
    grid_t, raw, bias_then = found
    state.last_lab_s = stamp_s
    bias = state.bias.update(measured, raw)
    return Output("residual", pipeline.base_payload() | {
        "ts": iso_ms(stamp_s), "process_ts": iso_ms(grid_t), "target": spec.target,
        "measured": measured, "estimate": round(raw + bias_then, 6),
        "raw_estimate": round(raw, 6), "residual": round(raw + bias_then - measured, 6),
        "raw_residual": round(raw - measured, 6), "bias": round(bias, 6),
        "bias_update": state.bias.enabled, "unit": spec.unit}, grid_t=grid_t)
