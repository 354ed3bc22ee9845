"""Commissioning calibration, the pure part: check a plant's first rows, then fit the scaler
and/or the alarm limit on them — numpy in, a :class:`Baseline` out, no MQTT, no files.

Why at the edge: a model trained on one plant (or a simulator) meets another plant whose tags
sit at other operating points. A bundle that declares ``calibration: {mode: commission}``
keeps its weights and re-fits only what is plant-specific, on rows of *this* plant known to be
normal (its first ``samples`` grid rows after commissioning starts). The daemon collects them
(:mod:`edge_runtime.commissioner`); an evaluation with the same protocol (SKAB: each file's
first 400 rows are anomaly-free) calls :func:`fit` offline, so the evaluated path is the
deployed one.

The limit is computed by the rule training used (``training/thresholds.py``: the bundle's
``ThresholdSpec`` carries ``method``, ``level``, ``margin``, ``clear_ratio`` and the
smoothing): the window scores are filtered (EWMA, k-of-n, :mod:`edge_runtime.smoothing`),
their ``level`` point taken (:func:`edge_runtime.scoring.level_point`), times ``margin``.

Rows that cannot be trusted are refused, never repaired: a NaN (no fresh sample of a tag), a
hole in the grid, or a flat-lined tag (its scale would be zero) each raise
:class:`CalibrationRefused` naming the tag, and the caller keeps the bundle's own scaler and
limits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import Field

from edge_runtime.bundle import ScalerSpec, TagReference, ThresholdSpec, utc_now_iso
from edge_runtime.contract import Strict
from edge_runtime.payloads import iso_ms
from edge_runtime.scaling import StandardScaler
from edge_runtime.scoring import level_point, window_scores
from edge_runtime.smoothing import smooth_scores
from edge_runtime.windowing import sliding_windows

Fit = Literal["scaler", "limit", "both"]
#: scaled windows (M, L, F) → one raw score per window (M,), e.g. :func:`model_scorer`'s
Scorer = Callable[[np.ndarray], np.ndarray]


class CalibrationRefused(ValueError):
    """Rows a calibration must not be fitted on; ``tag`` names the culprit ("" if none)."""

    def __init__(self, message: str, tag: str = ""):
        super().__init__(message)
        self.tag = tag


class Baseline(Strict):
    """One commissioning's result, as stored (versioned) and published (retained status)."""

    model: str = Field(default="", description="Model name in the daemon (\"\" offline).")
    version: int = Field(default=0, ge=0, description="1, 2, … per model: each (re)baseline.")
    bundle_version: str = Field(default="", description="Bundle version it was fitted for; "
                                "another version invalidates it.")
    state: Literal["calibrated", "refused"] = Field(description="Fitted, or refused (then the "
                                                    "bundle's own scaler and limits apply).")
    reason: str = Field(default="", description="Why refused (names the tag).")
    tag: str = Field(default="", description="The tag a refusal names.")
    fit: Fit = Field(default="both", description="What was fitted.")
    samples: int = Field(default=0, ge=0, description="Grid rows it was fitted on.")
    windows: int = Field(default=0, ge=0, description="Windows scored for the limit.")
    first_ts: str = Field(default="", description="Grid time of the first row (UTC).")
    last_ts: str = Field(default="", description="Grid time of the last row (UTC).")
    scaler: ScalerSpec | None = Field(default=None, description="Fitted scaler (fit scaler, "
                                      "both); None: the bundle's.")
    raise_at: float | None = Field(default=None, description="Fitted raise limit; None: the "
                                   "bundle's.")
    clear_at: float | None = Field(default=None, description="Fitted clear limit.")
    rule: str = Field(default="", description="How the limit was computed.")
    drift: list[TagReference] | None = Field(
        default=None, description="Drift monitor references fitted on the same rows (a "
        "bundle with drift statistics): the drift of the commissioned baseline is watched; "
        "None: the bundle's training references.")
    by: str = Field(default="", description="Who started it: 'start', 'bundle <v>', operator.")
    created_at: str = Field(default_factory=utc_now_iso, description="When it was decided.")

    def thresholds(self, bundle: ThresholdSpec) -> ThresholdSpec:
        """The bundle's limits with this baseline's raise/clear in force (if it fitted them)."""
        if self.state != "calibrated" or self.raise_at is None:
            return bundle
        return bundle.model_copy(update={"raise_at": self.raise_at, "clear_at": self.clear_at,
                                         "rule": self.rule})

    def scaler_or(self, bundle: ScalerSpec) -> StandardScaler:
        """The scaler in force: this baseline's if it fitted one, else the bundle's."""
        spec = self.scaler if self.state == "calibrated" and self.scaler else bundle
        return StandardScaler.from_spec(spec)


