"""Every core of a gateway: the models run in worker processes under one supervisor.

``procedge run`` with ``workers`` above 1 becomes this supervisor. It starts one worker
process per worker name (``multiprocessing``, spawn context: a fresh interpreter, nothing
inherited but the arguments), each a complete :class:`~edge_runtime.daemon.EdgeDaemon` over
its part of the config (:mod:`edge_runtime.partition`): its own MQTT session, subscriptions,
windows, outbox file and input acks. Nothing crosses a process per message; the only traffic
to the supervisor is a status each second (:mod:`edge_runtime.worker_metrics`).

The supervisor restarts a worker that died (or sent nothing for ``HUNG_S``: killed first),
after a backoff that doubles from ``RESTART_MIN_S`` to ``RESTART_MAX_S`` and starts over once
a worker ran ``STABLE_S``; serves one ``/metrics`` and ``/healthz`` for all; and on SIGTERM
stops every worker the way one daemon stops (inputs finished, outbox drained, offline said).
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from edge_runtime.config import EdgeConfig
from edge_runtime.partition import worker_config, worker_names
from edge_runtime.systemd import Notifier
from edge_runtime.worker_metrics import WorkerMetrics, worker_status

log = logging.getLogger("procedge.edge")
STATUS_EVERY_S = 1.0  # a worker's status period
STALE_S = 5.0  # a worker silent this long is reported unhealthy ...
HUNG_S = 60.0  # ... and this long, killed and restarted (its start-up included)
RESTART_MIN_S, RESTART_MAX_S = 0.5, 30.0  # restart backoff, doubling per quick death
STABLE_S = 60.0  # a worker that ran this long starts the backoff over
STOP_TIMEOUT_S = 30.0  # a stopping worker drains its outbox up to 10 s of this

_spawn = multiprocessing.get_context("spawn")


@dataclass
class _Worker:
    name: str
    config: dict  # its EdgeConfig, as JSON-able data (what crosses to the child)
    process: multiprocessing.process.BaseProcess | None = None
    conn: Connection | None = None
    started_at: float = 0.0
    delay_s: float = RESTART_MIN_S  # the backoff before the next restart
    restart_at: float | None = None  # when a dead worker is started again


def backoff(delay_s: float, ran_s: float) -> tuple[float, float]:
    """(wait before this restart, the delay kept for the next): a worker that dies at once
    again and again is restarted ever more slowly, one that ran ``STABLE_S`` at once."""
    wait_s = RESTART_MIN_S if ran_s >= STABLE_S else delay_s
    return wait_s, min(RESTART_MAX_S, wait_s * 2)


class Supervisor:
    def __init__(self, config: EdgeConfig, log_level: str = "INFO", log_format: str = "text"):
        self.config = config
        self.log = (log_level, log_format)
        self.workers = {n: _Worker(n, worker_config(config, n).model_dump(mode="json"))
                        for n in worker_names(config)}
        self.metrics = WorkerMetrics(self.workers)
        self.stopping = threading.Event()
        self._http = None
        self._last_loop = time.monotonic()

    def start(self) -> None:
        """Serve /metrics and /healthz, start every worker; returns at once."""
        if self.config.metrics_port:
            self._http = self.metrics.serve(self.config.metrics_port, self.health,
                                            self.config.metrics_host)
        for worker in self.workers.values():
            self._start(worker, restart=False)
        log.info("supervisor: %d worker processes (%s)", len(self.workers), ", ".join(
            f"{w.name}: {', '.join(m['name'] for m in w.config['models']) or 'cameras'}"
            for w in self.workers.values()))

    def _start(self, worker: _Worker, restart: bool) -> None:
        parent_end, child_end = _spawn.Pipe(duplex=False)
        worker.process = _spawn.Process(target=worker_main, name=f"procedge-{worker.name}",
                                        args=(worker.name, worker.config, child_end, *self.log),
                                        daemon=True)
        worker.process.start()
        child_end.close()  # the child's end lives in the child: EOF here when it dies
        worker.conn, worker.started_at, worker.restart_at = parent_end, time.monotonic(), None
        self.metrics.started(worker.name, worker.process.pid, restart)

    def poll(self, timeout_s: float = 0.5) -> None:
        """One turn of the supervisor: take the statuses that came, notice dead or hung
        workers, restart those whose backoff ended."""
        self._last_loop = time.monotonic()
        running = [w for w in self.workers.values() if w.process is not None]
        ready = wait([w.conn for w in running] + [w.process.sentinel for w in running],
                     timeout_s)
        for worker in running:
            if worker.conn in ready:
                self._receive(worker)
            if worker.process.sentinel in ready or self._hung(worker):
                self._died(worker)
        now = time.monotonic()
        for worker in self.workers.values():
            if worker.restart_at is not None and now >= worker.restart_at \
                    and not self.stopping.is_set():
                self._start(worker, restart=True)

    def _receive(self, worker: _Worker) -> None:
        try:
            while worker.conn.poll():
                self.metrics.received(worker.name, worker.conn.recv())
        except (EOFError, OSError):  # the worker is gone: its sentinel says so too
            pass

    def _hung(self, worker: _Worker) -> bool:
        seen = max(worker.started_at, self.metrics.status[worker.name].at)
        if time.monotonic() - seen < HUNG_S:
            return False
        log.error("worker %s (pid %s) sent no status for %.0f s: killed", worker.name,
                  worker.process.pid, HUNG_S)
        worker.process.kill()
        worker.process.join(5)
        return True

    def _died(self, worker: _Worker) -> None:
        worker.process.join(5)
        code, ran_s = worker.process.exitcode, time.monotonic() - worker.started_at
        worker.conn.close()
        worker.process, worker.conn = None, None
        self.metrics.died(worker.name)
        if self.stopping.is_set():
            return
        wait_s, worker.delay_s = backoff(worker.delay_s, ran_s)
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        log.error("worker %s died (%s) after %.1f s; restarting in %.1f s", worker.name, how,
                  ran_s, wait_s)
        worker.restart_at = time.monotonic() + wait_s

    def health(self) -> tuple[bool, dict]:
        return self.metrics.health(STALE_S)

    def alive(self) -> bool:
        """The supervisor's loop turns (systemd's watchdog is fed while it does)."""
        return time.monotonic() - self._last_loop < 5.0

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop every worker cleanly."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        self.start()
        notifier = Notifier.from_env()
        notifier.start(lambda: self.health()[0], self.alive, self.stopping)
        while not self.stopping.is_set():
            self.poll()
        notifier.send("STOPPING=1")
        self.stop()

    def stop(self) -> None:
        """SIGTERM to every worker (each drains as one daemon does), then wait; a worker
        still running after ``STOP_TIMEOUT_S`` is killed (its outbox keeps what is left)."""
        self.stopping.set()
        running = [w for w in self.workers.values() if w.process is not None]
        for worker in running:
            worker.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in running:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.error("worker %s did not stop in %.0f s: killed", worker.name,
                          STOP_TIMEOUT_S)
                worker.process.kill()
                worker.process.join(5)
            self._died(worker)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        log.info("supervisor stopped")


def worker_main(name: str, config: dict, conn: Connection, log_level: str,
                log_format: str) -> None:
    """A worker process: one daemon over its part of the config, a status to the supervisor
    each second, stopped by SIGTERM/SIGINT or when the supervisor is gone."""
    from edge_runtime.allocator import freeze_startup
    from edge_runtime.daemon import EdgeDaemon
    from edge_runtime.logs import setup_logging

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    setup_logging(log_level, log_format)
    _name_records(name)
    daemon = EdgeDaemon(EdgeConfig.model_validate(config))
    freeze_startup()
    daemon.start()
    parent = multiprocessing.parent_process()
    while True:
        if parent is not None and not parent.is_alive():
            log.error("the supervisor is gone; stopping")
            break
        try:
            conn.send(worker_status(daemon))
        except OSError:  # the pipe closed: the supervisor is gone too
            break
        if stop.wait(STATUS_EVERY_S):
            break
    daemon.stop()


def _name_records(worker: str) -> None:
    """Every log line of a worker says which: ``procedge.edge[w1]: ...`` (its logger name)."""
    def tag(record: logging.LogRecord) -> bool:
        record.name = f"{record.name}[{worker}]"
        return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(tag)
