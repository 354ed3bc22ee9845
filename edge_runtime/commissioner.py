"""Commissioning at the gateway: one anomaly pipeline's calibration state, and the versioned
store of its baselines. The pure check and fit are :mod:`edge_runtime.commissioning`'s.

States: ``collecting`` (the first ``calibration.samples`` grid rows of this plant are kept;
windows are scored but feed no alarm, inference payloads say ``commissioning: true`` with the
progress), then ``calibrated`` (the fitted scaler and/or limits in force) or ``refused`` (the
rows held a NaN, a hole or a flat-lined tag: the bundle's own scaler and limits stay in
force, the reason names the tag). Collection starts at the first row where every tag has a
value (a tag's first sample may come a moment after the others'); from then on every grid row
counts, so a gap inside the commissioning window refuses it.

Every decision is stored as a new version under ``<state_dir>/baselines/<model>/`` and the
newest is reloaded at start: a restart does not re-commission, a new bundle version does. A
collection under way is not stored: a restart during it starts it again.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import ValidationError

from edge_runtime.alarms import AlarmLogic
from edge_runtime.commissioning import Baseline, CalibrationRefused, fit, model_scorer
from edge_runtime.logs import audit
from edge_runtime.payloads import iso_ms
from edge_runtime.scaling import StandardScaler
from edge_runtime.smoothing import ScoreFilter

if TYPE_CHECKING:
    from edge_runtime.pipelines import ModelPipeline, Output

log = logging.getLogger("procedge.edge")
_VERSION_FILE = re.compile(r"^v(\d+)\.json$")


class BaselineStore:
    """``<root>/baselines/<model>/v<k>.json``, one file per version, written atomically (a
    temporary file, fsync, rename); the highest version is the one in force."""

    def __init__(self, root: Path):
        self.root = Path(root) / "baselines"

    def _dir(self, model: str) -> Path:
        return self.root / model

    def versions(self, model: str) -> list[int]:
        folder = self._dir(model)
        found = [_VERSION_FILE.match(p.name) for p in folder.iterdir()] if folder.is_dir() else []
        return sorted(int(m.group(1)) for m in found if m)

    def latest(self, model: str) -> Baseline | None:
        """The newest stored baseline; an unreadable file is logged (named) and skipped,
        never deleted."""
        for version in reversed(self.versions(model)):
            path = self._dir(model) / f"v{version}.json"
            try:
                return Baseline.model_validate_json(path.read_text())
            except (OSError, ValueError, ValidationError) as exc:
                log.error("commissioning baseline %s unreadable, skipped: %s", path,
                          str(exc).splitlines()[0])
        return None

    def save(self, baseline: Baseline) -> Baseline:
        """Store ``baseline`` as the model's next version; returns it with that version."""
        folder = self._dir(baseline.model)
        folder.mkdir(parents=True, exist_ok=True)
        versions = self.versions(baseline.model)
        stored = baseline.model_copy(update={"version": (versions[-1] if versions else 0) + 1})
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".v", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            handle.write(stored.model_dump_json(indent=2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, folder / f"v{stored.version}.json")
        return stored


class Commissioning:
    """The commissioning of one pipeline (attached as ``pipeline.commissioning``)."""

    def __init__(self, pipeline: ModelPipeline, store: BaselineStore, by: str = "start"):
        self.pipeline = pipeline
        self.store = store
        self.spec = pipeline.bundle.manifest.calibration
        self.samples = self.spec.samples
        self.baseline: Baseline | None = None
        self.state = "collecting"
        self.note = ""  # why collecting (first start, invalidated baseline, rebaseline by …)
        self.started_by = by
        self.until = float("-inf")  # windows at or before this grid time were commissioning
        self._seen_t = float("-inf")  # newest grid time observed
        self._times: list[float] = []
        self._rows: list[np.ndarray] = []
        self._load()

    def _load(self) -> None:
        version = self.pipeline.bundle.manifest.version
        stored = self.store.latest(self.pipeline.name)
        if stored is not None and stored.bundle_version == version:
            self.baseline, self.state = stored, stored.state
            self._apply(stored)
            log.info("model %s: commissioning baseline v%d (%s) reloaded", self.pipeline.name,
                     stored.version, stored.state)
            return
        if stored is not None:
            self.note = (f"baseline v{stored.version} was for bundle version "
                         f"{stored.bundle_version}, not {version}: commissioning again")
            audit.info("model %s: %s", self.pipeline.name, self.note)
        self._apply(None)

    # -- collection (worker, from the pipeline's push path) --------------------------------
    @property
    def collecting(self) -> bool:
        return self.state == "collecting"

    def observe(self, grid_t: float, window: np.ndarray) -> None:
        """A window the grid completed (valid or not): keep its rows newer than the last."""
        if not self.collecting or len(self._times) >= self.samples:
            self._seen_t = max(self._seen_t, grid_t)
            return
        period = self.pipeline.bundle.manifest.input.period_s
        last = self._times[-1] if self._times else self._seen_t
        for k, row in enumerate(window):
            t = grid_t - (len(window) - 1 - k) * period
            if t <= last + 1e-9 or len(self._times) >= self.samples:
                continue
            if not self._times and not np.isfinite(row).all():
                continue  # collection starts at the first row every tag has reached
            self._times.append(t)
            self._rows.append(np.array(row, np.float64))
            last = t
        self._seen_t = max(self._seen_t, grid_t)

    def in_commissioning(self, grid_t: float) -> bool:
        """Whether the window at ``grid_t`` belongs to the commissioning (feeds no alarm)."""
        return self.collecting or grid_t <= self.until + 1e-9

    def progress(self, grid_t: float | None = None) -> dict:
        """Samples collected (as of the window at ``grid_t``, or now) of those needed."""
        if not self.collecting:
            done = self.samples
        elif grid_t is None:
            done = len(self._times)
        else:
            done = bisect.bisect_right(self._times, grid_t + 1e-9)  # no list→array copy
        return {"samples": min(done, self.samples), "of": self.samples}

    # -- decisions -------------------------------------------------------------------------
    def conclude(self) -> list[Output]:
        """(worker, before a batch's windows are scaled) Fit once the samples are in; the
        result is stored, put in force and returned as the retained status."""
        if not self.collecting or len(self._times) < self.samples:
            return []
        p, m = self.pipeline, self.pipeline.bundle.manifest
        times, rows = np.array(self._times), np.stack(self._rows)
        self._times, self._rows = [], []
        common = {"model": p.name, "bundle_version": m.version, "by": self.started_by}
        try:
            result = fit(rows, tags=p.tags, window=m.input.window, thresholds=m.thresholds,
                         scaler=m.scaler, fit=self.spec.fit, stride=m.input.stride,
                         score=model_scorer(p.model.predict_each, m.thresholds.score),
                         times=times, period_s=m.input.period_s)
            result = result.model_copy(update=common | self._drift_references(rows))
        except Exception as exc:  # refused rows, or a fit that failed: the bundle's stay
            if not isinstance(exc, CalibrationRefused):
                log.exception("model %s: commissioning fit failed", p.name)
            result = Baseline(state="refused", reason=str(exc)[:500],
                              tag=getattr(exc, "tag", ""), fit=self.spec.fit,
                              samples=len(rows), first_ts=iso_ms(float(times[0])),
                              last_ts=iso_ms(float(times[-1])), **common)
        self.baseline = self.store.save(result)
        self.state, self.note, self.until = result.state, "", float(times[-1])
        self._apply(self.baseline)
        self._log(self.baseline)
        return [self.status_output(float(times[-1]))]

    def restart(self, by: str) -> None:
        """Collect again from the next grid row (rebaseline after maintenance, a new bundle):
        the bundle's own scaler and limits meanwhile, no alarms."""
        self.state, self.started_by = "collecting", by
        self.note = f"rebaseline by {by}"
        self.baseline = None
        self._times, self._rows = [], []
        self.until = float("-inf")
        self._apply(None)

    def _drift_references(self, rows: np.ndarray) -> dict:
        """The drift monitor's references fitted on the commissioning rows (if it has one)."""
        drift = self.pipeline.drift
        return {} if drift is None else {"drift": drift.fit_references(rows)[0]}

    def _apply_drift(self, baseline: Baseline | None) -> None:
        """The drift monitor watches the baseline in force: the commissioned rows', or the
        bundle's training references."""
        p, m = self.pipeline, self.pipeline.bundle.manifest
        if p.drift is None or m.drift is None:
            return
        if baseline is not None and baseline.state == "calibrated" and baseline.drift:
            p.drift.use_references(baseline.drift, f"commissioning baseline v{baseline.version}",
                                   baseline.samples)
        else:
            p.drift.use_references(m.drift.tags, m.drift.rule, m.drift.rows)

    def _apply(self, baseline: Baseline | None) -> None:
        """Put a baseline's scaler and limits in force (None or refused: the bundle's); the
        score filter and the alarm's delay counts start afresh, as the scores' scale may have
        changed (whether the alarm is active is kept)."""
        p, m = self.pipeline, self.pipeline.bundle.manifest
        if baseline is None:
            p.scaler, p.thresholds = StandardScaler.from_spec(m.scaler), m.thresholds
        else:
            p.scaler, p.thresholds = baseline.scaler_or(m.scaler), baseline.thresholds(m.thresholds)
        if p.alarm is not None:
            p.alarm = AlarmLogic(p.thresholds, active=p.alarm.active)
        p.score_filter = ScoreFilter(p.thresholds)
        self._apply_drift(baseline)

    def _log(self, b: Baseline) -> None:
        name = self.pipeline.name
        if b.state == "refused":
            log.warning("model %s: commissioning refused, the bundle's own scaler and limits "
                        "stay in force: %s", name, b.reason)
            audit.info("model %s: commissioning v%d refused (%s): %s", name, b.version, b.by,
                       b.reason)
            return
        limits = (f"raise_at {b.raise_at:.6g}, clear_at {b.clear_at:.6g}"
                  if b.raise_at is not None else "bundle limits")
        audit.info("model %s: commissioning baseline v%d calibrated (%s) on %d samples "
                   "%s..%s: %s, %s", name, b.version, b.by, b.samples, b.first_ts, b.last_ts,
                   "fitted scaler" if b.scaler else "bundle scaler", limits)

    # -- status ----------------------------------------------------------------------------
    def status(self) -> dict:
        """The retained status: state, progress, the baseline in force (or the refusal)."""
        m = self.pipeline.bundle.manifest
        body = {"model": self.pipeline.name, "bundle_version": m.version, "state": self.state,
                "progress": self.progress(), "fit": self.spec.fit,
                "baseline": self.baseline.model_dump() if self.baseline else None,
                "note": self.note}
        if self.state == "refused" and self.baseline is not None:
            body |= {"reason": self.baseline.reason, "tag": self.baseline.tag}
        return body

    def status_output(self, grid_t: float) -> Output:
        from edge_runtime.pipelines import Output

        return Output("commissioning", self.status(), grid_t=grid_t)
