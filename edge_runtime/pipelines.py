"""One bundle at work: samples in, windows cut as in training, LiteRT, results out.

A pipeline knows nothing of MQTT: it turns samples into :class:`Output` records (topic kind +
JSON payload) that the daemon publishes. That keeps it testable and the daemon thin.

Work is split in the three stages the metrics report, and done per *batch* of windows (the
windows completed by one batch of inbound messages), so numpy and Python overheads are paid
once per batch instead of once per window:

- pre: window assembly in :meth:`push` (grid alignment, gap check) + stacking and scaling;
- invoke: the LiteRT interpreter, one window per invoke at its allocated batch of one
  (re-allocating tensors for a new batch size costs more than a tiny model's invoke);
- post: scores, smoothing, contributions, alarm logic, forecasts in engineering units, payloads.
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
from edge_runtime.scoring import contribution_shares, scored_windows
from edge_runtime.smoothing import ScoreFilter
from edge_runtime.windowing import GridBuffer


@dataclass
class Output:
    kind: str  # "inference" or "alarm"
    payload: dict[str, Any]
    alarm_id: str = ""
    grid_t: float = 0.0  # the window's time: the daemon merges several models' outputs by it


@dataclass
class StageTimes:
    """Seconds spent in each stage for one batch of ``windows`` windows."""

    pre: float
    invoke: float
    post: float
    windows: int


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
        self.gaps_unreported = 0  # the daemon moves these into its counter
        self.timings: list[StageTimes] = []  # one per batch; the daemon drains it into metrics
        self._times: list[float] = []  # grid times of the windows waiting for flush()
        self._windows: list[np.ndarray] = []
        self._pre_s = 0.0  # assembly time of the waiting windows

    def push(self, tag: str, ts: float, value: float) -> None:
        """Add one sample; complete windows wait for :meth:`flush` (gap windows are counted
        and dropped here: a model never sees a window with a hole)."""
        start = time.perf_counter()
        if self.buffer.push(tag, ts, value):
            for grid_t, window in self.buffer.windows():
                if not np.isfinite(window).all():
                    self.windows_dropped_gap += 1
                    self.gaps_unreported += 1
                    continue
                self._times.append(grid_t)
                self._windows.append(window)
        self._pre_s += time.perf_counter() - start

    def flush(self) -> list[Output]:
        """Run every waiting window through the model; return the outputs, in window order."""
        if not self._times:
            return []
        times, windows = self._times, self._windows
        self._times, self._windows = [], []
        t0 = time.perf_counter()
        x = self.scaler.transform(np.stack(windows))
        t1 = time.perf_counter()
        ys = self.model.predict_each(x)
        t2 = time.perf_counter()
        if self.bundle.manifest.task == "forecast":
            outputs = self._forecasts(times, ys[0])
        else:
            outputs = self._anomalies(times, x, ys)
        t3 = time.perf_counter()
        self.timings.append(StageTimes(self._pre_s + t1 - t0, t2 - t1, t3 - t2, len(times)))
        self._pre_s = 0.0
        self.windows_built += len(times)
        return outputs

    def infer(self, grid_t: float, window: np.ndarray) -> list[Output]:
        """Run the model on one valid window now (engineering units, (L, F))."""
        self._times.append(grid_t)
        self._windows.append(np.asarray(window, dtype=np.float32))
        return self.flush()

    def _base(self) -> dict[str, Any]:
        m = self.bundle.manifest
        return {"model": self.name, "version": m.version, "quantization": m.quantization,
                "processed_at": iso_ms(time.time())}

    def _forecasts(self, times: list[float], y_scaled: np.ndarray) -> list[Output]:
        """(N, H, T) → ``forecast`` per target and step, in engineering units. A quantile
        model's (N, H, T, Q) also gives ``quantiles`` per target (``{"p10": [...], ...}``);
        ``forecast`` is then P50 (what a point-forecast consumer already reads)."""
        out = self.bundle.manifest.output
        cols = [self.tags.index(t) for t in out.targets]
        if out.quantiles:  # (N, H, T, Q) → (Q, N, H, T): the scaler works on the last axis
            levels = np.round(self.scaler.inverse(np.moveaxis(y_scaled, -1, 0), cols), 6)
            values = levels[out.quantiles.index(0.5)]
            keys = [quantile_key(q) for q in out.quantiles]
        else:
            values = np.round(self.scaler.inverse(y_scaled, cols), 6)  # (N, H, T) engineering
        period = self.bundle.manifest.input.period_s
        units = {t: self.units[t] for t in out.targets}
        stamps: dict[float, str] = {}  # consecutive windows share most of their horizon
        base = self._base()
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
            outputs.append(Output("inference", payload, grid_t=grid_t))
        return outputs

    def _anomalies(self, times: list[float], x: np.ndarray,
                   ys: list[np.ndarray]) -> list[Output]:
        spec = self.bundle.manifest.thresholds
        scores, per_tag = scored_windows(x, ys, spec.score)  # error (+ KL: elbo)
        shares, order = contribution_shares(per_tag)
        raw_scores, shares_list, order = scores.tolist(), shares.tolist(), order.tolist()
        tags, units = self.tags, [self.units[t] for t in self.tags]
        base = self._base() | {"threshold": spec.raise_at}
        outputs = []
        for i, grid_t in enumerate(times):
            raw_score = raw_scores[i]
            score = self.score_filter.update(raw_score)  # EWMA + k-of-n, as evaluated
            share = shares_list[i]
            ranked = [{"tag": tags[j], "share": round(share[j], 4), "unit": units[j]}
                      for j in order[i]]
            result = base | {"ts": iso_ms(grid_t), "score": score, "raw_score": raw_score,
                             "contributions": ranked}
            outputs.append(Output("inference", result | {"alarm_active": self.alarm.active},
                                  grid_t=grid_t))
            transition = self.alarm.update(score)
            if transition:
                outputs[-1].payload["alarm_active"] = self.alarm.active
                outputs.append(Output("alarm", result | {
                    "alarm_id": self.alarm_id, "event": transition,
                    "state": "active" if self.alarm.active else "normal",
                    "priority": self.alarm.priority(score), "source": self.tags}, self.alarm_id,
                    grid_t))
        return outputs


def quantile_key(level: float) -> str:
    """0.1 → "p10", 0.5 → "p50", 0.025 → "p2.5"."""
    return f"p{level * 100:g}"


def _per_target(rows: list[list[float]], targets: list[str]) -> dict[str, list[float]]:
    """(H, T) rows of engineering values → {target: [step values]}."""
    return {t: [row[i] for row in rows] for i, t in enumerate(targets)}
