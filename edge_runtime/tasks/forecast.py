"""Task ``forecast`` at the edge: (N, H, T) model outputs → one ``inference`` payload per
window with ``forecast`` per target and step in engineering units, the step ``timestamps`` and
the ``units``; a quantile model's (N, H, T, Q) also gives ``quantiles`` per target
(``{"p10": [...], ...}``), ``forecast`` then being P50 (what a point consumer already reads),
after the bundle's conformal offsets (``output.conformal``) widen or narrow the band.
A ``tft`` bundle has a second output, the window's variable-selection weights (N, F): its
payload names the ``TOP_VARIABLES`` input tags the model leaned on, with weight and unit.
A bundle with known-future inputs (``input.known_future``) gets them from the window's time
(:func:`model_input`, numpy): its top variables may then be calendar features too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edge_runtime.calendar import selection_names, with_known_future
from edge_runtime.conformal import apply_offsets
from edge_runtime.payloads import iso_ms

TOP_VARIABLES = 3  # input tags named per forecast by a model with variable selection

if TYPE_CHECKING:
    from edge_runtime.pipelines import ModelPipeline, Output


def post(pipeline: ModelPipeline, times: list[float], x: np.ndarray,
         ys: list[np.ndarray]) -> list[Output]:
    from edge_runtime.pipelines import Output

    y_scaled, importance = forecast_outputs(ys)
    manifest = pipeline.bundle.manifest
    out = manifest.output
    cols = [pipeline.tags.index(t) for t in out.targets]
    if out.quantiles:  # (N, H, T, Q) → (Q, N, H, T): the scaler works on the last axis
        y_scaled = apply_offsets(y_scaled, out.conformal)  # [] → as the model gave them
        levels = np.round(pipeline.scaler.inverse(np.moveaxis(y_scaled, -1, 0), cols), 6)
        values = levels[out.quantiles.index(0.5)]
        keys = [quantile_key(q) for q in out.quantiles]
    else:
        values = np.round(pipeline.scaler.inverse(y_scaled, cols), 6)  # (N, H, T) engineering
    period = manifest.input.period_s
    units = {t: pipeline.units[t] for t in out.targets}
    stamps: dict[float, str] = {}  # consecutive windows share most of their horizon
    spec = manifest.input
    selected = selection_names(pipeline.tags, spec.known_future, spec.static)
    base = pipeline.base_payload()

    def stamp(t: float) -> str:
        return stamps.get(t) or stamps.setdefault(t, iso_ms(t))

    outputs = []
    for n, (grid_t, v) in enumerate(zip(times, values.tolist(), strict=True)):
        payload = base | {
            "ts": iso_ms(grid_t),
            "timestamps": [stamp(grid_t + period * (k + 1)) for k in range(out.horizon)],
            "forecast": _per_target(v, out.targets), "units": units}
        if out.quantiles:
            per_level = [_per_target(level[n].tolist(), out.targets) for level in levels]
            payload["quantiles"] = {
                t: {key: p[t] for key, p in zip(keys, per_level, strict=True)}
                for t in out.targets}
        if importance is not None:
            payload["top_variables"] = top_variables(importance[n], selected, pipeline.units)
        outputs.append(Output("inference", payload, grid_t=grid_t))
    return outputs


def model_input(pipeline: ModelPipeline, times: list[float], x: np.ndarray) -> np.ndarray:
    """The scaled windows (N, L, F) as the model takes them: with known-future inputs, the
    calendar features of the past and forecast steps appended (N, L + H, F + K)."""
    spec = pipeline.bundle.manifest.input
    if not spec.known_future:
        return x
    return with_known_future(x, np.asarray(times), spec.period_s,
                             pipeline.bundle.manifest.output.horizon, spec.known_future)


def forecast_outputs(ys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """The forecast (N, H, T) or (N, H, T, Q) and, from a ``tft`` bundle, the (N, F)
    selection weights (else None). LiteRT may order a model's outputs differently from Keras;
    the two differ in rank, so rank tells them apart."""
    forecast = next(y for y in ys if y.ndim >= 3)
    weights = next((y for y in ys if y.ndim == 2), None)
    return forecast, weights


def top_variables(weights: np.ndarray, tags: list[str], units: dict[str, str],
                  k: int | None = None) -> list[dict]:
    """The ``k`` input tags with the largest selection weight, largest first:
    ``[{"tag", "weight", "unit"}]`` (weights over all tags sum to 1)."""
    order = np.argsort(-np.asarray(weights, np.float64), kind="stable")[:k or TOP_VARIABLES]
    return [{"tag": tags[i], "weight": round(float(weights[i]), 4), "unit": units.get(tags[i], "")}
            for i in order]


def quantile_key(level: float) -> str:
    """0.1 → "p10", 0.5 → "p50", 0.025 → "p2.5"."""
    return f"p{level * 100:g}"


def _per_target(rows: list[list[float]], targets: list[str]) -> dict[str, list[float]]:
    """(H, T) rows of engineering values → {target: [step values]}."""
    return {t: [row[i] for row in rows] for i, t in enumerate(targets)}
