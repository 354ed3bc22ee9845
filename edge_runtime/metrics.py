"""Prometheus metrics of one daemon (own registry, so tests and several daemons don't mix)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server


class DaemonMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("procedge_messages_total", "MQTT messages received.", registry=r)
        self.rejected = Counter("procedge_messages_rejected_total", "Messages not used.",
                                ["reason"], registry=r)
        self.published = Counter("procedge_published_total", "Messages published.", ["kind"],
                                 registry=r)
        self.windows = Counter("procedge_windows_total", "Windows run through a model.",
                               ["model"], registry=r)
        self.gap_windows = Counter("procedge_windows_dropped_gap_total",
                                   "Windows dropped because a tag was silent too long.",
                                   ["model"], registry=r)
        self.inference = Histogram("procedge_inference_seconds",
                                   "Scaling + LiteRT invoke per window.", ["model"], registry=r,
                                   buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.05))
        self.connects = Counter("procedge_mqtt_connects_total", "Successful (re)connects.",
                                registry=r)

    def observe_pipeline(self, pipeline, new_gap_windows: int) -> None:
        """Move a pipeline's latest inference timings and counts into the metrics."""
        for seconds in pipeline.inference_s:
            self.inference.labels(model=pipeline.name).observe(seconds)
            self.windows.labels(model=pipeline.name).inc()
        pipeline.inference_s.clear()
        if new_gap_windows:
            self.gap_windows.labels(model=pipeline.name).inc(new_gap_windows)

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample (tests and the health endpoint)."""
        return self.registry.get_sample_value(name, labels or None) or 0.0

    def serve(self, port: int) -> None:
        start_http_server(port, addr="127.0.0.1", registry=self.registry)