def check_rows(rows: np.ndarray, tags: list[str], times: np.ndarray | None = None,
               period_s: float | None = None) -> None:
    """Refuse rows (N, F) in engineering units that a calibration must not use: a non-finite
    value (a tag with no fresh sample), a hole in the grid (``times`` more than ``period_s``
    apart: no tag at all), a flat-lined tag (constant: its scale would be 0, as
    ``training/quality.py`` flags it). Raises :class:`CalibrationRefused` naming the tag."""
    rows = np.asarray(rows, np.float64)
    if rows.ndim != 2 or rows.shape[1] != len(tags):
        raise CalibrationRefused(f"rows have shape {rows.shape}, expected (N, {len(tags)}) for "
                                 f"tags {tags}")
    if len(rows) < 2:
        raise CalibrationRefused(f"{len(rows)} row(s): at least 2 are needed")
    for j, tag in enumerate(tags):
        bad = np.flatnonzero(~np.isfinite(rows[:, j]))
        if len(bad):
            where = f" (first at {iso_ms(float(times[bad[0]]))})" if times is not None else ""
            raise CalibrationRefused(f"tag {tag!r}: {len(bad)} of {len(rows)} commissioning "
                                     f"samples missing or not finite{where}: no fresh sample "
                                     "within max_gap_s", tag)
    if times is not None and period_s is not None:
        _check_grid(np.asarray(times, np.float64), period_s, tags)
    for j, tag in enumerate(tags):
        if np.ptp(rows[:, j]) == 0:
            raise CalibrationRefused(f"tag {tag!r} is flat-lined over the {len(rows)} "
                                     f"commissioning samples (constant {rows[0, j]:g})", tag)


def _check_grid(times: np.ndarray, period_s: float, tags: list[str]) -> None:
    steps = np.diff(times)
    hole = np.flatnonzero((steps > period_s * (1 + 1e-6)) | (steps <= 0))
    if len(hole):
        k = hole[0]
        raise CalibrationRefused(
            f"grid gap in the commissioning samples: {steps[k]:g} s after "
            f"{iso_ms(float(times[k]))} (period {period_s:g} s): every tag "
            f"({', '.join(tags)}) missing", tags[0] if len(tags) == 1 else "")


def fit(rows: np.ndarray, *, tags: list[str], window: int, thresholds: ThresholdSpec | None,
        scaler: ScalerSpec, score: Scorer | None, fit: Fit = "both", stride: int = 1,
        times: np.ndarray | None = None, period_s: float | None = None) -> Baseline:
    """Check ``rows`` (N, F, engineering units, normal operation of this plant) and fit.

    ``scaler``: the bundle's (kept when ``fit`` is ``limit``); ``thresholds``: the bundle's
    (its rule, level, margin, clear ratio and smoothing are applied to the new scores);
    ``score``: scaled windows → raw window scores, through the model (:func:`model_scorer`).
    ``times`` and ``period_s`` (optional) let the grid be checked for holes. Raises
    :class:`CalibrationRefused` (naming the tag) instead of fitting on doubtful rows."""
    rows = np.asarray(rows, np.float64)
    check_rows(rows, tags, times, period_s)
    new_scaler = StandardScaler.fit(rows) if fit in ("scaler", "both") else None
    in_force = new_scaler or StandardScaler.from_spec(scaler)
    result = Baseline(state="calibrated", fit=fit, samples=len(rows),
                      scaler=new_scaler.to_spec() if new_scaler else None,
                      first_ts=iso_ms(float(times[0])) if times is not None else "",
                      last_ts=iso_ms(float(times[-1])) if times is not None else "")
    if fit == "scaler":
        return result
    if thresholds is None or score is None:
        raise ValueError("fitting the limit needs the bundle's thresholds and a scorer")
    x, _ = sliding_windows(in_force.transform(rows), window, stride)
    if len(x) == 0:
        raise CalibrationRefused(f"{len(rows)} samples hold no window of {window}")
    raise_at, clear_at = limit_on(np.asarray(score(x), np.float64), thresholds)
    return result.model_copy(update={
        "windows": len(x), "raise_at": raise_at, "clear_at": clear_at,
        "rule": f"{thresholds.level} {thresholds.method} of filtered commissioning scores "
                f"x {thresholds.margin} ({len(x)} windows)"})


def limit_on(raw_scores: np.ndarray, thresholds: ThresholdSpec) -> tuple[float, float]:
    """(raise_at, clear_at) of normal raw window scores by the bundle's rule: smoothed as
    the alarm sees them, ``margin`` × their ``level`` point, ``clear_ratio`` × that."""
    t = thresholds
    if None in (t.method, t.level, t.margin, t.clear_ratio):
        raise ValueError("the bundle's thresholds lack method, level, margin or clear_ratio "
                         "(built before they were recorded): rebuild it to fit the limit")
    raise_at = level_point(smooth_scores(t, raw_scores), t.method, t.level) * t.margin
    return raise_at, raise_at * t.clear_ratio


def model_scorer(predict: Callable[[np.ndarray], list[np.ndarray]],
                 score: str = "reconstruction") -> Scorer:
    """A :data:`Scorer` from a model's predict (scaled windows → its outputs), scored as the
    edge scores every window (:func:`edge_runtime.scoring.window_scores`)."""
    return lambda x: window_scores(x, predict(np.asarray(x, np.float32)), score)
