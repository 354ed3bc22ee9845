"""One bundle at work: samples in, windows cut as in training, LiteRT, results out.

A pipeline knows nothing of MQTT: it turns samples into :class:`Output` records (topic kind +
JSON payload) that the daemon publishes. That keeps it testable and the daemon thin.

Work is split in the three stages the metrics report, and done per *batch* of windows (the
windows completed by one batch of inbound messages), so numpy and Python overheads are paid
once per batch instead of once per window:

- pre: window assembly in :meth:`push` (grid alignment, gap check) + stacking and scaling;
- invoke: the LiteRT interpreter, one window per invoke at its allocated batch of one
  (re-allocating tensors for a new batch size costs more than a tiny model's invoke);
- post: the task's own (``edge_runtime/tasks/<task>.py``): scores, smoothing, contributions,
  alarm logic, forecasts in engineering units, payloads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_runtime.alarms import AlarmLogic
from edge_runtime.batch_tracker import batch_tracker
from edge_runtime.bundle import Bundle
from edge_runtime.config import DriftConfig, EventTimeConfig
from edge_runtime.drift import DriftEvent, DriftMonitor, MonitorSettings
from edge_runtime.interpreter import EdgeModel
from edge_runtime.payloads import iso_ms
from edge_runtime.scaling import StandardScaler
from edge_runtime.smoothing import ScoreFilter
from edge_runtime.tasks import edge_task
from edge_runtime.tasks.forecast import forecast_outputs
from edge_runtime.windowing import GridBuffer

if TYPE_CHECKING:
    from edge_runtime.commissioner import Commissioning


@dataclass
class Output:
    kind: str  # "inference", "alarm" or "commissioning" (a retained status)
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
    def __init__(self, name: str, bundle: Bundle, threads: int = 1,
                 event_time: EventTimeConfig | None = None,
                 allowed_lateness_s: float | None = None, task_options: Any = None,
                 drift: DriftConfig | None = None):
        """``event_time``: skew, lateness and eager finality of the window grid (defaults:
        :class:`EventTimeConfig`'s); ``allowed_lateness_s`` overrides its lateness;
        ``task_options``: the model's options for its task (``soft_sensor``: the bias
        update), handed to the task's ``initial_state``; ``drift``: the daemon's drift
        section (default :class:`DriftConfig`'s)."""
        self.name = name
        self.bundle = bundle
        m = bundle.manifest
        # a batch-end model: rows of the batch so far, windows built by the tracker
        self.batches = batch_tracker(m)
        # (every row reaches the tracker: window.stride does not apply to a batch model)
        window, stride = (m.input.window, m.input.stride) if self.batches is None else (1, 1)
        self.tags = m.input.tag_names if self.batches is None else self.batches.buffer_tags
        self.units = {t.name: t.unit for t in m.input.tags}
        self.scaler = StandardScaler.from_spec(m.scaler)
        self.model = EdgeModel(bundle.model_path, num_threads=threads)
        et = event_time or EventTimeConfig()
        lateness = et.allowed_lateness_s if allowed_lateness_s is None else allowed_lateness_s
        self.buffer = GridBuffer(self.tags, m.input.period_s, window,
                                 m.input.max_gap_s, stride, allowed_lateness_s=lateness,
                                 max_skew_s=et.max_skew_s, eager=et.eager)
        self.thresholds = m.thresholds  # in force: the bundle's, or a commissioning's
        self.alarm = AlarmLogic(m.thresholds) if m.thresholds else None
        self.score_filter = ScoreFilter(m.thresholds) if m.thresholds else None
        self.alarm_id = f"{name}.anomaly"
        task = edge_task(m.task)
        if not hasattr(task, "post"):
            raise ValueError(f"{bundle.root}: task {m.task!r} takes camera frames, not tag "
                             "samples: configure it under cameras")
        self.post = task.post  # the task's outputs → payloads (edge_runtime/tasks/<task>.py)
        self.model_input = getattr(task, "model_input", None)  # (pipeline, times, x) → input
        self._tick = getattr(task, "tick", None)  # (pipeline, now) → outputs due by the clock
        # a policy takes the current values (N, F), not a window (N, 1, F)
        self._flat = m.input.window == 1 and len(self.model.input_shape) == 1
        # set by the daemon when the bundle declares a commissioning calibration
        self.commissioning: Commissioning | None = None
        self.fill = getattr(task, "fill", None)  # (pipeline, window with gaps) → window | None
        if task_options is not None and not hasattr(task, "initial_state"):
            raise ValueError(f"{bundle.root}: task {m.task!r} takes no task options (a "
                             "'soft_sensor' section is for soft-sensor bundles)")
        # what the task remembers between batches (a soft sensor: estimates, bias)
        self.task_state = (task.initial_state(m, task_options)
                           if hasattr(task, "initial_state") else None)
        self.drift_config = drift or DriftConfig()
        self.drift = drift_monitor(name, m, self.drift_config)
        self.windows_built = 0
        self.windows_dropped_gap = 0
        self.gaps_unreported = 0  # the daemon moves these into its counter
        self.timings: list[StageTimes] = []  # one per batch; the daemon drains it into metrics
        self._times: list[float] = []  # grid times of the windows waiting for flush()
        self._windows: list[np.ndarray] = []
        self._pre_s = 0.0  # assembly time of the waiting windows

    def push(self, tag: str, ts: float, value: float, now: float | None = None) -> None:
        """Add one sample received at ``now``; complete windows wait for :meth:`flush` (gap
        windows are counted and dropped here: a model never sees a window with a hole)."""
        start = time.perf_counter()
        buffer = self.buffer
        if buffer.push(tag, ts, value, now) and buffer.due:
            self._take_windows()
        self._pre_s += time.perf_counter() - start

    def push_many(self, job: list[tuple[int, str, list[tuple[float, float]], float | None]]
                  ) -> dict[int, list[int]]:
        """:meth:`push` for a run of messages, ``(key, tag, samples, received_s)`` each, in
        arrival order; windows are cut when a grid step becomes final, as after each push.
        Returns ``key → [late, future]`` sample counts for the messages with refused ones."""
        start = time.perf_counter()
        buffer, push = self.buffer, self.buffer.push
        refused: dict[int, list[int]] = {}
        for key, tag, samples, now in job:
            late, future = buffer.late_samples, buffer.future_samples  # push counts refusals
            for ts, value in samples:
                if push(tag, ts, value, now) and buffer.due:
                    self._take_windows()
            late, future = buffer.late_samples - late, buffer.future_samples - future
            if late or future:
                refused[key] = [late, future]
        self._pre_s += time.perf_counter() - start
        return refused

    def release_eager(self) -> None:
        """End a hold of the window grid (:meth:`GridBuffer.hold_eager`): the steps every tag
        has reported past become final now, without waiting for another sample."""
        start = time.perf_counter()
        self.buffer.release_eager()
        self._take_windows()
        self._pre_s += time.perf_counter() - start

    def _take_windows(self) -> None:
        for grid_t, window in self.buffer.windows():
            if self.batches is not None:  # one grid row: the tracker gives the window
                window = self.batches.add(grid_t, window[-1])
                if window is None:
                    continue
            if self.commissioning is not None:  # it sees every row, gaps too (and refuses)
                self.commissioning.observe(grid_t, window)
            if not np.isfinite(window).all():
                # a task may fill gaps as its training did (soft sensors: mask, interpolate)
                window = self.fill(self, window) if self.fill is not None else None
            if window is None:
                self.windows_dropped_gap += 1
                self.gaps_unreported += 1
                continue
            self._times.append(grid_t)
            self._windows.append(window)

    def flush(self) -> list[Output]:
        """Run every waiting window through the model; return the outputs, in window order."""
        done = self.commissioning.conclude() if self.commissioning is not None else []
        if not self._times:
            return done
        times, windows = self._times, self._windows
        self._times, self._windows = [], []
        t0 = time.perf_counter()
        stacked = np.stack(windows)
        x = self.scaler.transform(stacked)
        t1 = time.perf_counter()
        model_x = self.model_input(self, times, x) if self.model_input is not None else x
        ys = self.model.predict_each(model_x.reshape(len(x), -1) if self._flat else model_x)
        t2 = time.perf_counter()
        outputs = self.post(self, times, x, ys)
        if self.drift is not None:
            outputs += self._drift_outputs(times, stacked, x, ys)
        t3 = time.perf_counter()
        self.timings.append(StageTimes(self._pre_s + t1 - t0, t2 - t1, t3 - t2, len(times)))
        self._pre_s = 0.0
        self.windows_built += len(times)
        return done + outputs

    def _drift_outputs(self, times: list[float], windows: np.ndarray, x: np.ndarray,
                       ys: list[np.ndarray]) -> list[Output]:
        """The drift monitor's raises and clears as ``alarm`` outputs (advisory)."""
        out = self.bundle.manifest.output
        forecast = None
        if out.horizon:  # one-step P50 of the targets, scaled: the residual monitor's input
            forecast = forecast_outputs(ys)[0][:, 0]
            forecast = forecast if out.median_index is None else forecast[..., out.median_index]
        return [self._drift_output(e) for e in self.drift.observe(times, windows, x, forecast)]

    def _drift_output(self, event: DriftEvent) -> Output:
        detail = event.detail
        value = detail.get("psi", detail.get("cusum"))
        payload = self.base_payload() | {
            "ts": iso_ms(event.grid_t), "alarm_id": event.alarm_id, "event": event.transition,
            "state": "active" if event.transition == "raise" else "normal",
            "priority": self.drift_config.priority, "advisory": True,
            "source": [detail["tag"]], "score": value, "threshold": detail["limit"],
            "drift": detail}
        return Output("alarm", payload, event.alarm_id, event.grid_t)

    def tick(self, now: float | None = None) -> list[Output]:
        """Outputs the task owes by the clock rather than by a window (a control policy's
        watchdog: a period no sample completed); the daemon calls it every batch."""
        return self._tick(self, now) if self._tick is not None else []

    def infer(self, grid_t: float, window: np.ndarray) -> list[Output]:
        """Run the model on one valid window now (engineering units, (L, F))."""
        self._times.append(grid_t)
        self._windows.append(np.asarray(window, dtype=np.float32))
        return self.flush()

    def base_payload(self) -> dict[str, Any]:
        """Fields every payload of this model carries."""
        m = self.bundle.manifest
        return {"model": self.name, "version": m.version, "quantization": m.quantization,
                "processed_at": iso_ms(time.time())}


def drift_monitor(name: str, manifest, config: DriftConfig) -> DriftMonitor | None:
    """The model's drift monitor: None when the bundle has no drift statistics (it predates
    them) or the daemon's ``drift.enabled`` is false."""
    if manifest.drift is None or not config.enabled:
        return None
    settings = MonitorSettings(
        window=config.window, check_every=config.check_every, on_delay=config.on_delay,
        off_delay=config.off_delay, clear_ratio=config.clear_ratio, psi_limit=config.psi_limit,
        psi_limits=dict(config.psi_limits), residual_limit=config.residual_limit)
    return DriftMonitor(name, manifest.drift, manifest.input.tag_names, manifest.input.period_s,
                        manifest.input.stride, manifest.output.targets, settings)
