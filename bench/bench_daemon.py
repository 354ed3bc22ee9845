"""Edge daemon vs a bare paho subscriber on one Mosquitto, in one run.

Three live models (the two tank bundles + a second copy of the autoencoder) in ``procedge run``
(a child process, QoS 1, outbox on disk), and a bare paho subscriber (another child process)
on the same raw topics. Measured:

- throughput: a burst of QoS 1 samples; msg/s each side ingested (daemon: parsed, windowed,
  inferred, committed to its outbox — read from its /metrics);
- latency at fixed rates: sensor publish → bare subscriber receive, and sensor publish of the
  sample that completes a grid step → the daemon's anomaly result for that step received
  (the path an alarm event takes: window, model, ISA-18.2 logic, outbox, PUBACK), each side
  received by a paho subscriber in a process of its own;
- with ``--relay``, the same latency through a zero-work paho relay (QoS 1 in, republish at
  QoS 1): the daemon's path with none of its work, i.e. the floor of its ratio;
- RSS of the daemon after the run (and at its start), to spot growth.

Usage: ``python bench/bench_daemon.py --bundles artifacts/tiny/bundles`` (folders
``tank_anomaly-*`` and ``tank_forecast-*``, e.g. from ``make demo`` or the tests' helper);
``--profile out.txt`` (or ``.svg``): py-spy on the daemon during the burst.
Results: ``bench/results/daemon.json``. A shared machine makes figures noisy: compare the two
sides of one run, not runs on different days.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_runtime.payloads import iso_ms, parse_timestamp  # noqa: E402
from procedge.broker import free_port, mosquitto  # noqa: E402

UNS = "bench/site/area/tank"
PERIOD = 5.0

BARE = r"""
import json, socket, sys, time, threading
import paho.mqtt.client as mqtt
port, uns = int(sys.argv[1]), sys.argv[2]
lat, first, count, lock = [], [None], [0], threading.Lock()
def on_message(c, u, m):
    now = time.time()
    if m.topic == "bench/control/done":
        print(json.dumps({"count": count[0], "first": first[0], "last": last[0],
                          "latency": lat}), flush=True)
        c.disconnect()
        return
    with lock:
        count[0] += 1
        first[0] = first[0] or now
        last[0] = now
        lat.append(now - json.loads(m.payload)["pt"])
