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


def test_subscription_refused_by_the_broker_is_reported(tmp_path: Path, bundles, caplog,
                                                       monkeypatch):
    assert DYNSEC, "mosquitto_dynamic_security.so not found (Debian's mosquitto package has it)"
    folder = Path(tempfile.mkdtemp(prefix="procedge-dynsec-"))
    folder.chmod(0o777)
    # the commands and the UNS are granted; the sensor topics of unit 9 are not
    security = dynsec_config(folder, "gw", PASSWORD, [f"{UNS}/#", "edge/gwtest/#"])
    plugin = f"plugin {DYNSEC}\nplugin_opt_config_file {security}\n"
    monkeypatch.setenv("PROCEDGE_TEST_PW", PASSWORD)
    caplog.set_level(logging.INFO)
    with mosquitto(extra_config=plugin, workdir=folder) as broker:  # plaintext, loopback
        config = edge_config(tmp_path, broker.port, bundles, topics={"uns": "plant/unit9"})
        config["mqtt"] |= {"username": "gw", "password_env": "PROCEDGE_TEST_PW"}
        daemon = EdgeDaemon(EdgeConfig.model_validate(config))
        daemon.start()
        try:
            assert wait_for(lambda: daemon.metrics.value(
                "procedge_mqtt_subscriptions_refused_total") >= 1, 10)
            ok, detail = daemon.health()
            assert detail["connected"] and not detail["subscribed"] and not ok
        finally:
            daemon.stop(drain_timeout_s=0)
    shutil.rmtree(folder, ignore_errors=True)
    assert "broker refused" in caplog.text and "plant/unit9/raw/" in caplog.text
    assert "edge/gwtest/cmd/#" not in caplog.text.split("broker refused", 1)[1]
