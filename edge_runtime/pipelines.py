"""One bundle at work: samples in, windows cut as in training, LiteRT, results out.

A pipeline knows nothing of MQTT: it turns samples into :class:`Output` records (topic kind +
JSON payload) that the daemon publishes. That keeps it testable and the daemon thin.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.alarms import AlarmLogic
from edge_runtime.bundle import Bundle
from edge_runtime.interpreter import EdgeModel
from edge_runtime.payloads import iso_ms
from edge_runtime.scaling import StandardScaler
from edge_runtime.scoring import contributions, reconstruction_errors, window_scores
from edge_runtime.smoothing import ScoreFilter
from edge_runtime.windowing import GridBuffer


@dataclass
class Output:
    kind: str  # "inference" or "alarm"
    payload: dict[str, Any]
    alarm_id: str = ""


class ModelPipeline:
    def __init__(self, name: str, bundle: Bundle, threads: int = 1):
        self.name = name
        self.bundle = bundle
        m = bundle.manifest
        self.tags = m.input.tag_names
        self.units = {t.name: t.unit for t in m.input.tags}
        self.scaler = StandardScaler.from_spec(m.scaler)
        self.model = EdgeModel(bundle.model_path, num_threads=threads)
        self.buffer = GridBuffer(self.tags, m.input.period_s, m.input.window,
                                 m.input.max_gap_s, m.input.stride)
        self.alarm = AlarmLogic(m.thresholds) if m.thresholds else None
        self.score_filter = ScoreFilter(m.thresholds) if m.thresholds else None
        self.alarm_id = f"{name}.anomaly"
        self.windows_built = 0
        self.windows_dropped_gap = 0
        self.inference_s: list[float] = []  # the daemon drains this into its histogram

    def push(self, tag: str, ts: float, value: float) -> list[Output]:
        """Add one sample; return what became publishable (zero or more outputs)."""
        self.buffer.push(tag, ts, value)
        outputs: list[Output] = []
        for grid_t, window in self.buffer.windows():
            if not np.isfinite(window).all():
                self.windows_dropped_gap += 1
                continue
            self.windows_built += 1
            outputs.extend(self.infer(grid_t, window))
        return outputs

    def infer(self, grid_t: float, window: np.ndarray) -> list[Output]:
        """Run the model on one valid window (engineering units, (L, F))."""
        start = time.perf_counter()
        x = self.scaler.transform(window)[None]
        outputs = self.model.predict(x)
        self.inference_s.append(time.perf_counter() - start)
        base = {"model": self.name, "version": self.bundle.manifest.version,
                "quantization": self.bundle.manifest.quantization, "ts": iso_ms(grid_t),
                "processed_at": iso_ms(time.time())}
        if self.bundle.manifest.task == "forecast":
            return [Output("inference", base | self._forecast(grid_t, outputs[0][0]))]
        return self._anomaly(base, x, outputs)

    def _forecast(self, grid_t: float, y_scaled: np.ndarray) -> dict[str, Any]:
        """(H, T) → ``forecast`` per target and step, in engineering units. A quantile model's
        (H, T, Q) also gives ``quantiles`` per target: ``{"p10": [...], "p50": [...], ...}``;
        ``forecast`` is then P50 (what a point-forecast consumer already reads)."""
        out = self.bundle.manifest.output
        cols = [self.tags.index(t) for t in out.targets]
        period = self.bundle.manifest.input.period_s
        result = {
            "timestamps": [iso_ms(grid_t + period * (k + 1)) for k in range(out.horizon)],
            "units": {t: self.units[t] for t in out.targets},
        }
        if not out.quantiles:
            result["forecast"] = _per_target(self.scaler.inverse(y_scaled, cols), out.targets)
            return result
        levels = self.scaler.inverse(np.moveaxis(y_scaled, -1, 0), cols)  # (Q, H, T)
        per_level = {quantile_key(q): _per_target(v, out.targets)
                     for q, v in zip(out.quantiles, levels, strict=True)}
        result["forecast"] = per_level[quantile_key(0.5)]
        result["quantiles"] = {t: {key: per_level[key][t] for key in per_level}
                               for t in out.targets}
        return result

    def _anomaly(self, base: dict[str, Any], x: np.ndarray,
                 outputs: list[np.ndarray]) -> list[Output]:
        spec = self.bundle.manifest.thresholds
        y = next(o for o in outputs if o.shape == x.shape)  # the reconstruction
        raw_score = float(window_scores(x, outputs, spec.score)[0])  # error (+ KL: elbo)
        score = self.score_filter.update(raw_score)  # EWMA + k-of-n, as evaluated
        ranked = [{"tag": tag, "share": round(share, 4), "unit": self.units[tag]}
                  for tag, share in contributions(reconstruction_errors(x, y)[0], self.tags)]
        result = base | {"score": score, "raw_score": raw_score, "threshold": spec.raise_at,
                         "contributions": ranked}
        outputs = [Output("inference", result | {"alarm_active": self.alarm.active})]
        transition = self.alarm.update(score)
        if transition:
            event = result | {
                "alarm_id": self.alarm_id, "event": transition,
                "state": "active" if self.alarm.active else "normal",
                "priority": self.alarm.priority(score), "source": self.tags,
            }
            outputs[0].payload["alarm_active"] = self.alarm.active
            outputs.append(Output("alarm", event, self.alarm_id))
        return outputs


def quantile_key(level: float) -> str:
    """0.1 → "p10", 0.5 → "p50", 0.025 → "p2.5"."""
    return f"p{level * 100:g}"


def _per_target(values: np.ndarray, targets: list[str]) -> dict[str, list[float]]:
    """(H, T) engineering values → {target: [step values]}, rounded for the payload."""
    return {t: [round(float(v), 6) for v in values[:, i]] for i, t in enumerate(targets)}
