"""bench/bench_daemon.py writes the scale goals' figures under fixed keys (the benchmark itself
runs outside the suite: it needs minutes of a quiet machine)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_daemon.py"


def test_headline_keys_from_a_report():
    spec = importlib.util.spec_from_file_location("bench_daemon", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = {"throughput": {"daemon_cpu_us_per_msg": 145, "bare_cpu_us_per_msg": 61,
                             "daemon_msg_s": 4331, "bare_msg_s": 4341},
              "latency": [{"rate_msg_s": 1000.0, "achieved_msg_s": 999, "bare_p50_ms": 0.5,
                           "bare_p99_ms": 1.1, "daemon_p50_ms": 1.9, "daemon_p99_ms": 3.1}],
              "rss_start_mb": 67.9, "rss_end_mb": 74.4}
    head = bench.headline(report)
    assert head == {"cpu_us_per_msg": {"daemon": 145, "bare": 61},
                    "burst": {"daemon_rate": 4331, "bare_rate": 4341},
                    "rates": [{"rate": 1000.0, "bare_p50_ms": 0.5, "bare_p99_ms": 1.1,
                               "daemon_p50_ms": 1.9, "daemon_p99_ms": 3.1}],
                    "rss_mb": {"start": 67.9, "end": 74.4}, "workers": 1}
