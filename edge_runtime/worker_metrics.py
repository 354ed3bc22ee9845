"""One ``/metrics`` and ``/healthz`` for all the worker processes of a gateway.

Each worker is a daemon with its own registry; once a second it sends the supervisor a small
status over its pipe (:func:`worker_status`: its health and its registry's samples as
collected). The supervisor serves the latest of each as one endpoint: every worker sample
with a ``worker`` label added (sum over it for the gateway's total), and its own
``procedge_worker_up`` and ``procedge_worker_restarts_total``. Chosen over
prometheus-client's multiprocess mode, which needs a shared directory of mmap files and
cannot serve gauges read at scrape time (the outbox depth, the alarm states): here a worker's
scrape-time gauges are read by the worker itself, once a second.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Metric

from edge_runtime.metrics import DaemonMetrics


@dataclass
class WorkerStatus:
    """What a worker last said (received at ``at``, monotonic) and whether its process runs."""

    up: bool = False
    pid: int | None = None
    ok: bool = False
    detail: dict = field(default_factory=dict)
    families: list[Metric] = field(default_factory=list)
    at: float = 0.0


def worker_status(daemon) -> dict:
    """The message a worker sends each second: health and its metrics as collected."""
    ok, detail = daemon.health()
    return {"ok": ok, "detail": detail, "families": list(daemon.metrics.registry.collect())}


class WorkerMetrics:
    """The supervisor's registry: its own per-worker series and every worker's samples."""

    serve = DaemonMetrics.serve  # the same /metrics + /healthz server as one daemon's

    def __init__(self, names: Iterable[str]) -> None:
        self.registry = CollectorRegistry()
        self.status: dict[str, WorkerStatus] = {n: WorkerStatus() for n in names}
        self.restart_count = dict.fromkeys(self.status, 0)
        self.up = Gauge("procedge_worker_up", "1 while the worker process runs.", ["worker"],
                        registry=self.registry)
        self.restarts = Counter("procedge_worker_restarts_total", "Worker processes started "
                                "again after they died (or hung).", ["worker"],
                                registry=self.registry)
        for name in self.status:  # every series present from the start, at 0
            self.up.labels(worker=name).set(0)
            self.restarts.labels(worker=name)
        self.registry.register(_WorkerFamilies(self.status))

    def received(self, name: str, message: dict) -> None:
        s = self.status[name]
        s.ok, s.detail, s.families, s.at = (message["ok"], message["detail"],
                                            message["families"], time.monotonic())

    def started(self, name: str, pid: int | None, restart: bool) -> None:
        self.status[name] = WorkerStatus(up=True, pid=pid, at=time.monotonic())
        self.up.labels(worker=name).set(1)
        if restart:
            self.restarts.labels(worker=name).inc()
            self.restart_count[name] += 1

    def died(self, name: str) -> None:
        """A worker's process ended: its samples go (its counters restart with it)."""
        self.status[name] = WorkerStatus(up=False)
        self.up.labels(worker=name).set(0)

    def health(self, stale_s: float) -> tuple[bool, dict]:
        """Healthy when every worker runs, is healthy itself and reported within ``stale_s``."""
        now = time.monotonic()
        workers = {}
        for name, s in self.status.items():
            fresh = s.up and bool(s.detail) and now - s.at <= stale_s
            workers[name] = {"up": s.up, "pid": s.pid, "ok": s.ok and fresh,
                             "restarts": self.restart_count[name],
                             **s.detail}
        return all(w["ok"] for w in workers.values()), {"workers": workers}


class _WorkerFamilies:
    """A custom collector: the workers' last families, merged by name, ``worker`` labelled."""

    def __init__(self, status: dict[str, WorkerStatus]) -> None:
        self.status = status

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for name, s in list(self.status.items()):
            for family in s.families:
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(family.name, family.documentation,
                                                        family.type, family.unit)
                for sample in family.samples:
                    into.add_sample(sample.name, sample.labels | {"worker": name},
                                    sample.value, sample.timestamp, sample.exemplar)
        return merged.values()
