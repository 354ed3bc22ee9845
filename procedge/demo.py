"""``make demo``: the whole path on the built-in plant, in a few minutes on 2 CPU cores.

train a forecaster and an autoencoder → convert (int8 where the parity gate allows) → start a
broker on loopback → start the edge daemon → publish a simulated run with a sensor fault →
print the alarms the daemon published → stop everything that was started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
UNS = "procedge/demo/area1/tank1"
# The autoencoder ships as full int8; the forecaster's mode is chosen by measurement.
DEMO_MODES = {"tank_anomaly": ("int8",)}


@dataclass
class Collector:
    """Subscribes to the daemon's outputs and keeps them for inspection."""

    host: str
    port: int
    topics: list[str]
    messages: list[tuple[str, dict | str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="procedge-watch")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in self.topics])
        self.client.connect(self.host, self.port)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        try:
            body: dict | str = json.loads(message.payload)
        except ValueError:
            body = message.payload.decode(errors="replace")
        with self._lock:
            self.messages.append((message.topic, body))

    def matching(self, fragment: str) -> list[tuple[str, dict | str]]:
        with self._lock:
            return [(t, b) for t, b in self.messages if fragment in t]

    def wait_for(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def write_edge_config(path: Path, port: int, bundles: dict[str, Path], gateway: str = "demo",
                      uns: str = UNS) -> Path:
    config = {
        "gateway": gateway,
        "mqtt": {"host": "127.0.0.1", "port": port},
        "topics": {"uns": uns},
        "models": [{"name": name, "bundle": str(path)} for name, path in bundles.items()],
        "log_level": "INFO",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_daemon(config_path: Path, log_path: Path) -> subprocess.Popen:
    """``procedge run`` in a child process, as on a gateway."""
    root = str(Path(__file__).resolve().parent.parent)
    env = os.environ | {"PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    log = log_path.open("wb")
    return subprocess.Popen([sys.executable, "-m", "procedge", "run", "--config",
                             str(config_path)], stdout=log, stderr=subprocess.STDOUT, env=env)


def stop_daemon(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def train_and_convert(workdir: Path) -> dict[str, Path]:
    """Train both demo models and convert them; returns bundle path per model name."""
    from converters.build import build_auto
    from edge_runtime.contract import AUTO_ORDER
    from training.config import load_train_config
    from training.train import train

    bundles = {}
    for name in ("tank_anomaly", "tank_forecast"):
        config = load_train_config(CONFIGS / f"{name}.yaml")
        config.output_dir = workdir / "runs"
        t0 = time.monotonic()
        run_dir = train(config)
        print(f"  trained {name} ({config.family}) in {time.monotonic() - t0:.0f} s")
        bundle, attempts = build_auto(run_dir, workdir / "bundles",
                                      candidates=DEMO_MODES.get(name, AUTO_ORDER))
        for line in attempts:
            print(f"    convert {line}")
        bundles[name] = bundle.root
    return bundles


def main(workdir: Path = Path("artifacts/demo"), allow_fallback: bool = True) -> None:
    from procedge.broker import local_broker
    from procedge.feeds import connect, publish_rows
    from training.simulator import Fault, simulate

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    print("1/4 training and converting on the simulated heated tank")
    bundles = train_and_convert(workdir)
    with local_broker(allow_fallback=allow_fallback) as broker:
        print(f"2/4 {broker.kind} broker on {broker.host}:{broker.port}; starting the daemon")
        config = write_edge_config(workdir / "edge.yaml", broker.port, bundles)
        watch = Collector(broker.host, broker.port, [f"{UNS}/alarm/#", f"{UNS}/inference/#",
                                                     "edge/demo/status"])
        daemon = start_daemon(config, workdir / "daemon.log")
        try:
            if not watch.wait_for(lambda w: ("edge/demo/status", "online") in w.messages, 60):
                raise RuntimeError(f"daemon did not come online; see {workdir / 'daemon.log'}")
            steps, period = 720, 5.0
            fault = Fault("drift", "temperature", steps * period / 2, 0.02)
            print(f"3/4 publishing {steps} samples x 5 tags, temperature sensor drifting "
                  f"{fault.magnitude} degC/s from t+{fault.start_s:.0f} s")
            start = time.time() - steps * period
            run = simulate(steps, period, seed=7, start_epoch_s=start - start % period,
                           faults=[fault])
            feed = connect(broker.host, broker.port, "procedge-demo-feed")
            publish_rows(feed, "{uns}/raw/{tag}", UNS, run.tag_names, run.timestamps, run.values)
            feed.disconnect()
            expected = steps - 12 + 1  # anomaly windows the daemon must score
            watch.wait_for(lambda w: len(w.matching("inference/tank_anomaly")) >= expected, 60)
        finally:
            code = stop_daemon(daemon)
            watch.close()
    _report(watch, code, workdir)


def _culprits(alarm: dict) -> str:
    """The tags an alarm points at: the model's top contributions, or for an advisory drift
    alarm (no contributions) the tag its monitor names."""
    if alarm.get("contributions"):
        return "culprits: " + ", ".join(f"{c['tag']} {c['share']:.0%}"
                                        for c in alarm["contributions"][:3])
    kind = "advisory " if alarm.get("advisory") else ""
    return f"{kind}source: {', '.join(alarm.get('source') or ['-'])}"


def _report(watch: Collector, exit_code: int, workdir: Path) -> None:
    alarms = [b for _, b in watch.matching("/alarm/") if isinstance(b, dict) and "event" in b]
    forecasts = [b for _, b in watch.matching("inference/tank_forecast") if isinstance(b, dict)]
    print(f"4/4 daemon stopped (exit {exit_code}); {len(forecasts)} forecasts, "
          f"{len(alarms)} alarm event(s):")
    for alarm in alarms:
        print(f"  {alarm['source_ts']}  {alarm['alarm_id']}  "
              f"{alarm['event'].upper():5s} {alarm['priority']:6s} score {alarm['score']:.3g} "
              f"(limit {alarm['threshold']:.3g})  {_culprits(alarm)}")
    if forecasts:
        last = forecasts[-1]
        for tag, values in last["forecast"].items():
            print(f"  forecast {tag} [{last['units'][tag]}] at {last['ts']}: "
                  + " ".join(f"{v:.2f}" for v in values))
    if not alarms:
        raise SystemExit(f"no alarm was published; see {workdir / 'daemon.log'}")
