"""Prometheus metrics of one daemon (own registry, so tests and several daemons don't mix).

Served with ``/healthz`` on one small HTTP server, bound to 127.0.0.1 unless the config's
``metrics_host`` says otherwise.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from edge_runtime.alarms import EFFECTIVE_STATES

_LATENCY_BUCKETS = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.05, 0.25)


class DaemonMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("procedge_messages_total",
                                "Inbound messages done with (counted after their batch's commit).",
                                registry=r)
        self.rejected = Counter("procedge_messages_rejected_total", "Messages not used.",
                                ["reason"], registry=r)
        self.published = Counter("procedge_published_total", "Messages queued for publishing.",
                                 ["kind"], registry=r)
        self.windows = Counter("procedge_windows_total", "Windows run through a model.",
                               ["model"], registry=r)
        self.gap_windows = Counter("procedge_windows_dropped_gap_total",
                                   "Windows dropped because a tag was silent too long.",
                                   ["model"], registry=r)
        self.inference = Histogram("procedge_inference_seconds",
                                   "Camera frames: decode to verdict, per frame.", ["model"],
                                   registry=r, buckets=_LATENCY_BUCKETS)
        self.model_stage = Histogram(
            "procedge_model_stage_seconds",
            "Per model and batch of windows: pre (window assembly + scaling), invoke (LiteRT), "
            "post (scores, contributions, alarm logic, payloads).", ["model", "stage"],
            registry=r, buckets=_LATENCY_BUCKETS)
        self.stage = Histogram("procedge_stage_seconds",
                               "Per inbound batch: parse (payloads), models (windows, models, "
                               "alarms), commit (alarm states + outbox commit + input acks).",
                               ["stage"], registry=r, buckets=_LATENCY_BUCKETS)
        # children used on every message or batch, looked up once
        self.stage_parse = self.stage.labels(stage="parse")
        self.stage_models = self.stage.labels(stage="models")
        self.stage_commit = self.stage.labels(stage="commit")
        self.connects = Counter("procedge_mqtt_connects_total", "Successful (re)connects.",
                                registry=r)
        self.connect_failures = Counter(
            "procedge_mqtt_connect_failures_total",
            "Failed connection attempts by reason: connack (the broker refused), tls_hostname, "
            "tls_untrusted, tls_handshake, timeout, tcp_refused, dns, closed, network.",
            ["reason"], registry=r)
        self.disconnects = Counter("procedge_mqtt_disconnects_total", "Lost connections.",
                                   registry=r)
        self.connected = Gauge("procedge_mqtt_connected", "1 while connected.", registry=r)
        self.subscriptions_refused = Counter(
            "procedge_mqtt_subscriptions_refused_total",
            "Topic filters the broker refused in a SUBACK (an ACL, most often).", registry=r)
        self.outbox_depth = Gauge("procedge_outbox_depth", "Messages waiting for a PUBACK.",
                                  registry=r)
        self.outbox_inflight = Gauge("procedge_outbox_inflight", "Publishes awaiting PUBACK.",
                                     registry=r)
        self.outbox_evicted = Counter("procedge_outbox_evicted_total",
                                      "Rows dropped because the outbox was full.", ["priority"],
                                      registry=r)
        self.sparkplug_outbox_depth = Gauge(
            "procedge_sparkplug_outbox_depth",
            "Sparkplug rows waiting for a PUBACK (0 without sparkplug.output).", registry=r)
        self.sparkplug_outbox_evicted = Counter(
            "procedge_sparkplug_outbox_evicted_total",
            "Sparkplug rows dropped because its outbox was full.", ["priority"], registry=r)
        self.sparkplug_alias_fallbacks = Counter(
            "procedge_sparkplug_alias_fallbacks_total",
            "Sparkplug DATA metrics whose name was not in the BIRTH, resolved by their alias.",
            registry=r)
        self.opcua_connected = Gauge("procedge_opcua_connected",
                                     "1 while the OPC UA session is up and subscribed.",
                                     registry=r)
        self.opcua_connects = Counter("procedge_opcua_connects_total",
                                      "OPC UA sessions opened and subscribed (reconnects too).",
                                      registry=r)
        self.opcua_disconnects = Counter("procedge_opcua_disconnects_total",
                                         "OPC UA sessions lost (server gone, network).",
                                         registry=r)
        self.opcua_connect_failures = Counter(
            "procedge_opcua_connect_failures_total",
            "Failed OPC UA connection attempts (each retried with backoff).", registry=r)
        self.opcua_nodes_refused = Counter(
            "procedge_opcua_nodes_refused_total",
            "Configured nodes the server would not monitor (an unknown NodeId, most often), "
            "counted on every (re)connect; the log names them.", registry=r)
        self.acked = Counter("procedge_outbox_acked_total", "Publishes acknowledged.", registry=r)
        self.alarms = Gauge("procedge_alarms", "Alarms by state.", ["state"], registry=r)
        self.alarm_states = {state: self.alarms.labels(state=state) for state in EFFECTIVE_STATES}
        self.alarm_events = Counter("procedge_alarm_events_total", "Alarm events queued.",
                                    ["event"], registry=r)
        self.commands = Counter("procedge_commands_total", "Operator commands.",
                                ["command", "result"], registry=r)
        self.command_auth_failures = Counter(
            "procedge_command_auth_failures_total",
            "Commands refused by the signature check (commands.require_signature): unsigned, "
            "unknown_operator, bad_envelope, bad_signature, stale, replay, nonce_cache_full.",
            ["reason"], registry=r)
        self.reloads = Counter("procedge_reloads_total", "Bundle hot reloads: swapped, refused "
                               "(the bundle), busy (queue full), coalesced (path queued).",
                               ["result"], registry=r)
        self.drift_psi = Gauge("procedge_drift_psi", "Latest PSI of each input tag's rolling "
                               "window against the bundle's reference (drift monitor).",
                               ["model", "tag"], registry=r)
        self.drift_psi_limit = Gauge("procedge_drift_psi_limit", "PSI at or above which a tag "
                                     "is drifting.", ["model", "tag"], registry=r)
        self.drift_cusum = Gauge("procedge_drift_residual_cusum", "Latest two-sided CUSUM of "
                                 "each forecast target's standardised one-step residual.",
                                 ["model", "target"], registry=r)
        self.drift_cusum_limit = Gauge("procedge_drift_residual_cusum_limit", "CUSUM at or "
                                       "above which a target's residuals are drifting.",
                                       ["model", "target"], registry=r)
        self.drift_checks = Counter("procedge_drift_checks_total", "PSI checks of the drift "
                                    "monitor.", ["model"], registry=r)
        self.published_inference = self.published.labels(kind="inference")
        self.published_alarm = self.published.labels(kind="alarm")
        self.published_residual = self.published.labels(kind="residual")
        self.lab_values = Counter("procedge_lab_values_total", "Lab/analyzer values matched "
                                  "with a soft sensor's estimate (skipped ones: "
                                  "messages_rejected_total, reasons lab_*).", ["model"],
                                  registry=r)
        self.commissioning = Gauge(
            "procedge_commissioning", "Commissioning calibration per model: 1 on the state it "
            "is in (collecting, calibrated, refused), 0 on the others.", ["model", "state"],
            registry=r)
        self.shield_interventions = Counter(
            "procedge_shield_interventions_total", "Control periods in which the safety "
            "shield changed or replaced the policy's set-point, by reason (clamped, "
            "rate_limited, guard, watchdog), and set-point writes that failed (write_failed).",
            ["model", "reason"], registry=r)
        self.control_writes = Counter("procedge_control_writes_total", "Set-point writes of "
                                      "closed-loop control models, by result (ok, failed).",
                                      ["model", "result"], registry=r)
        self._model_children: dict[str, tuple] = {}

    def commissioning_state(self, model: str, state: str) -> None:
        """One-hot over the states, so a panel or an alert rule reads the state directly."""
        for each in ("collecting", "calibrated", "refused"):
            self.commissioning.labels(model=model, state=each).set(float(each == state))

    def watch(self, outbox_depth: Callable[[], int], alarms: Callable[[], list],
              sparkplug_depth: Callable[[], int] = lambda: 0) -> None:
        """Gauges read at scrape time, not set on every batch: a gateway is scraped every few
        seconds and handles thousands of batches in between."""
        self.outbox_depth.set_function(outbox_depth)
        self.sparkplug_outbox_depth.set_function(sparkplug_depth)
        for state, gauge in self.alarm_states.items():
            gauge.set_function(lambda s=state: sum(a.effective_state == s for a in alarms()))

    def observe_pipeline(self, pipeline) -> None:
        """Move a pipeline's stage timings and window counts into the metrics."""
        name = pipeline.name
        children = self._model_children.get(name)
        if children is None:
            children = self._model_children[name] = (
                *(self.model_stage.labels(model=name, stage=s) for s in ("pre", "invoke", "post")),
                self.windows.labels(model=name))
        pre, invoke, post, windows_total = children
        windows = 0
        for t in pipeline.timings:
            pre.observe(t.pre)
            invoke.observe(t.invoke)
            post.observe(t.post)
            windows += t.windows
        pipeline.timings.clear()
        if windows:
            windows_total.inc(windows)
        if pipeline.drift is not None:
            self.observe_drift(name, pipeline.drift)
        if pipeline.gaps_unreported:
            self.gap_windows.labels(model=name).inc(pipeline.gaps_unreported)
            pipeline.gaps_unreported = 0
        take_counts = getattr(pipeline.task_state, "take_counts", None)  # control: the shield's
        if take_counts is not None:
            for reason, n in take_counts().items():
                self.shield_interventions.labels(model=name, reason=reason).inc(n)

    def observe_drift(self, name: str, monitor) -> None:
        """Move a drift monitor's news into the metrics: the gauges are set only when it ran
        a PSI check (every ``drift.check_every`` rows) or took residuals, not per batch."""
        if monitor.checks_unreported:
            self.drift_checks.labels(model=name).inc(monitor.checks_unreported)
            monitor.checks_unreported = 0
            for ref, value, limit in zip(monitor.references, monitor.psi.tolist(),
                                         monitor.psi_limits.tolist(), strict=True):
                self.drift_psi.labels(model=name, tag=ref.tag).set(value)
                self.drift_psi_limit.labels(model=name, tag=ref.tag).set(limit)
        if monitor.residuals_unreported:
            monitor.residuals_unreported = False
            for ref, value, limit in zip(monitor.residual_refs, monitor.cusum.tolist(),
                                         monitor.residual_limits.tolist(), strict=True):
                self.drift_cusum.labels(model=name, target=ref.target).set(value)
                self.drift_cusum_limit.labels(model=name, target=ref.target).set(limit)

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample (tests and the health endpoint); without labels, of a
        labelled metric: the sum over its label values."""
        found = self.registry.get_sample_value(name, labels or None)
        if found is None and not labels:
            return sum(s.value for m in self.registry.collect() for s in m.samples
                       if s.name == name)
        return found or 0.0

    def serve(self, port: int, health: Callable[[], tuple[bool, dict]],
              host: str = "127.0.0.1") -> ThreadingHTTPServer:
        """``/metrics`` (Prometheus text) and ``/healthz`` (200 or 503 + JSON) on ``host``
        (an IP address; loopback by default: the endpoint has no authentication)."""
        registry = self.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.startswith("/metrics"):
                    code, body, kind = 200, generate_latest(registry), CONTENT_TYPE_LATEST
                elif self.path.startswith("/healthz"):
                    ok, detail = health()
                    code, kind = (200 if ok else 503), "application/json"
                    body = json.dumps(detail | {"ok": ok}).encode()
                else:
                    code, body, kind = 404, b"not found\n", "text/plain"
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # keep scrapes out of the daemon log
                pass

        class Server(ThreadingHTTPServer):
            address_family = (socket.AF_INET6 if ipaddress.ip_address(host).version == 6
                              else socket.AF_INET)

        server = Server((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="procedge-http", daemon=True).start()
        return server
