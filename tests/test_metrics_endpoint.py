"""/metrics: the bind address (`metrics_host`) is where the daemon listens, and every series
the Grafana dashboard in deploy/ queries exists in the daemon's own /metrics output, so the
dashboard cannot drift from edge_runtime/metrics.py unnoticed."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from edge_runtime.config import EdgeConfig
from edge_runtime.daemon import EdgeDaemon
from procedge.broker import free_port
from tests.daemon_support import ROOT, edge_config, wait_for

DASHBOARD = ROOT / "deploy/grafana/procedge-dashboard.json"
HOST = "127.0.0.2"  # loopback too on Linux (127/8), but not the default 127.0.0.1


def get(url: str) -> str:
    return urllib.request.urlopen(url, timeout=5).read().decode()


def test_metrics_host_is_validated_and_loopback_by_default(tmp_path: Path):
    base = edge_config(tmp_path, 1883, {"m": tmp_path})
    assert EdgeConfig.model_validate(base).metrics_host == "127.0.0.1"
    assert EdgeConfig.model_validate(base | {"metrics_host": "0.0.0.0"}).metrics_host == "0.0.0.0"
    assert EdgeConfig.model_validate(base | {"metrics_host": "0:0::1"}).metrics_host == "::1"
    with pytest.raises(ValueError, match=r"metrics_host[\s\S]*'gateway\.local' is not an IP"):
        EdgeConfig.model_validate(base | {"metrics_host": "gateway.local"})


@pytest.fixture
def daemon(bundles, broker, tmp_path: Path):
    """A daemon serving /metrics on HOST, with an OPC UA section (so nothing is skipped)
    pointing at a port where no server listens."""
    config = edge_config(tmp_path, broker.port, bundles, metrics_port=free_port(),
                         metrics_host=HOST,
                         opcua={"endpoint": f"opc.tcp://127.0.0.1:{free_port()}/",
                                "nodes": {"ns=2;s=temperature": "temperature"},
                                "reconnect_min_s": 5})
    running = EdgeDaemon(EdgeConfig.model_validate(config))
    running.start()
    yield running
    running.stop(drain_timeout_s=2)


def test_metrics_bind_where_told(daemon):
    port = daemon.config.metrics_port
    assert daemon._http.server_address[:2] == (HOST, port)
    assert "procedge_messages_total" in get(f"http://{HOST}:{port}/metrics")
    with pytest.raises(urllib.error.URLError):  # nothing on the default address
        get(f"http://127.0.0.1:{port}/metrics")


def exposed_series(text: str) -> set[str]:
    """Every series name the exposition can hold: the TYPE lines name labelled metrics even
    before their first sample (a ``_created`` series has a TYPE line of its own); histograms
    add _bucket/_sum/_count."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def dashboard_queries(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [q for v in node.values() for q in dashboard_queries(v)]
    if isinstance(node, list):
        return [q for v in node for q in dashboard_queries(v)]
    return []


def test_dashboard_queries_only_metrics_the_daemon_exposes(daemon):
    assert wait_for(lambda: daemon.metrics.value("procedge_opcua_connect_failures_total") >= 1,
                    10)
    text = get(f"http://{HOST}:{daemon.config.metrics_port}/metrics")
    exposed = exposed_series(text)
    dashboard = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries(dashboard["panels"])
    used = {m for q in queries for m in re.findall(r"\bprocedge_[a-z0-9_]+", q)}
    assert len(queries) >= 20 and used, "the dashboard queries nothing"
    assert used <= exposed, f"not in /metrics: {sorted(used - exposed)}"
    families = {n for n in exposed if not re.search(r"_(bucket|sum|count|created)$", n)}
    # exact names: a panel on procedge_x_limit does not cover procedge_x
    unused = families - {re.sub(r"_(bucket|sum|count)$", "", u) for u in used}
    assert not unused, f"metrics with no panel: {sorted(unused)}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"type", "title", "gridPos"} <= set(panel)
        for target in panel.get("targets", []):
            assert target["refId"] and target["datasource"]["uid"] == "${datasource}"


def test_prometheus_example_scrapes_metrics():
    config = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "procedge")
    assert job["metrics_path"] == "/metrics"
    targets = [t for c in job["static_configs"] for t in c["targets"]]
    assert targets and all(re.match(r"^[\w.-]+:\d+$", t) for t in targets)


def test_telegraf_example_reads_the_daemons_defaults():
    import tomllib

    from edge_runtime.config import TopicConfig

    conf = tomllib.loads((ROOT / "deploy/telegraf.conf").read_text())
    urls = conf["inputs"]["prometheus"][0]["urls"]
    assert all(u.endswith("/metrics") for u in urls)
    mqtt = conf["inputs"]["mqtt_consumer"][0]
    topics = TopicConfig()
    inference = topics.inference.format(uns=topics.uns, model="+")
    assert mqtt["topics"] == [inference] and mqtt["json_time_key"] == "ts"
