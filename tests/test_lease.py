"""The lease against real Mosquitto when the active dies silently: frozen (SIGSTOP), as a
gateway that lost power or its cable looks to the broker. The standby takes the lease once the
active's heartbeat stops (or its keepalive expires); the old active, thawed, finds a holder
with a higher term and steps down."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

from edge_runtime.config import MqttConfig
from edge_runtime.ha_config import HaConfig
from edge_runtime.lease import Lease
from tests.daemon_support import ROOT, wait_for

TOPIC = "procedge/test/lease"
HA = {"lease_topic": TOPIC, "keepalive_s": 1, "heartbeat_s": 0.3}
PEER_A = f"""
import sys, time
from edge_runtime.config import MqttConfig
from edge_runtime.ha_config import HaConfig
from edge_runtime.lease import Lease
lease = Lease(HaConfig(peer_id="a", priority=0, **{HA!r}),
              MqttConfig(port=int(sys.argv[1]), reconnect_min_s=0.1, reconnect_max_s=0.2),
              "peer-a", lambda role, term: print(role, term, flush=True), lambda *_: None, [])
lease.start()
time.sleep(60)
"""


def test_a_frozen_active_loses_the_lease_and_steps_down_when_it_thaws(broker):
    a = subprocess.Popen([sys.executable, "-c", PEER_A, str(broker.port)], cwd=ROOT,
                         stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(a.stdout.readline, "")),
                     daemon=True).start()
    b = Lease(HaConfig(peer_id="b", priority=1, **HA),
              MqttConfig(port=broker.port, reconnect_min_s=0.1, reconnect_max_s=0.2),
              "peer-b", lambda role, term: None, lambda *_: None, [])
    try:
        assert wait_for(lambda: "active 1\n" in lines, 30), lines
        b.start()
        time.sleep(1.0)  # several heartbeats: b has seen a hold the lease
        assert not b.active
        a.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        assert wait_for(lambda: b.active, 5)
        took = time.monotonic() - frozen
        assert b.term == 2 and took <= 1.5 * HA["keepalive_s"] + 1.0  # + scheduling margin
        a.send_signal(signal.SIGCONT)
        assert wait_for(lambda: "standby 1\n" in lines, 10), lines  # a steps down ...
        time.sleep(3 * HA["heartbeat_s"])
        assert b.active and b.term == 2  # ... and b keeps the lease: not pre-emptive
        print(f"\nlease: frozen active lost it after {took * 1000:.0f} ms; thawed, it "
              f"stepped down (a: {[line.strip() for line in lines]})")
    finally:
        a.send_signal(signal.SIGCONT)
        a.kill()
        a.wait()
        b.stop()
