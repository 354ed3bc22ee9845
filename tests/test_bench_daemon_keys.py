"""bench/bench_daemon.py writes the scale goals' figures under fixed keys (the benchmark itself
runs outside the suite: it needs minutes of a quiet machine)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_daemon.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_daemon", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_headline_keys_from_a_report():
    bench = _bench()
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


def test_table_states_each_figure_against_the_issue_goal():
    bench = _bench()
    report = {"throughput": {"messages": 50000, "daemon_cpu_us_per_msg": 65.4,
                             "bare_cpu_us_per_msg": 25.9, "daemon_msg_s": 7978,
                             "bare_msg_s": 8030, "ratio": 0.994},
              "latency": [{"rate_msg_s": 1000.0, "achieved_msg_s": 1000, "bare_p50_ms": 0.3,
                           "bare_p99_ms": 0.8, "daemon_p50_ms": 1.4, "daemon_p99_ms": 5.2},
                          {"rate_msg_s": 5000.0, "achieved_msg_s": 5000, "bare_p50_ms": 0.6,
                           "bare_p99_ms": 2.7, "daemon_p50_ms": 7.7, "daemon_p99_ms": 22.2}],
              "rss_start_mb": 70.9, "rss_trace_mb": [[50000, 77.2], [400000, 80.3]]}
    lines = bench.table(report).splitlines()
    assert "2.53 (goal ≤ 2.5: not met)" in lines[3]
    assert "p99 ≤ 5 ms: not met" in lines[4]
    assert "p50 ≤ 10 ms, p99 ≤ 25 ms: met" in lines[5]
    assert "largest 80.3; ≤ 80 per worker: not met" in lines[6]
