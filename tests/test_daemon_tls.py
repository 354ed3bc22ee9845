"""TLS + password + ACL Mosquitto: right credentials work, wrong ones fail clearly, and a
config that requires TLS refuses plaintext before connecting."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import logging
import queue
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from edge_runtime.config import EdgeConfig
from edge_runtime.daemon import EdgeDaemon, Inbound
from edge_runtime.metrics import DaemonMetrics
from edge_runtime.routing import Topics
from edge_runtime.session import MqttSession
from procedge.broker import _wait_for_port, free_port, mosquitto_binary
from tests.daemon_support import UNS, edge_config, labelled_run, samples, wait_for

SECRET = "s3cret-Pa55"


LOCAL_NAMES = ("localhost", "127.0.0.1")


def _cert(subject: str, key, issuer_name, issuer_key, ca: bool,
          names: tuple[str, ...] = LOCAL_NAMES) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [_general_name(n) for n in names]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def make_pki(folder: Path, names: tuple[str, ...] = LOCAL_NAMES) -> None:
    """A throw-away CA and a server certificate for ``names`` (SAN; default localhost and
    127.0.0.1)."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "procedge test CA")])
    ca = _cert("procedge test CA", ca_key, ca_name, ca_key, ca=True)
    server = _cert(names[0], key, ca_name, ca_key, ca=False, names=names)
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(server.public_bytes(pem))
    (folder / "server.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


@contextlib.contextmanager
def running_tls_broker(names: tuple[str, ...] = LOCAL_NAMES):
    """Mosquitto with TLS only (server certificate for ``names``), passwords and an ACL (files
    readable by user mosquitto); yields (port, folder holding ca.pem)."""
    folder = Path(tempfile.mkdtemp(prefix="procedge-tls-"))
    folder.chmod(0o755)
    make_pki(folder, names)
    passwd = folder / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "gw", SECRET], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "watcher", "w4tch"], check=True)
    (folder / "acl").write_text(
        "user gw\ntopic readwrite procedge/#\ntopic readwrite edge/gwtest/#\n\n"
        "user watcher\ntopic read procedge/#\ntopic read edge/#\n")
    for f in folder.iterdir():
        f.chmod(0o644)  # test keys only
    port = free_port()
    (folder / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\ncafile {folder}/ca.pem\ncertfile {folder}/server.pem\n"
        f"keyfile {folder}/server.key\nallow_anonymous false\npassword_file {passwd}\n"
        f"acl_file {folder}/acl\nlog_dest stderr\npersistence false\n")
    log = (folder / "mosquitto.log").open("wb")
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(folder / "mosquitto.conf")],
                            stdout=log, stderr=log)
    try:
        _wait_for_port(port, proc, 10)
        time.sleep(0.1)
        assert proc.poll() is None, (folder / "mosquitto.log").read_text()
        yield port, folder
    finally:
        proc.terminate()
        proc.wait(timeout=5)


@pytest.fixture
def tls_broker():
    with running_tls_broker() as running:
        yield running


def tls_config(tmp_path: Path, port: int, folder: Path, bundles, **mqtt_extra) -> EdgeConfig:
    config = edge_config(tmp_path, port, bundles)
    config["mqtt"] |= {"tls": {"ca_file": str(folder / "ca.pem")}, "require_tls": True,
                       "username": "gw"} | mqtt_extra
    return EdgeConfig.model_validate(config)


def watcher(port: int, folder: Path, seen: list) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tls-watch")
    client.tls_set(ca_certs=str(folder / "ca.pem"))
    client.username_pw_set("watcher", "w4tch")
    client.on_connect = lambda c, *_: c.subscribe([(f"{UNS}/#", 1), ("edge/#", 1)])
    client.on_message = lambda c, u, m: seen.append((m.topic, m.payload))
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def test_tls_with_password_file(tls_broker, tmp_path: Path, bundles, caplog):
    port, folder = tls_broker
    secret_file = tmp_path / "mqtt.pw"
    secret_file.write_text(SECRET + "\n")
    daemon = EdgeDaemon(tls_config(tmp_path, port, folder, bundles, password_file=str(secret_file)))
    seen: list = []
    watch = watcher(port, folder, seen)
    caplog.set_level(logging.DEBUG)
    daemon.start()
    try:
        assert daemon.subscribed.wait(10)  # not just connected: inputs flow
        assert wait_for(lambda: ("edge/gwtest/status", b"online") in seen, 10)
        for tag, payload in samples(labelled_run(40)):
            daemon.inbox.put(Inbound(f"{UNS}/raw/{tag}", payload, time.time()))
        assert wait_for(lambda: any("/inference/tank_anomaly" in t for t, _ in seen), 20)
        assert wait_for(lambda: daemon.outbox.depth == 0, 10)
    finally:
        daemon.stop(drain_timeout_s=2)
        watch.loop_stop()
    assert SECRET not in caplog.text


