"""Drift at the edge: is the plant still feeding the model what it was trained on?

Two detectors, pure numpy, one code path for training (which fits their reference statistics
and limits and stores them in the bundle's ``drift`` section) and the gateway:

- **input drift**, per tag: the population stability index (PSI) of a rolling window of grid
  rows against the training rows' decile bins. Process data is autocorrelated and moves
  between operating points, so a window's PSI is large even without drift (0.5 to 3 on the
  simulated tank at 360 rows, far above the textbook 0.1 / 0.25); the limit of each tag is
  therefore ``max(floor, margin * the largest PSI of a training sub-window of the same
  length)``: a window is drifting when it is further from the reference than any stretch of
  the training data was.
- **residual drift** of forecasts: the one-step residual (realised - forecast, scaled units)
  standardised by its validation mean and std, into a two-sided tabular CUSUM (Page's test;
  the Page-Hinkley statistic with a floor at 0): ``S+ = max(0, S+ + z - k)``,
  ``S- = max(0, S- - z - k)``, each ``z`` clipped to ±3. It accumulates small persistent
  biases that one residual never shows. The limit is ``max(floor, margin * the largest
  statistic on the validation residuals)``; the statistic is capped at twice the limit so
  that it returns below the clear level within a bounded time once the bias is gone.

:class:`DriftMonitor` keeps both for one model and turns limit crossings into raise/clear
transitions through :class:`~edge_runtime.alarms.AlarmLogic` (on/off delay, deadband): the
daemon publishes them as advisory ISA-18.2 alarms, one per model and tag. The PSI is computed
every ``check_every`` rows on the whole window (vectorised over tags), never per message.
:meth:`DriftMonitor.fit_references` and :meth:`DriftMonitor.use_references` replace the
reference by rows seen at the plant (a commissioning baseline).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_runtime.alarms import AlarmLogic, Transition
from edge_runtime.bundle import DriftSpec, ResidualReference, TagReference, ThresholdSpec

EPS = 1e-4  # share given to an empty bin (PSI is infinite otherwise)
CAP_RATIO = 2.0  # the CUSUM statistic is held at most this multiple of its limit
Z_CLIP = 3.0  # a standardised residual counts at most this much (one outlier is no drift)


# -- PSI --------------------------------------------------------------------------------------
def bin_shares(rows: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of the (finite) rows of ``rows`` (N, F) in each bin of ``edges`` (F, B-1,
    ascending; a value equal to an edge counts above it): (F, B)."""
    rows = np.asarray(rows, dtype=np.float64)
    bins = edges.shape[1] + 1
    shares = np.zeros((rows.shape[1], bins))
    for f in range(rows.shape[1]):  # one searchsorted per tag: memory N, not N x F x B
        col = rows[:, f]
        col = col[np.isfinite(col)]
        counts = np.bincount(np.searchsorted(edges[f], col, side="right"), minlength=bins)
        shares[f] = counts / max(len(col), 1)
    return shares