last = [None]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bare")
c.on_connect = lambda c, *a: c.subscribe([(uns + "/raw/#", 1), ("bench/control/#", 1)])
c.on_socket_open = lambda c, u, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
c.on_message = on_message
c.connect("127.0.0.1", port)
c.loop_forever()
"""

# The daemon's results are received the same way, in a process of their own: a receiver
# sharing the publisher's process (and GIL) would add the publisher's stalls to the daemon.
RESULTS = r"""
import json, socket, sys, time
import paho.mqtt.client as mqtt
port, topic, client_id = int(sys.argv[1]), sys.argv[2], sys.argv[3]
got = []
def on_message(c, u, m):
    now = time.time()
    if m.topic == "bench/control/done":
        print(json.dumps(got), flush=True)
        c.disconnect()
        return
    got.append((json.loads(m.payload)["ts"], now))
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
c.on_connect = lambda c, *a: c.subscribe([(topic, 1), ("bench/control/#", 1)])
c.on_socket_open = lambda c, u, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
c.on_message = on_message
c.connect("127.0.0.1", port)
c.loop_forever()
"""

# The floor of any relay: a paho client that republishes each step-completing sample at once
# (QoS 1 in, QoS 1 out, no work). Its results take the daemon's path (sensor → broker → relay
# → broker → receiver) with none of the daemon's work, so the daemon's ratio to the bare
# subscriber can be read against the relay's.
RELAY = r"""
import json, socket, sys, threading
import paho.mqtt.client as mqtt
port, uns, last_tag = int(sys.argv[1]), sys.argv[2], sys.argv[3]
done = threading.Event()
def on_message(c, u, m):
    if m.topic == "bench/control/done":
        done.set()
    elif m.topic.endswith("/" + last_tag):
        c.publish("bench/relay/result", json.dumps({"ts": json.loads(m.payload)["ts"]}), qos=1)
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-relay")
c.max_inflight_messages_set(1000)
c.on_connect = lambda c, *a: c.subscribe([(uns + "/raw/#", 1), ("bench/control/#", 1)])
c.on_socket_open = lambda c, u, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
c.on_message = on_message
c.connect("127.0.0.1", port)
c.loop_start()  # the network thread beside the main one, as in the daemon
done.wait()
c.disconnect()
c.loop_stop()
"""


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process: a cost that a busy machine distorts less."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children (the supervisor and its workers)."""
    return cpu_s(pid) + sum(tree_cpu_s(child) for child in children(pid))


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # a thread that ended while we listed them
            continue
    return found


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class Bench:
    def __init__(self, bundles: Path, workdir: Path, port: int, synchronous: str = "FULL",
                 workers: int = 1):
        self.workdir, self.port = workdir, port
        anomaly = next(sorted(bundles.glob("tank_anomaly-*")).__iter__())
        forecast = next(sorted(bundles.glob("tank_forecast-*")).__iter__())
        self.metrics_port = free_port()
        config = {
            "gateway": "bench", "mqtt": {"port": port, "client_id": "procedge-bench"},
            "topics": {"uns": UNS},
            "models": [{"name": "tank_anomaly", "bundle": str(anomaly.resolve())},
                       {"name": "tank_anomaly_b", "bundle": str(anomaly.resolve())},
                       {"name": "tank_forecast", "bundle": str(forecast.resolve())}],
            "outbox": {"path": str(workdir / "outbox.sqlite"), "synchronous": synchronous},
            "metrics_port": self.metrics_port, "log_level": "WARNING", "workers": workers,
        }
        self.config_path = workdir / "edge.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.results: dict[str, float] = {}
        self.step_sent: dict[float, float] = {}  # grid time -> publish time of its last sample
        self.t0 = time.time() - 20 * 86_400  # the synthetic grid starts 20 days ago
        self.t0 -= self.t0 % PERIOD
        self.step = 0
        from training.simulator import simulate  # numpy only: plant-like values

        run = simulate(20_000, PERIOD, seed=5, start_epoch_s=self.t0)
        self.tags, self.rows = run.tag_names, np.round(run.values, 4)

    def scrape(self) -> list[str]:
        """The daemon's /metrics, line by line."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        return urllib.request.urlopen(url).read().decode().splitlines()

    def ready(self) -> bool:
        """/healthz says 200: connected, every subscription granted, threads alive."""
        url = f"http://127.0.0.1:{self.metrics_port}/healthz"
        try:
            return urllib.request.urlopen(url).status == 200
        except OSError:  # not listening yet, or 503 (HTTPError is an OSError)
            return False

    def metric(self, name: str, how=sum) -> float:
        """A sample's value; with worker processes ``how`` (sum, min) over their values."""
        values = [float(line.split()[-1]) for line in self.scrape()
                  if line.startswith((name + " ", name + "{"))]
        return how(values) if values else 0.0

    def worker_load(self) -> tuple[float, float]:
        """(batches processed, seconds the worker spent on them) so far, from /metrics."""
        batches = seconds = 0.0
        for line in self.scrape():
            if line.startswith("procedge_stage_seconds_count{") and 'stage="parse"' in line:
                batches += float(line.split()[-1])  # summed over worker processes
            elif line.startswith("procedge_stage_seconds_sum{"):
                seconds += float(line.split()[-1])
        return batches, seconds

    def rss_mb(self, pid: int) -> float:
        """RSS of the daemon, or of its largest worker process (the goal is per process)."""
        return max(self.process_rss_mb(p) for p in children(pid) or [pid])

    def process_rss_mb(self, pid: int) -> float:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def publish_steps(self, pub: mqtt.Client, n_msgs: int, rate: float | None,
                      pacing: str = "message") -> float:
        """Publish n_msgs samples (whole steps of 5 tags); returns the seconds taken.

        ``pacing="message"``: every sample evenly spaced; ``"step"``: a step's samples leave
        back to back, steps evenly spaced (a PLC publishing its scan), which costs the
        publisher (a process on the same two cores) about half the CPU.
        """
        start = time.perf_counter()
        sent = 0
        while sent < n_msgs:
            t = self.t0 + self.step * PERIOD
            self.step += 1
            row = self.rows[self.step % len(self.rows)]
            for k, tag in enumerate(self.tags):
                if rate and (k == 0 or pacing == "message"):
                    delay = start + sent / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                now = time.time()
                if k == len(self.tags) - 1:
                    self.step_sent[t] = now
                body = {"v": float(row[k]), "ts": iso_ms(t), "pt": now}
                info = pub.publish(f"{UNS}/raw/{tag}", json.dumps(body), qos=1)
                while info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                    time.sleep(0.001)
                    info = pub.publish(f"{UNS}/raw/{tag}", json.dumps(body), qos=1)
                sent += 1
        return time.perf_counter() - start

    def latencies(self, receiver: subprocess.Popen) -> list[float]:
        """Sensor publish of each step's last sample → its result received, in seconds."""
        got = json.loads(receiver.communicate(timeout=120)[0].strip().splitlines()[-1])
        return [now - self.step_sent[parse_timestamp(ts)] for ts, now in got
                if parse_timestamp(ts) in self.step_sent]

    def wait_drained(self, timeout_s: float = 120) -> None:
        """Until the daemon's outbox is empty: a phase starts without the last one's backlog
        (results leave in order, so a backlog would sit in front of every new result)."""
        deadline = time.monotonic() + timeout_s
        while self.metric("procedge_outbox_depth") and time.monotonic() < deadline:
            time.sleep(0.1)

    def wait_daemon(self, total: int, timeout_s: float = 600) -> float:
        print(f"  waiting for the daemon to reach {total} messages", file=sys.stderr, flush=True)
        deadline = time.monotonic() + timeout_s
        last_print = time.monotonic()
        while self.metric("procedge_messages_total", min) < total:  # every worker
            if time.monotonic() - last_print > 5:
                last_print = time.monotonic()
                print(f"  ... {self.metric('procedge_messages_total'):.0f}, outbox "
                      f"{self.metric('procedge_outbox_depth'):.0f}", file=sys.stderr, flush=True)
            if time.monotonic() > deadline:
                raise TimeoutError(f"daemon stuck at {self.metric('procedge_messages_total')}")
            # each scrape costs the daemon CPU inside its measured burst (py-spy: 4-7 % of its
            # samples at 20 scrapes/s): 5 a second, the burst's end known within 0.2 s
            time.sleep(0.2)
        return time.time()


