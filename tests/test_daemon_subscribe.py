"""A subscription the broker refuses is reported, not a silence.

Mosquitto's ``acl_file`` grants every SUBSCRIBE and filters at delivery (checked with 2.0.11:
SUBACK "Granted QoS 1" for a denied topic), so a daemon outside its ACL would look healthy and
receive nothing. Its dynamic-security plugin refuses in the SUBACK, as other brokers do: that
is the broker here.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from edge_runtime.config import EdgeConfig
from edge_runtime.daemon import EdgeDaemon
from procedge.broker import mosquitto
from tests.daemon_support import UNS, edge_config, wait_for

# where Debian's mosquitto package puts it (any architecture)
DYNSEC = next(iter(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so")
                   + glob.glob("/usr/lib/mosquitto_dynamic_security.so")), None)
PASSWORD = "gw-pw"


def dynsec_config(folder: Path, username: str, password: str, subscribe: list[str]) -> Path:
    """A dynamic-security file: one user, allowed to subscribe to ``subscribe`` only."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101, 64)
    config = {
        "defaultACLAccess": {"publishClientSend": True, "publishClientReceive": True,
                             "subscribe": False, "unsubscribe": True},
        "clients": [{"username": username, "password": base64.b64encode(digest).decode(),
                     "salt": base64.b64encode(salt).decode(), "iterations": 101,
                     "roles": [{"rolename": "gateway"}]}],
        "groups": [],
        "roles": [{"rolename": "gateway", "acls": [
            {"acltype": "subscribePattern", "topic": t, "allow": True} for t in subscribe]}],
    }
    path = folder / "dynamic-security.json"
    path.write_text(json.dumps(config))
    path.chmod(0o666)  # mosquitto, as root, drops to its own user and rewrites the file
    return path


@pytest.fixture
def dynsec_broker():
    """Mosquitto (plaintext, loopback) whose user gw may subscribe to procedge/# and to the
    gateway's own topics only."""
    assert DYNSEC, "mosquitto_dynamic_security.so not found (Debian's mosquitto package has it)"
    folder = Path(tempfile.mkdtemp(prefix="procedge-dynsec-"))
    folder.chmod(0o777)
    security = dynsec_config(folder, "gw", PASSWORD, [f"{UNS}/#", "edge/gwtest/#"])
    plugin = f"plugin {DYNSEC}\nplugin_opt_config_file {security}\n"
    try:
        with mosquitto(extra_config=plugin, workdir=folder) as broker:
            yield broker
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def gateway_config(tmp_path: Path, port: int, bundles, monkeypatch, **overrides) -> EdgeConfig:
    monkeypatch.setenv("PROCEDGE_TEST_PW", PASSWORD)
    config = edge_config(tmp_path, port, bundles, **overrides)
    config["mqtt"] |= {"username": "gw", "password_env": "PROCEDGE_TEST_PW"}
    return EdgeConfig.model_validate(config)


def test_subscription_refused_by_the_broker_is_reported(dynsec_broker, tmp_path: Path,
                                                       bundles, caplog, monkeypatch):
    # the commands and the UNS are granted; the sensor topics of unit 9 are not
    config = gateway_config(tmp_path, dynsec_broker.port, bundles, monkeypatch,
                            topics={"uns": "plant/unit9"})
    caplog.set_level(logging.INFO)
    daemon = EdgeDaemon(config)
    daemon.start()
    try:
        assert wait_for(lambda: daemon.metrics.value(
            "procedge_mqtt_subscriptions_refused_total") >= 1, 10)
        ok, detail = daemon.health()
        assert detail["connected"] and not detail["subscribed"] and not ok
    finally:
        daemon.stop(drain_timeout_s=0)
    assert "broker refused" in caplog.text and "plant/unit9/raw/" in caplog.text
    assert "edge/gwtest/cmd/#" not in caplog.text.split("broker refused", 1)[1]


def test_sparkplug_node_reports_a_refused_ncmd_subscription(dynsec_broker, tmp_path: Path,
                                                            bundles, caplog, monkeypatch):
    """The inputs are granted (the daemon is healthy); the edge node's NCMD is not."""
    config = gateway_config(tmp_path, dynsec_broker.port, bundles, monkeypatch,
                            sparkplug={"output": {"group": "Plant1"}})
    caplog.set_level(logging.INFO)
    daemon = EdgeDaemon(config)
    daemon.start()
    try:
        assert daemon.subscribed.wait(10)
        assert wait_for(lambda: daemon.metrics.value(
            "procedge_mqtt_subscriptions_refused_total") >= 1, 10)
    finally:
        daemon.stop(drain_timeout_s=0)
    assert "sparkplug: broker refused the subscription to spBv1.0/Plant1/NCMD/gwtest" \
        in caplog.text
