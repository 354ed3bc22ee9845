"""Hot reload: new bundles (from the watched ``reload.models_dir`` or a ``model/load`` command)
are verified, loaded and warmed up here, off the worker, then handed to the worker as a
:class:`Swap`, which it applies between two messages. A bundle that fails any check is refused
(reported through a callback) and the running version is kept.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.bundle import Bundle, BundleError
from edge_runtime.config import EdgeConfig, EventTimeConfig, ModelConfig
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.pipelines import ModelPipeline

log = logging.getLogger("procedge.edge")


@dataclass
class Swap:
    """A verified, warmed-up pipeline ready to replace the running one of the same name."""

    pipeline: ModelPipeline
    source: str


def load_pipeline(model: ModelConfig, bundle: Bundle,
                  event_time: EventTimeConfig | None = None) -> ModelPipeline:
    et = event_time or EventTimeConfig()
    pipeline = ModelPipeline(model.name, bundle, model.threads, et, et.lateness_of(model))
    shape = (1, *pipeline.model.input_shape)
    pipeline.model.predict(np.zeros(shape, dtype=np.float32))  # warm up before use
    return pipeline


def hand_over(old: ModelPipeline, new: ModelPipeline) -> bool:
    """Carry the running state over to ``new``; whether its input (hence window) is the same."""
    same_input = new.bundle.manifest.input == old.bundle.manifest.input
    if same_input:  # keep the window being filled: no gap in the outputs
        new.buffer = old.buffer
    if new.alarm is not None and old.alarm is not None:
        new.alarm.active = old.alarm.active
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
        self._thread = threading.Thread(target=self._watch, name="procedge-reload", daemon=True)

    def start(self) -> None:
        """Watch ``reload.models_dir`` if set; what is there at start is not "new"."""
        if self.config.reload.models_dir is not None:
            self._seen = self._scan()
            self._thread.start()

    def _scan(self) -> dict[str, float]:
        found = {}
        root = self.config.reload.models_dir
        for entry in sorted(root.iterdir()) if root and root.is_dir() else []:
            marker = entry / "manifest.json" if entry.is_dir() else entry
            if marker.exists() and (entry.is_dir() or entry.suffix == ".zip"):
                found[str(entry)] = marker.stat().st_mtime
        return found

    def _watch(self) -> None:
        while not self.stop.wait(self.config.reload.poll_s):
            try:
                for path, mtime in self._scan().items():
                    if self._seen.get(path) != mtime:
                        self._seen[path] = mtime
                        self.try_bundle(Path(path), "models_dir")
            except Exception:
                log.exception("bundle watcher error")

    def try_bundle(self, path: Path, source: str) -> None:
        """Verify, load and warm up a bundle; hand it to the worker, or refuse it (old kept)."""
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
                bundle = Bundle.load(path, model.public_key)
            pipeline = load_pipeline(model, bundle, self.config.event_time)
        except Exception as exc:  # any failure: refuse and keep the running version
            self.metrics.reloads.labels(result="refused").inc()
            log.error("bundle %s refused (%s): %s", path, source, exc)
            self.refused({"event": "reload", "accepted": False, "path": str(path),
                          "reason": str(exc)[:500]})
            return
        self.ready(Swap(pipeline, f"{source}: {path}"))
