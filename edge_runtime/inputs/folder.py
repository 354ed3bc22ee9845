"""Camera frames dropped in a watched folder: polled by a thread per camera and put in the
worker's inbox on the camera's topic, so they take the same path as frames over MQTT."""

from __future__ import annotations

import logging
import queue
import threading
import time

from edge_runtime.config import CameraConfig
from edge_runtime.imaging import FolderWatcher
from edge_runtime.inputs import Inbound, InputSource
from edge_runtime.routing import Topics

log = logging.getLogger("procedge.edge")


class FolderSource(InputSource):
    def __init__(self, cameras: list[CameraConfig], topics: Topics, inbox: queue.Queue,
                 stop: threading.Event):
        self.cameras = [c for c in cameras if c.watch_dir is not None]
        self.topics = topics
        self.inbox = inbox
        self.stop = stop

    def start(self) -> None:
        for camera in self.cameras:
            threading.Thread(target=self._watch, args=(camera,), daemon=True,
                             name=f"procedge-watch-{camera.name}").start()

    def _watch(self, camera: CameraConfig) -> None:
        watcher = FolderWatcher(camera.watch_dir, camera.max_bytes)
        topic = self.topics.camera(camera.topic, camera.name)
        while not self.stop.wait(camera.watch_interval_s):
            try:
                for _, data in watcher.poll():
                    self.inbox.put(Inbound(topic, data, time.time()))
            except Exception:  # a folder problem must not end the thread
                log.exception("watching %s", camera.watch_dir)