def find_or_train_bundles() -> Path:
    for folder in (ROOT / "artifacts" / "demo" / "bundles",
                   ROOT / "artifacts" / "bench" / "bundles"):
        if list(folder.glob("tank_anomaly-*")) and list(folder.glob("tank_forecast-*")):
            return folder
    print("training two tiny tank models for the benchmark (TensorFlow, ~2 min)", flush=True)
    from tests.helpers import train_tiny_tank_models

    train_tiny_tank_models(ROOT / "artifacts" / "bench")
    return ROOT / "artifacts" / "bench" / "bundles"


def no_nagle(client, userdata, sock) -> None:
    """Every bench client sends at once, as the daemon does (paho leaves Nagle on: a small
    publish would wait for the ACK of the segment before it)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def publisher(port: int) -> mqtt.Client:
    """The sensors: one paho client, QoS 1, its network thread started."""
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub")
    pub.on_socket_open = no_nagle
    pub.max_inflight_messages_set(1000)
    pub.max_queued_messages_set(20000)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    return pub


def profiler(pid: int, out: Path) -> subprocess.Popen:
    """py-spy sampling the daemon (every thread, idle ones left out) until SIGINT. Its own
    CPU is another process's, so the CPU figures stay the daemon's (sampling pauses the
    daemon briefly: compare profiled runs with profiled runs only)."""
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy on PATH (pip install py-spy)")
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([spy, "record", "--pid", str(pid), "--output", str(out),
                             "--format", "raw" if out.suffix == ".txt" else "flamegraph",
                             "--rate", "200", "--threads", "--subprocesses"],
                            stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the burst starts
    return proc


def run_bare(port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BARE, str(port), UNS], stdout=subprocess.PIPE,
                            text=True)


def finish_bare(bare: subprocess.Popen, pub: mqtt.Client) -> dict:
    pub.publish("bench/control/done", b"1", qos=1)
    out, _ = bare.communicate(timeout=120)
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundles", type=Path, default=None,
                    help="folder with tank_anomaly-*/ and tank_forecast-*/ (default: "
                         "artifacts/demo/bundles, else tiny ones trained into artifacts/bench)")
    ap.add_argument("--burst", type=int, default=50_000, help="messages in the throughput burst")
    ap.add_argument("--rates", type=float, nargs="+", default=[1000, 5000, 10000])
    ap.add_argument("--seconds", type=float, default=10, help="per fixed rate")
    ap.add_argument("--total", type=int, default=1_000_000,
                    help="messages in all; the rest is sent at the lowest rate to watch RSS")
    ap.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL",
                    help="outbox durability: FULL survives power loss, NORMAL a crash")
    ap.add_argument("--broker-inflight", type=int, default=1000,
                    help="Mosquitto max_inflight_messages (its default is 20)")
    ap.add_argument("--broker-nagle", action="store_true",
                    help="leave Mosquitto's Nagle algorithm on (its default; procedge's "
                         "recommended broker config sets set_tcp_nodelay true)")
    ap.add_argument("--pacing", choices=["message", "step"], default="message",
                    help="fixed rates: space every sample evenly (default, as in earlier "
                         "runs), or space the 5-tag steps evenly with their samples sent back "
                         "to back (a PLC's scan; half the publisher's CPU)")
    ap.add_argument("--relay", action="store_true",
                    help="also run a zero-work paho relay (QoS 1 in and out) in the latency "
                         "phases: the floor of any relay's ratio to the bare subscriber")
    ap.add_argument("--workers", type=int, default=1,
                    help="worker processes (the config's `workers`): the three models dealt "
                         "round-robin; CPU is then the supervisor's and its workers' together")
    ap.add_argument("--profile", type=Path, default=None,
                    help="attach py-spy (on PATH; not a dependency) to the daemon (and its "
                         "worker processes) for the burst and write its flame graph (SVG, "
                         "or raw samples for .txt) here: where the CPU per message goes, "
                         "paho's thread included")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "daemon.json")
    args = ap.parse_args(argv)
    args.bundles = args.bundles or find_or_train_bundles()
    workdir = Path(tempfile.mkdtemp(prefix="procedge-bench-"))
    report: dict = {"machine_note": "shared 2-core machine, other jobs running: noisy",
                    "models": 3, "qos": 1}
    # Mosquitto's default of 20 unacknowledged messages per subscriber throttles a daemon that
    # acknowledges only after its outbox commit: give the broker a deeper window.
    extra = f"max_inflight_messages {args.broker_inflight}\n"
    if not args.broker_nagle:  # else a small publish waits for the ACK of the one before
        extra += "set_tcp_nodelay true\n"
    report["pacing"] = args.pacing
    report["broker_max_inflight_messages"] = args.broker_inflight
    report["broker_tcp_nodelay"] = not args.broker_nagle
    with mosquitto(port=free_port(), workdir=workdir, extra_config=extra) as broker:
        bench = Bench(args.bundles, workdir, broker.port, args.synchronous, args.workers)
        report["outbox_synchronous"] = args.synchronous
        env = os.environ | {"PYTHONPATH": str(ROOT)}
        daemon = subprocess.Popen([sys.executable, "-m", "procedge", "run", "--config",
                                   str(bench.config_path)], env=env, cwd=ROOT,
                                  stdout=(workdir / "daemon.log").open("wb"),
                                  stderr=subprocess.STDOUT)
        pub = publisher(broker.port)
        try:
            deadline = time.monotonic() + 60
            while not bench.ready():
                if time.monotonic() > deadline:
                    raise TimeoutError("daemon not ready (connected and subscribed)")
                time.sleep(0.2)
            time.sleep(0.5)
            report["rss_start_mb"] = bench.rss_mb(daemon.pid)
            print("daemon connected", file=sys.stderr, flush=True)
            total = 0

            # 1. throughput burst
            bare = run_bare(broker.port)
            time.sleep(1.0)
            spy = profiler(daemon.pid, args.profile) if args.profile else None
            cpu0 = tree_cpu_s(daemon.pid), cpu_s(bare.pid)
            t_start = time.time()
            bench.publish_steps(pub, args.burst, rate=None)
            total += args.burst
            t_daemon = bench.wait_daemon(total)
            cpu1 = tree_cpu_s(daemon.pid), cpu_s(bare.pid)
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
                spy.wait(timeout=60)
            b = finish_bare(bare, pub)
            bench.wait_drained()
            bare_rate = b["count"] / (b["last"] - b["first"])
            daemon_rate = args.burst / (t_daemon - t_start)
            report["throughput"] = {"messages": args.burst, "bare_msg_s": round(bare_rate),
                                    "daemon_msg_s": round(daemon_rate),
                                    "ratio": round(daemon_rate / bare_rate, 3),
                                    "daemon_cpu_us_per_msg": round(
                                        (cpu1[0] - cpu0[0]) / args.burst * 1e6, 1),
                                    "bare_cpu_us_per_msg": round(
                                        (cpu1[1] - cpu0[1]) / args.burst * 1e6, 1)}
            print(json.dumps(report["throughput"]), flush=True)
            rss = [[total, round(bench.rss_mb(daemon.pid), 1)]]  # (messages, MB) as it runs

            # 2. latency at fixed rates
            report["latency"] = []
            for rate in args.rates:
                bare = run_bare(broker.port)
                receiver = subprocess.Popen(
                    [sys.executable, "-c", RESULTS, str(broker.port),
                     f"{UNS}/inference/tank_anomaly", "bench-results"], stdout=subprocess.PIPE,
                    text=True)
                relay = relay_receiver = None
                if args.relay:
                    relay = subprocess.Popen([sys.executable, "-c", RELAY, str(broker.port),
                                              UNS, bench.tags[-1]])
                    relay_receiver = subprocess.Popen(
                        [sys.executable, "-c", RESULTS, str(broker.port), "bench/relay/result",
                         "bench-relay-results"], stdout=subprocess.PIPE, text=True)
                time.sleep(1.0)
                bench.step_sent.clear()
                n = int(rate * args.seconds)
                load0 = bench.worker_load()
                took = bench.publish_steps(pub, n, rate, args.pacing)
                total += n
                bench.wait_daemon(total)
                load1 = bench.worker_load()
                bench.wait_drained(60)  # the slowest results are sent last: wait for them
                if relay:
                    time.sleep(0.5)  # the relay's last results
                b = finish_bare(bare, pub)  # "done" ends the receivers too, after the results
                lat = bench.latencies(receiver)
                row = {"rate_msg_s": rate, "achieved_msg_s": round(n / took),
                       "bare_p50_ms": round(percentile(b["latency"], 50) * 1e3, 3),
                       "bare_p99_ms": round(percentile(b["latency"], 99) * 1e3, 3),
                       "daemon_p50_ms": round(percentile(lat, 50) * 1e3, 3),
                       "daemon_p99_ms": round(percentile(lat, 99) * 1e3, 3),
                       "daemon_results": len(lat),
                       # how the worker took the load: messages per batch, and the share of
                       # the phase it spent processing (parse + models + commit)
                       "daemon_msgs_per_batch": round(n / max(load1[0] - load0[0], 1), 1),
                       "daemon_worker_busy": round((load1[1] - load0[1]) / took, 3)}
                if relay:
                    relay_lat = bench.latencies(relay_receiver)
                    relay.wait(timeout=60)
                    row |= {"relay_p50_ms": round(percentile(relay_lat, 50) * 1e3, 3),
                            "relay_p99_ms": round(percentile(relay_lat, 99) * 1e3, 3),
                            "relay_results": len(relay_lat)}
                report["latency"].append(row)
                print(json.dumps(row), flush=True)
                rss.append([total, round(bench.rss_mb(daemon.pid), 1)])

            # 3. the rest in bursts of 100k, watching RSS after each
            while total < args.total:
                n = min(100_000 - total % 100_000, args.total - total)
                bench.publish_steps(pub, n, rate=None)
                total += n
                bench.wait_daemon(total, timeout_s=900)
                rss.append([total, round(bench.rss_mb(daemon.pid), 1)])
                print(f"  RSS after {total} messages: {rss[-1][1]} MB", file=sys.stderr,
                      flush=True)
            report["messages_total"] = total
            report["rss_end_mb"] = bench.rss_mb(daemon.pid)
            report["rss_trace_mb"] = rss
            report["outbox_depth_end"] = bench.metric("procedge_outbox_depth")
        finally:
            pub.loop_stop()
            daemon.send_signal(signal.SIGTERM)
            try:
                report["daemon_exit"] = daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.kill()
    shutil.rmtree(workdir, ignore_errors=True)
    report |= headline(report, args.workers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(table(report))
    return report


def headline(report: dict, workers: int = 1) -> dict:
    """The figures the scale goals are stated in, under fixed keys (``workers``: the worker
    processes, 1 for one daemon process): CPU per message and burst rates of each side,
    latency per rate, RSS (of the largest worker process)."""
    t = report["throughput"]
    return {"cpu_us_per_msg": {"daemon": t["daemon_cpu_us_per_msg"],
                               "bare": t["bare_cpu_us_per_msg"]},
            "burst": {"daemon_rate": t["daemon_msg_s"], "bare_rate": t["bare_msg_s"]},
            "rates": [{"rate": r["rate_msg_s"]} | {k: r[k] for k in (
                "bare_p50_ms", "bare_p99_ms", "daemon_p50_ms", "daemon_p99_ms")}
                for r in report["latency"]],
            "rss_mb": {"start": report.get("rss_start_mb"), "end": report.get("rss_end_mb")},
            "workers": workers}


def latency_goal(rate: float, p50: float, p99: float) -> str:
    """The scale goals at a fixed rate (one run, this machine): p99 ≤ 5 ms at 1 000 msg/s;
    at 5 000 msg/s the daemon keeps up, p50 ≤ 10 ms and p99 ≤ 25 ms."""
    if rate <= 1000:
        return f"p99 ≤ 5 ms: {'met' if p99 <= 5 else 'not met'}"
    if rate <= 5000:
        met = p50 <= 10 and p99 <= 25
        return f"p50 ≤ 10 ms, p99 ≤ 25 ms: {'met' if met else 'not met'}"
    return "no goal"


def table(report: dict) -> str:
    """The figures as a markdown table (for docs/edge_daemon.md), each beside its goal."""
    t = report["throughput"]
    cpu_ratio = t["daemon_cpu_us_per_msg"] / t["bare_cpu_us_per_msg"]
    lines = ["| | bare subscriber | daemon | ratio / goal | zero-work relay (p99 ratio) |",
             "|---|---|---|---|---|",
             f"| burst of {t['messages']} msgs, msg/s | {t['bare_msg_s']} | "
             f"{t['daemon_msg_s']} | {t['ratio']} (goal ≥ 0.8) | |",
             f"| CPU per message | {t['bare_cpu_us_per_msg']} µs | "
             f"{t['daemon_cpu_us_per_msg']} µs | {cpu_ratio:.2f} (goal ≤ 2.5: "
             f"{'met' if cpu_ratio <= 2.5 else 'not met'}) | |"]
    for r in report["latency"]:
        relay = (f"{r['relay_p50_ms']} / {r['relay_p99_ms']} "
                 f"({r['relay_p99_ms'] / r['bare_p99_ms']:.2f})" if "relay_p99_ms" in r else "")
        goal = latency_goal(r["rate_msg_s"], r["daemon_p50_ms"], r["daemon_p99_ms"])
        lines.append(f"| {r['rate_msg_s']:.0f} msg/s (achieved {r['achieved_msg_s']}): "
                     f"p50 / p99 ms | {r['bare_p50_ms']} / {r['bare_p99_ms']} | "
                     f"{r['daemon_p50_ms']} / {r['daemon_p99_ms']} | p99 ratio "
                     f"{r['daemon_p99_ms'] / r['bare_p99_ms']:.2f}; {goal} | {relay} |")
    trace = report.get("rss_trace_mb", [])
    series = ", ".join(f"{n // 1000}k: {mb}" for n, mb in trace)
    peak = max((mb for _, mb in trace), default=report["rss_start_mb"])
    lines.append(f"| daemon RSS, MB | | start {report['rss_start_mb']:.1f}; {series} | "
                 f"largest {peak:.1f}; ≤ 80 per worker: {'met' if peak <= 80 else 'not met'} "
                 "(flat: read the series) | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