def test_wrong_password_fails_clearly(tls_broker, tmp_path: Path, bundles, caplog,
                                      monkeypatch):
    port, folder = tls_broker
    monkeypatch.setenv("PROCEDGE_TEST_PW", "wrong-" + SECRET)
    daemon = EdgeDaemon(tls_config(tmp_path, port, folder, bundles,
                                   password_env="PROCEDGE_TEST_PW"))
    caplog.set_level(logging.INFO)
    daemon.start()
    try:
        assert wait_for(lambda: daemon.metrics.value(
            "procedge_mqtt_connect_failures_total") >= 1, 10)
        assert not daemon.client.is_connected()
        assert not daemon.health()[0]
    finally:
        daemon.stop(drain_timeout_s=0)
    assert "broker refused the connection" in caplog.text
    assert "wrong-" + SECRET not in caplog.text


def test_plaintext_refused_when_tls_required(tmp_path: Path, bundles):
    config = edge_config(tmp_path, 1883, bundles)
    config["mqtt"] |= {"require_tls": True}
    with pytest.raises(ValidationError, match="refusing plaintext"):
        EdgeConfig.model_validate(config)


# -- issue 17 (7): a TLS or connection failure is logged (host:port, reason) and counted -------
@pytest.mark.parametrize("case", ["wrong_hostname", "untrusted_ca", "plaintext_broker",
                                  "plaintext_client"])
def test_tls_failures_are_logged_and_counted(case: str, tmp_path: Path, request, caplog):
    """Before: paho swallowed the handshake error; nothing logged, the counter stayed 0."""
    with contextlib.ExitStack() as stack:
        if case == "wrong_hostname":  # a trusted certificate, but for another name
            port, folder = stack.enter_context(running_tls_broker(("broker.plant.invalid",)))
            ca_file, reason, says = folder / "ca.pem", "tls_hostname", "mismatch"
        elif case == "untrusted_ca":  # the broker's certificate is not from our CA
            port, _ = stack.enter_context(running_tls_broker())
            other = tmp_path / "other-ca"
            other.mkdir()
            make_pki(other)
            ca_file, reason, says = other / "ca.pem", "tls_untrusted", "certificate verify failed"
        elif case == "plaintext_broker":  # TLS configured, but the port speaks plain MQTT
            port, folder = request.getfixturevalue("broker").port, tmp_path
            make_pki(folder)
            ca_file, reason, says = folder / "ca.pem", "tls_handshake", "TLS handshake"
        else:  # no TLS configured, but the port wants TLS
            port, _ = stack.enter_context(running_tls_broker())
            ca_file, reason, says = None, "closed", "before the broker's CONNACK"
        config = edge_config(tmp_path, port, {"m": tmp_path / "unused"})
        config["mqtt"] |= {"reconnect_min_s": 0.05, "reconnect_max_s": 0.1}
        if ca_file is not None:
            config["mqtt"] |= {"tls": {"ca_file": str(ca_file)}, "require_tls": True}
        config = EdgeConfig.model_validate(config)
        metrics, stop = DaemonMetrics(), threading.Event()
        session = MqttSession(config, metrics, Topics(config), queue.Queue(), lambda: [],
                              lambda: "{}", stop)
        caplog.set_level(logging.INFO, logger="procedge.edge")
        session.connect()
        try:
            assert wait_for(lambda: metrics.value("procedge_mqtt_connect_failures_total",
                                                  reason=reason) >= 3, 15), \
                (case, caplog.text, metrics.value("procedge_mqtt_connect_failures_total"))
            assert not session.client.is_connected()
        finally:
            stop.set()
            session.close()
    lines = [r for r in caplog.records if f"127.0.0.1:{port}" in r.getMessage()]
    assert lines, caplog.text
    assert all(r.levelno == logging.WARNING for r in lines)
    assert says in lines[0].getMessage() and reason in lines[0].getMessage(), lines[0]
    assert len(lines) == 1, [r.getMessage() for r in lines]  # throttled: once per reason
    assert metrics.value("procedge_mqtt_connect_failures_total") >= 3  # the total, too
