"""Interoperability with an independent Sparkplug B implementation: ``pysparkplug`` 0.6.1
(needs paho-mqtt < 2, so it lives in its own virtualenv, created by this test and cached under
``~/.cache/procedge-interop/pysparkplug-0.6.1``; ``$PROCEDGE_INTEROP_CACHE`` moves it).

Against a real Mosquitto and the real daemon, pysparkplug is
- the primary host (tests/interop/spb_host.py): its STATE gates procedge's NBIRTH; it decodes
  every NBIRTH/NDATA/NDEATH with its own classes (aliases and datatypes from the birth), and
  its rebirth NCMD must produce a new NBIRTH;
- a PLC (tests/interop/spb_plc.py): NBIRTH, DBIRTH, then DDATA by alias only, which must drive
  procedge's models to exactly the inferences the same samples give as JSON.

Skipped only when pip cannot reach the package index (the reason says so)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_runtime.config import EdgeConfig
from edge_runtime.sparkplug import codec
from tests.daemon_support import (
    UNS,
    Collector,
    edge_config,
    labelled_run,
    reference_events,
    samples,
    wait_for,
)

VERSION = "0.6.1"
HERE = Path(__file__).resolve().parent / "interop"
GROUP, PLC, DEVICE, HOST = "Interop", "pyplc", "tank1", "pyhost"
ME = f"spBv1.0/{GROUP}/%s/gwtest"
# (model tag, PLC metric name, alias): every input of both tank models, by alias
TAGS = [("flow_in", "FT101/PV", 21), ("level", "LT101/PV", 22), ("temperature", "TT101/PV", 23),
        ("pressure", "PT101/PV", 24), ("heater_power", "EH101/kW", 25)]
_OFFLINE = re.compile(r"NewConnectionError|Temporary failure in name resolution|"
                      r"Name or service not known|Network is unreachable|Connection refused|"
                      r"Max retries exceeded|ProxyError|No matching distribution found for "
                      r"pysparkplug|Could not find a version that satisfies", re.I)


def pysparkplug_python() -> Path:
    """The cached virtualenv's python, created on first use (atomic rename: a half-built one
    is never used)."""
    cache = Path(os.environ.get("PROCEDGE_INTEROP_CACHE",
                                Path.home() / ".cache" / "procedge-interop"))
    venv = cache / f"pysparkplug-{VERSION}"
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import pysparkplug, paho.mqtt"],
                                          capture_output=True).returncode == 0:
        return python
    cache.mkdir(parents=True, exist_ok=True)
    building = cache / f".building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", building], check=True, capture_output=True)
    pip = subprocess.run([building / "bin" / "python", "-m", "pip", "install", "-q",
                          "--disable-pip-version-check", f"pysparkplug=={VERSION}",
                          "paho-mqtt<2"], capture_output=True, text=True, timeout=600)
    if pip.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        if _OFFLINE.search(pip.stderr):
            pytest.skip(f"the package index cannot be reached to install pysparkplug=="
                        f"{VERSION}: {pip.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"pip install pysparkplug=={VERSION} failed:\n{pip.stderr[-2000:]}")
    shutil.rmtree(venv, ignore_errors=True)
    building.rename(venv)
    return python


def test_pysparkplug_as_primary_host_and_as_plc(tmp_path: Path, broker, bundles):
    python = pysparkplug_python()
    from edge_runtime.daemon import EdgeDaemon

    run = labelled_run(160)
    cols = {t: i for i, t in enumerate(run.tag_names)}
    rows = [[round(float(ts) * 1000), [round(float(row[cols[t]]), 6) for t, _, _ in TAGS]]
            for ts, row in zip(run.timestamps, run.values, strict=True)]
    spec = tmp_path / "rows.json"
    spec.write_text(json.dumps({"metrics": [[n, a] for _, n, a in TAGS], "rows": rows}))
    config = edge_config(tmp_path, broker.port, bundles, sparkplug={
        "input": {"group": GROUP, "tags": [{"tag": t, "node": PLC, "device": DEVICE, "alias": a}
                                           for t, _, a in TAGS]},
        "output": {"group": GROUP, "primary_host": HOST}})
    _, expected_inf = reference_events({k: v for k, v in config.items() if k != "sparkplug"},
                                       tmp_path, samples(run))
    watch = Collector(broker.port, [f"{UNS}/inference/#", "spBv1.0/#"], client_id="iwatch")

    def births() -> list:
        with watch.lock:
            return [codec.decode(p) for t, p in watch.messages if t == ME % "NBIRTH"]

    def inferences() -> int:
        return len(watch.json("/inference/"))

    host = subprocess.Popen([python, HERE / "spb_host.py", str(broker.port), GROUP, "gwtest",
                             HOST, "20", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    daemon = None
    try:
        assert host.stdout.readline().strip() == "READY", host.stderr.read()
        daemon = EdgeDaemon(EdgeConfig.model_validate(config))
        daemon.start()
        # the host's STATE (pysparkplug's JSON) lets the NBIRTH out
        assert wait_for(births, 20)
        plc = subprocess.run([python, HERE / "spb_plc.py", str(broker.port), GROUP, PLC, DEVICE,
                              spec], capture_output=True, text=True, timeout=60)
        assert plc.returncode == 0, plc.stderr
        assert json.loads(plc.stdout)["ddata"] == len(rows)
        # pysparkplug's DDATA by alias fed the models: the same inferences as from JSON
        assert wait_for(lambda: inferences() >= len(expected_inf), 30), (
            inferences(), len(expected_inf))
        rejected = daemon.metrics.value("procedge_messages_rejected_total",
                                        reason="sparkplug_unknown_metric")
        assert rejected == 0
        rebirthed = wait_for(lambda: len(births()) == 2, 20)  # the host's rebirth NCMD
        assert wait_for(lambda: daemon.sparkplug.node.outbox.depth == 0, 20)
        time.sleep(0.5)
    finally:
        if daemon is not None:
            daemon.stop(drain_timeout_s=5)  # MQTT 3.1.1: an explicit NDEATH
        out, err = host.communicate(timeout=70)
        watch.close()
    assert host.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["errors"] == []  # every payload decoded by pysparkplug
    assert rebirthed, report
    assert inferences() == len(expected_inf)
    first, second = report["births"]
    for birth in (first, second):
        assert birth["seq"] == 0 and birth["qos"] == 0 and birth["retain"] is False
        assert birth["rebirth"] == [False, None, "BOOLEAN"]  # no alias on the rebirth metric
        assert birth["all_aliased"] and birth["aliases_unique"] and birth["all_timestamped"]
    assert first["bdSeq"] == second["bdSeq"] and report["rebirth_sent"]
    assert report["datas"] >= 20 and set(report["data_qos"]) == {0}
    assert report["unresolved"] == report["no_datatype"] == 0  # aliases, datatypes from birth
    assert report["with_name"] == report["with_datatype_on_wire"] == 0  # alias only on the wire
    seqs = report["data_seqs"]  # 1, 2, ... after each NBIRTH, wrapping at 256
    breaks = [b for a, b in zip(seqs, seqs[1:], strict=False) if b != (a + 1) % 256]
    assert seqs[0] == 1 and breaks in ([], [1])  # a restart at 1 only after the rebirth
    assert report["deaths"] == [{"bdSeq": first["bdSeq"], "qos": 1}]