def psi(actual: np.ndarray, expected: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Population stability index per row of (…, B) shares: ``sum((a - e) * ln(a / e))``,
    empty bins counted as ``eps``."""
    a, e = np.maximum(actual, eps), np.maximum(expected, eps)
    return np.sum((a - e) * np.log(a / e), axis=-1)


def window_psis(rows: np.ndarray, edges: np.ndarray, expected: np.ndarray, window: int,
                step: int) -> np.ndarray:
    """PSI of every sub-window of ``window`` rows (starts ``step`` apart) against
    ``expected``: (windows, F). Counts come from one cumulative sum per tag (memory N x B),
    not one pass per window."""
    rows = np.asarray(rows, dtype=np.float64)
    starts = np.arange(0, len(rows) - window + 1, step)
    out = np.empty((len(starts), rows.shape[1]))
    for f in range(rows.shape[1]):
        col = rows[:, f]
        onehot = np.zeros((len(col) + 1, expected.shape[1]))
        finite = np.isfinite(col)
        onehot[1:][finite, np.searchsorted(edges[f], col[finite], side="right")] = 1.0
        cum = np.cumsum(onehot, axis=0)
        counts = cum[starts + window] - cum[starts]
        out[:, f] = psi(counts / np.maximum(counts.sum(axis=1, keepdims=True), 1), expected[f])
    return out


def fit_tag_references(rows: np.ndarray, tags: list[str], window: int, bins: int = 10,
                       margin: float = 1.5, floor: float = 0.25) -> tuple[list[TagReference], str]:
    """Reference bins and PSI limits of ``rows`` (N, F; NaN = a gap, ignored), and the rule.
    With fewer rows than two windows there is no sub-window to learn from: the limit is
    ``floor`` (the conventional "significant shift" 0.25)."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != len(tags):
        raise ValueError(f"reference rows must be (N, {len(tags)}), got {rows.shape}")
    quantiles = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    edges = np.nanquantile(rows, quantiles, axis=0).T  # (F, B-1)
    if not np.isfinite(edges).all():
        raise ValueError("a tag has no finite reference row")
    expected = bin_shares(rows, edges)
    step = max(window // 8, 1)
    if len(rows) >= 2 * window:
        worst = window_psis(rows, edges, expected, window, step).max(axis=0)
        rule = (f"PSI of {bins} training-quantile bins; limit per tag = max({floor:g}, "
                f"{margin:g} x the largest PSI of a {window}-row training sub-window "
                f"(starts {step} rows apart)) over {len(rows)} reference rows")
    else:
        worst = np.zeros(len(tags))
        rule = (f"PSI of {bins} training-quantile bins; limit {floor:g} (only {len(rows)} "
                f"reference rows: fewer than two {window}-row windows)")
    limits = np.maximum(floor, margin * worst)
    refs = [TagReference(tag=tag, edges=edges[f].tolist(), expected=expected[f].tolist(),
                         mean=float(np.nanmean(rows[:, f])), std=float(np.nanstd(rows[:, f])),
                         psi_limit=float(limits[f]))
            for f, tag in enumerate(tags)]
    return refs, rule


# -- CUSUM ------------------------------------------------------------------------------------
def cusum_path(z: np.ndarray, k: float, cap: np.ndarray | float = np.inf,
               start: tuple[np.ndarray, np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two-sided tabular CUSUM of standardised residuals ``z`` (N, T), each clipped to
    ``±Z_CLIP`` (a set-point step the forecast could not know is one large residual, not a
    bias): the statistic ``max(S+, S-)`` after each row (N, T), whether ``S+`` is the larger
    (N, T: realised above the forecast), and the final ``S+`` and ``S-``."""
    z = np.clip(np.asarray(z, dtype=np.float64), -Z_CLIP, Z_CLIP)
    n_targets = z.shape[1]
    ks = np.broadcast_to(np.asarray(k, dtype=np.float64), (n_targets,)).tolist()
    caps = np.broadcast_to(np.asarray(cap, dtype=np.float64), (n_targets,)).tolist()
    pos = [0.0] * n_targets if start is None else start[0].tolist()
    neg = [0.0] * n_targets if start is None else start[1].tolist()
    stats, sides = [], []
    # a recursion: plain floats beat numpy's per-call cost on a few targets per row
    for row in z.tolist():
        stat, side = [], []
        for j, v in enumerate(row):
            up = pos[j] + v - ks[j]
            up = 0.0 if up < 0.0 else caps[j] if up > caps[j] else up
            down = neg[j] - v - ks[j]
            down = 0.0 if down < 0.0 else caps[j] if down > caps[j] else down
            pos[j], neg[j] = up, down
            stat.append(up if up >= down else down)
            side.append(up >= down)
        stats.append(stat)
        sides.append(side)
    out = np.array(stats, dtype=np.float64).reshape(z.shape)
    above = np.array(sides, dtype=bool).reshape(z.shape)
    pos, neg = np.array(pos), np.array(neg)
    return out, above, pos, neg


def fit_residual_references(residuals: np.ndarray, targets: list[str], k: float = 0.5,
                            margin: float = 1.5, floor: float = 5.0) -> list[ResidualReference]:
    """Residual statistics and CUSUM limits from validation residuals (N, T), scaled units."""
    res = np.asarray(residuals, dtype=np.float64)
    res = res[np.isfinite(res).all(axis=1)]
    if len(res) < 2:
        raise ValueError(f"need at least 2 validation residuals, got {len(res)}")
    mean, std = res.mean(axis=0), np.maximum(res.std(axis=0), 1e-9)
    stats = cusum_path((res - mean) / std, k)[0]
    limits = np.maximum(floor, margin * stats.max(axis=0))
    return [ResidualReference(target=t, mean=float(mean[i]), std=float(std[i]), k=k,
                              limit=float(limits[i])) for i, t in enumerate(targets)]


# -- the monitor of one model -----------------------------------------------------------------
@dataclass
class DriftEvent:
    """A raise or clear of one drift alarm, with what the daemon publishes about it."""

    alarm_id: str
    transition: Transition
    grid_t: float
    detail: dict = field(default_factory=dict)


@dataclass
class MonitorSettings:
    """The daemon's ``drift:`` section, as the monitor needs it (no config import here)."""

    window: int | None = None
    check_every: int = 30
    on_delay: int = 2
    off_delay: int = 2
    clear_ratio: float = 0.8
    psi_limit: float | None = None
    psi_limits: dict[str, float] = field(default_factory=dict)
    residual_limit: float | None = None


class DriftMonitor:
    """Input PSI per tag and (forecasts) residual CUSUM per target for one model.

    :meth:`observe` takes the rows a batch of windows added and returns the alarm
    transitions; ``psi`` / ``cusum`` hold the latest statistics (``checked`` counts PSI
    checks) for the metrics."""

    def __init__(self, model: str, spec: DriftSpec, tags: list[str], period_s: float,
                 stride: int = 1, targets: list[str] | None = None,
                 settings: MonitorSettings | None = None):
        self.model = model
        self.spec = spec
        self.settings = settings or MonitorSettings()
        self.tags = list(tags)
        self.period_s = period_s
        self.stride = stride
        self.window = self.settings.window or spec.window
        self._target_cols = [self.tags.index(t) for t in (targets or [])]
        self._use_reference(spec.tags)
        self._use_residuals(spec.residuals if targets else [])
        self.checked = 0
        self.checks_unreported = 0  # the daemon moves these into its metrics
        self.residuals_seen = 0  # forecasts matched with their realised values
        self.residuals_unreported = False

    # -- reference statistics (replaceable: a commissioning baseline) -------------------
    def _use_reference(self, refs: list[TagReference]) -> None:
        by_tag = {r.tag: r for r in refs}
        missing = [t for t in self.tags if t not in by_tag]
        if missing:
            raise ValueError(f"drift reference of {self.model!r} lacks tags {missing}")
        refs = [by_tag[t] for t in self.tags]
        if len({len(r.edges) for r in refs}) != 1:
            raise ValueError(f"drift reference of {self.model!r}: tags differ in bin count")
        self.references = refs
        self.edges = np.array([r.edges for r in refs], dtype=np.float64)
        self.expected = np.array([r.expected for r in refs], dtype=np.float64)
        s = self.settings
        self.psi_limits = np.array([s.psi_limits.get(r.tag, s.psi_limit or r.psi_limit)
                                    for r in refs])
        self._psi_alarms = [self._logic(limit) for limit in self.psi_limits]
        self.psi_ids = [f"{self.model}.drift.{t}" for t in self.tags]
        self._ring = np.full((self.window, len(self.tags)), np.nan)
        self._filled = self._pos = self._since = 0
        self.psi = np.full(len(self.tags), np.nan)

    def _use_residuals(self, refs: list[ResidualReference]) -> None:
        targets = [self.tags[c] for c in self._target_cols]
        by_target = {r.target: r for r in refs}
        self.residual_refs = [by_target[t] for t in targets if t in by_target]
        self._residual_cols = [self._target_cols[targets.index(r.target)]
                               for r in self.residual_refs]
        self._res_mean = np.array([r.mean for r in self.residual_refs])
        self._res_std = np.array([r.std for r in self.residual_refs])
        self._res_k = np.array([r.k for r in self.residual_refs])
        override = self.settings.residual_limit
        self.residual_limits = np.array([override or r.limit for r in self.residual_refs])
        self._res_alarms = [self._logic(limit) for limit in self.residual_limits]
        self.residual_ids = [f"{self.model}.drift_residual.{r.target}"
                             for r in self.residual_refs]
        self._pos_s = np.zeros(len(self.residual_refs))
        self._neg_s = np.zeros(len(self.residual_refs))
        self._res_index = [self._target_cols.index(c) for c in self._residual_cols]
        self._last_step: int | None = None  # the newest window's grid step ...
        self._last_made = np.full(len(self.residual_refs), np.nan)  # ... and its forecast
        self.cusum = np.zeros(len(self.residual_refs))

    def _logic(self, limit: float) -> AlarmLogic:
        s = self.settings
        return AlarmLogic(ThresholdSpec(raise_at=float(limit),
                                        clear_at=float(limit) * s.clear_ratio,
                                        on_delay=s.on_delay, off_delay=s.off_delay))

    @property
    def alarm_ids(self) -> list[str]:
        return self.psi_ids + self.residual_ids

    def logic(self, alarm_id: str) -> AlarmLogic:
        """The detection logic behind one alarm id (the daemon restores its state)."""
        return (self._psi_alarms + self._res_alarms)[self.alarm_ids.index(alarm_id)]

    def fit_references(self, rows: np.ndarray, margin: float = 1.5,
                       floor: float = 0.25) -> tuple[list[TagReference], str]:
        """Reference bins and PSI limits of ``rows`` (N, F engineering units, e.g. a plant's
        commissioning rows), fitted as training fits them; nothing is changed. With fewer
        rows than two windows there is no sub-window to learn a limit from, and the bare
        floor is far too tight for process data (a stationary AR(1) reads 0.4 and more), so
        the limits in force are kept as the lower bound: only the bins move."""
        refs, rule = fit_tag_references(rows, self.tags, self.window, len(self.edges[0]) + 1,
                                        margin, floor)
        if len(rows) < 2 * self.window:
            refs = [r.model_copy(update={"psi_limit": max(r.psi_limit, float(kept))})
                    for r, kept in zip(refs, self.psi_limits, strict=True)]
            rule += "; limits at least those in force before"
        return refs, rule

    def use_references(self, refs: list[TagReference], rule: str, rows: int) -> None:
        """Watch against ``refs`` from now on (the window restarts); alarm states are kept
        (a clear follows if the drift is gone)."""
        states = [a.active for a in self._psi_alarms]
        self.spec = self.spec.model_copy(update={"tags": refs, "rows": rows, "rule": rule})
        self._use_reference(refs)
        for alarm, active in zip(self._psi_alarms, states, strict=True):
            alarm.active = active

    # -- live -----------------------------------------------------------------------------
    def observe(self, times: list[float], windows: np.ndarray, x: np.ndarray,
                forecast: np.ndarray | None = None) -> list[DriftEvent]:
        """One batch: ``windows`` (N, L, F) engineering units, ``x`` the same scaled,
        ``forecast`` (N, T) the one-step P50 forecasts of the targets (scaled) or None.
        Checks fall on the same rows and events carry the time of the window that caused
        them however the windows are batched (event ids are made from that time)."""
        events: list[DriftEvent] = []
        for n, grid_t in enumerate(times):
            if self._push(windows[n, -self.stride:, :]):  # the rows this window added
                events += self._check_psi(grid_t)
        if forecast is not None and self.residual_refs:
            events += self._residuals(times, x, forecast)
        return sorted(events, key=lambda e: e.grid_t)  # stable: a window's PSI events first

    def _push(self, rows: np.ndarray) -> bool:
        """One window's new rows into the ring; whether a PSI check is due."""
        w = self.window
        for row in rows[-w:]:
            self._ring[self._pos] = row
            self._pos = (self._pos + 1) % w
        self._filled = min(self._filled + len(rows), w)
        self._since += len(rows)
        if self._filled < w or self._since < self.settings.check_every:
            return False
        self._since = 0
        return True

    def _check_psi(self, grid_t: float) -> list[DriftEvent]:
        self.psi = psi(bin_shares(self._ring, self.edges), self.expected)
        self.checked += 1
        self.checks_unreported += 1
        means = self._ring.mean(axis=0)
        events = []
        for f, logic in enumerate(self._psi_alarms):
            transition = logic.update(float(self.psi[f]))
            if transition:
                ref = self.references[f]
                events.append(DriftEvent(self.psi_ids[f], transition, grid_t, {
                    "kind": "input_psi", "tag": ref.tag, "psi": round(float(self.psi[f]), 4),
                    "limit": round(float(self.psi_limits[f]), 4), "window": self.window,
                    "window_mean": round(float(means[f]), 6),
                    "reference_mean": round(ref.mean, 6), "reference_std": round(ref.std, 6)}))
        return events

    def _residuals(self, times: list[float], x: np.ndarray,
                   forecast: np.ndarray) -> list[DriftEvent]:
        """Each window's one-step forecast meets its realised value in the next window (the
        first row that window added), vectorised over the batch; a window lost to a gap
        breaks the chain for one forecast."""
        stride = self.stride
        steps = np.rint(np.asarray(times) / self.period_s).astype(np.int64)
        made = forecast[:, self._res_index]  # (N, T): forecasts of the steps after each
        before = -(1 << 62) if self._last_step is None else self._last_step
        prev_steps = np.concatenate([[before], steps[:-1]])
        prev_made = np.concatenate([self._last_made[None], made[:-1]])
        self._last_step, self._last_made = int(steps[-1]), made[-1]
        ok = steps - prev_steps == stride
        if not ok.any():
            return []
        realised = x[ok, -stride][:, self._residual_cols] - prev_made[ok]
        at = np.asarray(times)[ok].tolist()
        z = (realised - self._res_mean) / self._res_std
        stats, above, self._pos_s, self._neg_s = cusum_path(
            z, self._res_k, CAP_RATIO * self.residual_limits, (self._pos_s, self._neg_s))
        self.cusum = stats[-1]
        self.residuals_seen += len(z)
        self.residuals_unreported = True
        events = []
        for row, (grid_t, values) in enumerate(zip(at, stats.tolist(), strict=True)):
            for i, (logic, value) in enumerate(zip(self._res_alarms, values, strict=True)):
                transition = logic.update(value)  # in time order, across targets
                if transition:
                    ref = self.residual_refs[i]
                    events.append(DriftEvent(self.residual_ids[i], transition, grid_t, {
                        "kind": "forecast_residual", "tag": ref.target,
                        "cusum": round(value, 4),
                        "limit": round(float(self.residual_limits[i]), 4),
                        "direction": "above" if above[row, i] else "below",
                        "reference_mean": round(ref.mean, 6),
                        "reference_std": round(ref.std, 6)}))
        return events

