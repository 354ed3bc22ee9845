"""The daemon's log, read from a real `procedge run` process: configured once from the config
(and the CLI flags), JSON or text with timestamps, broker failures named, commands audited."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from procedge.broker import free_port
from tests.daemon_support import (
    commander,
    edge_config,
    send,
    start_daemon_process,
    wait_for,
    write_config,
)


def _lines(log: Path) -> list[str]:
    return log.read_text(errors="replace").splitlines() if log.exists() else []


def _stop(process) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_json_debug_log_names_the_unreachable_broker(tmp_path, bundles):
    port = free_port()  # nothing listens there
    config = write_config(tmp_path / "edge.yaml", edge_config(
        tmp_path, port, bundles, log_level="DEBUG", log_format="json"))
    log = tmp_path / "daemon.log"
    process = start_daemon_process(config, log)
    try:
        assert wait_for(lambda: any(f"127.0.0.1:{port}" in line and "failed" in line
                                    for line in _lines(log)), 30), _lines(log)[-20:]
    finally:
        _stop(process)
    records = [json.loads(line) for line in _lines(log) if line.startswith("{")]
    text = [line for line in _lines(log) if not line.startswith("{")]
    # every line is one JSON object, but the one LiteRT's native code prints itself
    assert records and all(line.startswith("INFO: Created TensorFlow Lite") for line in text), text
    assert {"ts", "level", "logger", "msg"} <= set(records[0])
    assert all(r["ts"].endswith("Z") for r in records)
    failed = [r for r in records if f"127.0.0.1:{port}" in r["msg"] and "failed" in r["msg"]]
    assert failed[0]["level"] == "WARNING"
    assert any(r["level"] == "INFO" and r["msg"].startswith("started")  # the config's level
               for r in records)
    assert any(r["msg"].startswith("stopped") for r in records)


def test_commands_are_audited_at_log_level_warning(tmp_path, broker, bundles):
    config = write_config(tmp_path / "edge.yaml", edge_config(
        tmp_path, broker.port, bundles, log_level="WARNING", metrics_port=free_port()))
    log = tmp_path / "daemon.log"
    process = start_daemon_process(config, log)
    console = commander(broker.port)
    try:
        deadline = time.monotonic() + 60
        audited = []
        while time.monotonic() < deadline and not audited:
            send(console, "alarm/ack", {"alarm_id": "nope", "by": "operator1"})
            wait_for(lambda: any("command alarm/ack" in line for line in _lines(log)), 2)
            audited = [line for line in _lines(log) if "command alarm/ack" in line]
    finally:
        console.loop_stop()
        console.disconnect()
        _stop(process)
    assert audited, _lines(log)[-20:]
    assert "procedge.edge.audit" in audited[0] and "'operator1'" in audited[0]
    assert "refused (unknown alarm_id)" in audited[0]
    # text format with a timestamp first: 2026-01-01T00:00:00.000Z
    assert audited[0][:4].isdigit() and audited[0][10] == "T"
    assert not any(" INFO procedge.edge: " in line for line in _lines(log))  # level WARNING
