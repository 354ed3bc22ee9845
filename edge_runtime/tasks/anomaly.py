"""Task ``anomaly`` at the edge: reconstruction outputs → the window score (error, or negative
ELBO with a VAE's KL output), the bundle's smoothing (EWMA, k-of-n), the tags ranked by their
share of the error (with units), and the alarm logic; one ``inference`` payload per window and
an ``alarm`` payload on every raise or clear. While a commissioning calibration collects the
plant's first samples (:mod:`edge_runtime.commissioner`) a window feeds no alarm and its
payload says ``commissioning: true`` with the progress. A raise carries ``attribution``: the
top tags and time steps by reconstruction error and, from a ``transformer_ae`` bundle, by its
attention (:mod:`edge_runtime.attribution`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edge_runtime.attribution import attribution, step_attention
from edge_runtime.payloads import iso_ms
from edge_runtime.scoring import contribution_shares, scored_windows

if TYPE_CHECKING:
    from edge_runtime.pipelines import ModelPipeline, Output


def post(pipeline: ModelPipeline, times: list[float], x: np.ndarray,
         ys: list[np.ndarray]) -> list[Output]:
    from edge_runtime.pipelines import Output

    spec = pipeline.thresholds  # the bundle's, or those of its commissioning at this plant
    commissioning = pipeline.commissioning
    scores, per_tag = scored_windows(x, ys, spec.score)  # error (+ KL: elbo)
    shares, order = contribution_shares(per_tag)
    raw_scores, shares_list, order = scores.tolist(), shares.tolist(), order.tolist()
    tags, units = pipeline.tags, [pipeline.units[t] for t in pipeline.tags]
    alarm, score_filter = pipeline.alarm, pipeline.score_filter
    base = pipeline.base_payload() | {"threshold": spec.raise_at}
    outputs = []
    for i, grid_t in enumerate(times):
        raw_score = raw_scores[i]
        score = score_filter.update(raw_score)  # EWMA + k-of-n, as evaluated
        share = shares_list[i]
        ranked = [{"tag": tags[j], "share": round(share[j], 4), "unit": units[j]}
                  for j in order[i]]
        result = base | {"ts": iso_ms(grid_t), "score": score, "raw_score": raw_score,
                         "contributions": ranked}
        if commissioning is not None and commissioning.in_commissioning(grid_t):
            result |= {"commissioning": True, "progress": commissioning.progress(grid_t)}
            outputs.append(Output("inference", result | {"alarm_active": alarm.active},
                                  grid_t=grid_t))
            continue  # no alarm until the plant's baseline is fitted
        outputs.append(Output("inference", result | {"alarm_active": alarm.active},
                              grid_t=grid_t))
        transition = alarm.update(score)
        if transition:
            outputs[-1].payload["alarm_active"] = alarm.active
            event = result | {
                "alarm_id": pipeline.alarm_id, "event": transition,
                "state": "active" if alarm.active else "normal",
                "priority": alarm.priority(score), "source": tags}
            if alarm.active:  # a raise: where the window points
                event["attribution"] = _attribution(pipeline, x, ys, i, grid_t)
            outputs.append(Output("alarm", event, pipeline.alarm_id, grid_t))
    return outputs


def _attribution(pipeline: ModelPipeline, x: np.ndarray, ys: list[np.ndarray], i: int,
                 grid_t: float) -> dict:
    recon = next(o for o in ys if np.shape(o) == np.shape(x))
    attention = step_attention(ys, x.shape)
    return attribution(x[i], recon[i], None if attention is None else attention[i],
                       pipeline.tags, pipeline.units, grid_t,
                       pipeline.bundle.manifest.input.period_s)
