"""Hot reload: new bundles (from the watched ``reload.models_dir`` or a ``model/load`` command)
are verified, loaded and warmed up here, off the worker, then handed to the worker as a
:class:`Swap`, which it applies between two messages. A bundle that fails any check is refused
(reported through a callback) and the running version is kept.

One thread does it all, one bundle at a time: loads start at least ``reload.min_interval_s``
apart, at most ``reload.max_pending`` requests wait (a request for a path already waiting is
coalesced with it; beyond that, refused as busy), so a flood of ``model/load`` commands costs
neither threads nor memory. A zip bundle's temporary folder is removed once its interpreter
is built, and nothing here keeps a replaced pipeline alive.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.bundle import Bundle, BundleError, verify_signature
from edge_runtime.config import DriftConfig, EdgeConfig, EventTimeConfig, ModelConfig
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.pipelines import ModelPipeline

log = logging.getLogger("procedge.edge")


@dataclass
class Swap:
    """A verified, warmed-up pipeline ready to replace the running one of the same name."""

    pipeline: ModelPipeline
    source: str


def load_pipeline(model: ModelConfig, bundle: Bundle,
                  event_time: EventTimeConfig | None = None,
                  drift: DriftConfig | None = None) -> ModelPipeline:
    """Build and warm up the pipeline of a verified bundle. The bundle's temporary folder (a
    zip's) is removed then, built or not: LiteRT maps the model file when the interpreter is
    built, and the mapping outlives the file."""
    et = event_time or EventTimeConfig()
    try:
        control = bundle.manifest.task == "control"
        if model.control is not None and not control:
            raise ValueError(f"model {model.name}: a 'control' section is for control "
                             f"bundles; {bundle.root} is task {bundle.manifest.task!r}")
        pipeline = ModelPipeline(model.name, bundle, model.threads, et, et.lateness_of(model),
                                 model.control if control else model.soft_sensor, drift)
        shape = (1, *pipeline.model.input_shape)
        pipeline.model.predict(np.zeros(shape, dtype=np.float32))  # warm up before use
    finally:
        bundle.release()
    return pipeline


def hand_over(old: ModelPipeline, new: ModelPipeline) -> bool:
    """Carry the running state over to ``new``; whether its input (hence window) is the same."""
    same_input = new.bundle.manifest.input == old.bundle.manifest.input
    if same_input:  # keep the window being filled: no gap in the outputs
        new.buffer = old.buffer
    if new.alarm is not None and old.alarm is not None:
        new.alarm.active = old.alarm.active
    if new.bundle.manifest.task == old.bundle.manifest.task == "control":
        from edge_runtime.tasks.control import hand_over as control_hand_over

        control_hand_over(old, new)
    # drift alarm states: the daemon's swap sets them from the ISA alarms (_drift_alarms)
    return same_input


class Reloader:
    def __init__(self, config: EdgeConfig, pipelines: dict[str, ModelPipeline],
                 metrics: DaemonMetrics, ready: Callable[[Swap], None],
                 refused: Callable[[dict], None], stop: threading.Event):
        """``pipelines``: the running ones (read only here); ``ready`` hands a swap to the
        worker; ``refused`` reports a refusal (a reply body)."""
        self.config = config
        self.pipelines = pipelines
        self.metrics = metrics
        self.ready = ready
        self.refused = refused
        self.stop = stop
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[Path, str]] = {}  # path → (path, source), in order
        self._loading = 0  # 1 while a bundle loads
        self._last_start = float("-inf")
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="procedge-reload", daemon=True)

    def start(self) -> None:
        """Start the reload thread; watch ``reload.models_dir`` if set (what is there at
        start is not "new")."""
        if self.config.reload.models_dir is not None:
            self._seen = self._scan()
        self._thread.start()

    def request(self, path: Path, source: str) -> tuple[bool, str]:
        """Queue a bundle for loading; returns at once ``(accepted, reason)`` for the reply.
        The load's own result (swapped or refused) follows on the reply topic."""
        key = str(path)
        with self._lock:
            if key in self._pending:
                self.metrics.reloads.labels(result="coalesced").inc()
                return True, ("coalesced with the queued load of the same path; its result "
                              "follows on the reply topic")
            if len(self._pending) >= self.config.reload.max_pending:
                self.metrics.reloads.labels(result="busy").inc()
                return False, (f"reload busy: {len(self._pending)} bundle(s) queued "
                               "(reload.max_pending); try again later")
            ahead = len(self._pending) + self._loading
            self._pending[key] = (path, source)
        self._wake.set()
        return True, (f"queued behind {ahead} load(s)" if ahead else "loading") + \
            "; the result follows on the reply topic"

    def _scan(self) -> dict[str, float]:
        found = {}
        root = self.config.reload.models_dir
        for entry in sorted(root.iterdir()) if root and root.is_dir() else []:
            marker = entry / "manifest.json" if entry.is_dir() else entry
            if marker.exists() and (entry.is_dir() or entry.suffix == ".zip"):
                found[str(entry)] = marker.stat().st_mtime
        return found

    def _watch(self) -> None:
        """New or changed bundles in ``models_dir`` are queued like a command's (one not
        queued, the queue being full, is seen again on the next scan)."""
        for path, mtime in self._scan().items():
            if self._seen.get(path) != mtime and self.request(Path(path), "models_dir")[0]:
                self._seen[path] = mtime

    def _run(self) -> None:
        reload = self.config.reload
        next_scan = time.monotonic() + reload.poll_s
        while not self.stop.is_set():
            if reload.models_dir is not None and time.monotonic() >= next_scan:
                try:
                    self._watch()
                except Exception:
                    log.exception("bundle watcher error")
                next_scan = time.monotonic() + reload.poll_s
            with self._lock:
                wait = self._last_start + reload.min_interval_s - time.monotonic()
                item = self._pending.pop(next(iter(self._pending))) if \
                    self._pending and wait <= 0 else None
                self._loading = int(item is not None)
            if item is None:  # nothing due: sleep until woken, the rate limit, or a scan
                idle = 0.5 if not self._pending else max(wait, 0.0)
                if reload.models_dir is not None:
                    idle = min(idle, max(next_scan - time.monotonic(), 0.0))
                self._wake.wait(idle)
                self._wake.clear()
                continue
            self._last_start = time.monotonic()
            try:
                self.try_bundle(*item)
            finally:
                with self._lock:
                    self._loading = 0
            del item  # keep no reference to the pipeline just handed over

    def try_bundle(self, path: Path, source: str) -> None:
        """Verify, load and warm up a bundle; hand it to the worker, or refuse it (old kept).
        Runs in the reload thread (tests call it directly)."""
        bundle = None
        try:
            bundle = Bundle.load(path)
            current = next((p for p in self.pipelines.values()
                            if p.bundle.manifest.name == bundle.manifest.name), None)
            if current is None:
                raise BundleError(f"{path}: no running model uses bundle "
                                  f"{bundle.manifest.name!r}")
            if current.bundle.manifest.task != bundle.manifest.task:
                raise BundleError(f"{path}: task {bundle.manifest.task} differs from the "
                                  f"running {current.bundle.manifest.task}")
            model = next(m for m in self.config.models if m.name == current.name)
            if model.public_key is not None:  # a signed deployment stays signed
                verify_signature(bundle.root, Path(model.public_key))
            pipeline = load_pipeline(model, bundle, self.config.event_time,
                                     self.config.drift)
        except Exception as exc:  # any failure: refuse and keep the running version
            if bundle is not None:
                bundle.release()
            self.metrics.reloads.labels(result="refused").inc()
            log.error("bundle %s refused (%s): %s", path, source, exc)
            self.refused({"event": "reload", "accepted": False, "path": str(path),
                          "reason": str(exc)[:500]})
            return
        self.ready(Swap(pipeline, f"{source}: {path}"))
