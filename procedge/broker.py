"""A local MQTT broker for the demo and the tests: Mosquitto on a free loopback port.

Listens on 127.0.0.1 only, with its own temporary config; stopped with the context manager.
Where Mosquitto is not installed, the demo may fall back to the pure-Python amqtt broker
(MQTT 3.1.1 only, slower) — tests never do.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = ("mosquitto is not installed: run `sudo apt-get install -y mosquitto` "
                "(Debian/Ubuntu) — the package does not start a system broker.")


class BrokerError(RuntimeError):
    pass


@dataclass
class Broker:
    host: str
    port: int
    kind: str  # "mosquitto" or "amqtt"
    process: subprocess.Popen | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None)


def _wait_for_port(port: int, process: subprocess.Popen | None, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BrokerError(f"broker exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise BrokerError(f"broker did not listen on 127.0.0.1:{port} within {timeout_s} s")


@contextmanager
def mosquitto(port: int | None = None, extra_config: str = "", workdir: Path | None = None):
    """Run ``mosquitto -c <tmp conf>`` on 127.0.0.1; yields a :class:`Broker`."""
    binary = mosquitto_binary()
    if binary is None:
        raise BrokerError(INSTALL_HINT)
    port = port or free_port()
    tmp = Path(workdir or tempfile.mkdtemp(prefix="procedge-mosquitto-"))
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nlog_dest stderr\n"
        f"persistence false\nmax_queued_messages 100000\n{extra_config}\n")
    log = (tmp / "mosquitto.log").open("wb")
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
    try:
        _wait_for_port(port, process, timeout_s=10)
        time.sleep(0.05)  # as root it drops privileges after opening the port: still alive?
        if process.poll() is not None:
            raise BrokerError(f"mosquitto exited: see {tmp / 'mosquitto.log'}")
        yield Broker("127.0.0.1", port, "mosquitto", process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextmanager
def amqtt_broker(port: int | None = None):
    """Fallback: amqtt in a background thread of this process (MQTT 3.1.1, demo only)."""
    import asyncio
    import logging

    from amqtt.broker import Broker as AmqttBroker

    logging.getLogger("amqtt").setLevel(logging.CRITICAL)  # chatty about normal shutdowns

    port = port or free_port()
    loop = asyncio.new_event_loop()
    config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
              "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                          {"allow_anonymous": True}}}
    broker = AmqttBroker(config, loop=loop)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(broker.start(), loop).result(timeout=10)  # listening
    try:
        yield Broker("127.0.0.1", port, "amqtt")
    finally:
        asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)


@contextmanager
def local_broker(allow_fallback: bool = True):
    """Mosquitto if installed, else (saying so) amqtt."""
    if mosquitto_binary() is not None:
        with mosquitto() as broker:
            yield broker
        return
    if not allow_fallback:
        raise BrokerError(INSTALL_HINT)
    print(f"NOTE: {INSTALL_HINT}\n      Falling back to the in-process amqtt broker "
          "(MQTT 3.1.1 only, slower).")
    with amqtt_broker() as broker:
        yield broker
