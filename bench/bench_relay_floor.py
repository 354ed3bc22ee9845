"""The floor of the daemon's latency ratio on this machine: a zero-work relay, no daemon.

The daemon's latency goal is a ratio: its p99 (sensor publish → result received, two broker
hops) over a bare subscriber's p99 (one hop), in one run. This runs ``bench_daemon``'s bare
subscriber and its zero-work relay (QoS 1 in, republish at QoS 1, nothing else) against the
same broker configuration and the same publisher, with no daemon, so the ratio printed is what
any relay gets here before doing any work.

Usage: ``python bench/bench_relay_floor.py [--rates 1000 5000] [--pacing step|message]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_daemon as bd  # noqa: E402  (puts the repository on sys.path)

from procedge.broker import free_port, mosquitto  # noqa: E402


def measure(rates: list[float], seconds: float, pacing: str) -> list[dict]:
    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="procedge-floor-"))
    extra = "max_inflight_messages 1000\nset_tcp_nodelay true\n"  # as bench_daemon's broker
    with mosquitto(port=free_port(), workdir=workdir, extra_config=extra) as broker:
        bench = bd.Bench(bd.find_or_train_bundles(), workdir, broker.port)  # the same samples
        pub = bd.publisher(broker.port)
        try:
            for rate in rates:
                bare = bd.run_bare(broker.port)
                relay = subprocess.Popen([sys.executable, "-c", bd.RELAY, str(broker.port),
                                          bd.UNS, bench.tags[-1]])
                receiver = subprocess.Popen(
                    [sys.executable, "-c", bd.RESULTS, str(broker.port), "bench/relay/result",
                     "bench-relay-results"], stdout=subprocess.PIPE, text=True)
                time.sleep(1.0)
                bench.step_sent.clear()
                n = int(rate * seconds)
                took = bench.publish_steps(pub, n, rate, pacing)
                time.sleep(1.0)  # the last results
                bare_lat = bd.finish_bare(bare, pub)["latency"]
                relay_lat = bench.latencies(receiver)
                relay.wait(timeout=60)
                row = {"rate_msg_s": rate, "achieved_msg_s": round(n / took),
                       "bare_p50_ms": round(bd.percentile(bare_lat, 50) * 1e3, 3),
                       "bare_p99_ms": round(bd.percentile(bare_lat, 99) * 1e3, 3),
                       "relay_p50_ms": round(bd.percentile(relay_lat, 50) * 1e3, 3),
                       "relay_p99_ms": round(bd.percentile(relay_lat, 99) * 1e3, 3),
                       "relay_results": len(relay_lat)}
                row["p99_ratio"] = round(row["relay_p99_ms"] / row["bare_p99_ms"], 2)
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            pub.loop_stop()
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[1000, 5000])
    ap.add_argument("--seconds", type=float, default=10, help="per rate")
    ap.add_argument("--pacing", choices=["message", "step"], default="message")
    args = ap.parse_args(argv)
    rows = measure(args.rates, args.seconds, args.pacing)
    print("| rate (achieved), msg/s | bare p50 / p99 ms | zero-work relay p50 / p99 ms | "
          "p99 ratio |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['rate_msg_s']:.0f} ({r['achieved_msg_s']}) | {r['bare_p50_ms']} / "
              f"{r['bare_p99_ms']} | {r['relay_p50_ms']} / {r['relay_p99_ms']} | "
              f"{r['p99_ratio']} |")
    return rows


if __name__ == "__main__":
    main()
