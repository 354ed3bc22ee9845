"""Worker processes under a supervisor (``workers:``): the partition, and a SIGKILLed worker
restarted with nothing lost while the other one carries on."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from prometheus_client import generate_latest

from edge_runtime.config import EdgeConfig
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.outbox import PRIO_ALARM, Message, Outbox
from edge_runtime.partition import assign, worker_config, worker_outbox
from edge_runtime.payloads import parse_timestamp
from edge_runtime.supervisor import RESTART_MIN_S, STABLE_S, backoff
from edge_runtime.validation import ConfigError, validate
from edge_runtime.worker_metrics import WorkerMetrics, worker_status
from procedge.broker import free_port
from tests.daemon_support import (
    UNS,
    Collector,
    edge_config,
    healthy,
    labelled_run,
    samples,
    start_daemon_process,
    wait_for,
    write_config,
)

MODELS = [{"name": n, "bundle": f"/b/{n}"} for n in ("a", "b", "c")]


def config_error(**raw) -> str:
    with pytest.raises(ConfigError) as info:
        validate(EdgeConfig, {"models": MODELS} | raw, Path("edge.yaml"), "edge config")
    return str(info.value)


def test_partition_round_robin_and_explicit_groups():
    config = EdgeConfig.model_validate({"models": MODELS, "workers": 2})
    assert assign(config) == {"w0": ["a", "c"], "w1": ["b"]}
    models = [m | {"process": "slow"} if m["name"] == "a" else m for m in MODELS]
    config = EdgeConfig.model_validate({"models": models, "workers": ["fast", "slow"],
                                        "mqtt": {"client_id": "gw"},
                                        "outbox": {"path": "/data/out.sqlite"}})
    assert assign(config) == {"fast": ["b"], "slow": ["a", "c"]}
    mine = worker_config(config, "slow")  # a daemon of its own: client id, outbox, topics
    assert [m.name for m in mine.models] == ["a", "c"] and mine.workers == 1
    assert mine.mqtt.client_id == "gw-slow" and mine.gateway == "gw1-slow"
    assert mine.outbox.path == Path("/data/out-slow.sqlite") and mine.metrics_port == 0
    # what crosses to the worker process validates there as its own config
    assert EdgeConfig.model_validate(mine.model_dump(mode="json")) == mine


def test_partition_errors_name_the_field():
    assert "workers: 0: at least 1" in config_error(workers=0)
    assert "workers: worker names ['x', 'x']: each name once" in config_error(workers=["x", "x"])
    bad = [MODELS[0] | {"process": "gpu"}, *MODELS[1:]]
    assert "models[0].process: unknown worker 'gpu' (workers: w0, w1)" in config_error(
        models=bad, workers=2)
    assert "workers: w3 would run no model" in config_error(workers=4)
    assert "sparkplug.output: not supported with several worker" in config_error(
        workers=2, sparkplug={"output": {"group": "plant"}})


def test_one_endpoint_labels_each_workers_samples_and_reports_each_worker():
    class Worker:  # what worker_status reads of a daemon
        def __init__(self, messages: int):
            self.metrics = DaemonMetrics()
            self.metrics.messages.inc(messages)

        def health(self):
            return True, {"connected": True}

    endpoint = WorkerMetrics(["w0", "w1"])
    for name, messages in (("w0", 3), ("w1", 5)):
        endpoint.started(name, pid=100, restart=name == "w1")
        endpoint.received(name, worker_status(Worker(messages)))
    text = generate_latest(endpoint.registry).decode()
    assert 'procedge_messages_total{worker="w0"} 3.0' in text
    assert 'procedge_messages_total{worker="w1"} 5.0' in text
    assert text.count("# TYPE procedge_messages_total counter") == 1  # one family, merged
    assert 'procedge_worker_restarts_total{worker="w1"} 1.0' in text
    assert endpoint.health(stale_s=5)[0]
    endpoint.died("w1")
    ok, detail = endpoint.health(stale_s=5)
    assert not ok and detail["workers"]["w1"] == {"up": False, "pid": None, "ok": False,
                                                  "restarts": 1}
    assert 'worker="w1"} 5.0' not in generate_latest(endpoint.registry).decode()
    assert not endpoint.health(stale_s=0)[0]  # w0 too: its status is older than 0 s


def test_restart_backoff_doubles_on_quick_deaths_and_starts_over_after_a_stable_run():
    delay, waits = RESTART_MIN_S, []
    for _ in range(8):
        wait, delay = backoff(delay, ran_s=1.0)
        waits.append(wait)
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff(delay, ran_s=STABLE_S) == (RESTART_MIN_S, 2 * RESTART_MIN_S)


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.read().decode()


def _times(collector: Collector, model: str) -> set[float]:
    return {parse_timestamp(p["ts"]) for p in collector.json(f"/inference/{model}")
            if "ts" in p}


def test_killed_worker_restarts_and_loses_nothing(tmp_path: Path, broker, bundles):
    """tank_anomaly runs in w0, tank_forecast in w1. With the supervisor frozen (so the
    restart waits), w1 is SIGKILLed and a committed, unsent row is left in its outbox (what a
    kill between commit and publish leaves). w0 goes on publishing; once the supervisor runs
    again, w1 is restarted, sends the row and the inputs that queued for it at the broker."""
    port = free_port()
    config = edge_config(tmp_path, broker.port, bundles, metrics_port=port, workers=2)
    path = write_config(tmp_path / "edge.yaml", config)
    watch = Collector(broker.port, [f"{UNS}/inference/#", "planted/#"], client_id="watch")
    feeder = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="feeder")
    feeder.connect("127.0.0.1", broker.port)
    feeder.loop_start()
    run = labelled_run(200)
    tags = len(run.tag_names)

    def feed(first: int, last: int) -> None:
        infos = [feeder.publish(f"{UNS}/raw/{tag}", payload, qos=1)
                 for tag, payload in samples(run, first, last)]
        for info in infos:
            info.wait_for_publish(5)

    supervisor = start_daemon_process(path, tmp_path / "daemon.log")
    try:
        assert wait_for(lambda: healthy(port), 30), (tmp_path / "daemon.log").read_text()
        pids = {n: w["pid"] for n, w in json.loads(_get(port, "/healthz"))["workers"].items()}
        feed(0, 60)
        assert wait_for(lambda: _times(watch, "tank_anomaly") and _times(watch, "tank_forecast"),
                        10)
        os.kill(supervisor.pid, signal.SIGSTOP)
        os.kill(pids["w1"], signal.SIGKILL)
        outbox = Outbox(worker_outbox(tmp_path / "outbox.sqlite", "w1"))
        outbox.put([Message("planted/w1", b'{"unsent": true}', PRIO_ALARM)])
        outbox.close()
        feed(60, 120)
        t_last = float(run.timestamps[115])  # the newest steps wait for a later sample
        assert wait_for(lambda: t_last in _times(watch, "tank_anomaly"), 10)  # w0 unaffected
        assert max(_times(watch, "tank_forecast")) < run.timestamps[60]  # w1 dead: none
        os.kill(supervisor.pid, signal.SIGCONT)
        assert wait_for(lambda: [p["unsent"] for p in watch.json("planted/w1")] == [True], 15)
        # the inputs queued for w1 at the broker: its forecasts resume past its window refill
        assert wait_for(lambda: t_last in _times(watch, "tank_forecast"), 10)
        assert wait_for(lambda: healthy(port), 10)
        workers = json.loads(_get(port, "/healthz"))["workers"]
        assert workers["w0"]["pid"] == pids["w0"] and workers["w1"]["pid"] != pids["w1"]
        assert workers["w1"]["restarts"] == 1 and workers["w0"]["restarts"] == 0
        metrics = _get(port, "/metrics")
        assert 'procedge_worker_restarts_total{worker="w1"} 1.0' in metrics
        assert 'procedge_worker_restarts_total{worker="w0"} 0.0' in metrics
        assert 'procedge_worker_up{worker="w1"} 1.0' in metrics
        # counters reach /metrics in each worker's status, sent once a second: wait a few for
        # the exact count (every input of w0, none lost, none twice), then say what was there
        expected = f'procedge_messages_total{{worker="w0"}} {120.0 * tags}'
        assert wait_for(lambda: expected in _get(port, "/metrics"), 5), [
            line for line in _get(port, "/metrics").splitlines()
            if line.startswith("procedge_messages_total")]
    finally:
        os.kill(supervisor.pid, signal.SIGCONT)
        supervisor.terminate()
        assert supervisor.wait(30) == 0
        feeder.loop_stop()
        watch.close()
