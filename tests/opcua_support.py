"""asyncua's own OPC UA server in a thread of its own (its own event loop), on a fixed loopback
port, with one Double variable per tag under ``ns=2;s=<tag>``; a test writes values with
source timestamps and status codes, and stops and restarts it on the same port.

Each variable starts as ``BadWaitingForInitialData`` (a real server's state before its first
reading): a subscription's first notification is the current value, and a Good 0.0 stamped
"now" would put the daemon's window grid ahead of the historical samples a test writes."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from datetime import UTC, datetime
from pathlib import Path

from asyncua import Server, ua
from asyncua.crypto.cert_gen import (
    dump_private_key_as_pem,
    generate_private_key,
    generate_self_signed_app_certificate,
)
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from procedge.broker import free_port

NAMESPACE = "urn:procedge:test"
WAITING = 0x80320000  # BadWaitingForInitialData


class OpcUaTestServer:
    def __init__(self, tags: list[str], port: int | None = None,
                 secure: tuple[Path, Path] | None = None):
        """``secure``: (certificate, private key): Basic256Sha256 SignAndEncrypt only."""
        self.tags = tags
        self.secure = secure
        self.port = port or free_port()
        self.endpoint = f"opc.tcp://127.0.0.1:{self.port}/procedge/"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="opcua-test-server")
        self.thread.start()
        self.server: Server | None = None
        self.variables: dict[str, object] = {}
        self.ns = 2

    def _call(self, coro, timeout_s: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def node_id(self, tag: str) -> str:
        return f"ns={self.ns};s={tag}"

    def start(self) -> None:
        self._call(self._start())

    async def _start(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        if self.secure is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        else:
            await server.load_certificate(str(self.secure[0]))
            await server.load_private_key(str(self.secure[1]))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        self.ns = await server.register_namespace(NAMESPACE)
        plant = await server.nodes.objects.add_object(self.ns, "Plant")
        self.variables = {}
        for tag in self.tags:
            var = await plant.add_variable(ua.NodeId(tag, self.ns), tag, 0.0)
            await var.write_value(ua.DataValue(ua.Variant(0.0, ua.VariantType.Double),
                                               StatusCode=ua.StatusCode(WAITING)))
            self.variables[tag] = var
        await server.start()
        self.server = server

    def write(self, tag: str, value: float, ts_s: float, status: int = 0) -> None:
        """One value with its source timestamp (epoch seconds) and StatusCode."""
        self._call(self._write(tag, value, ts_s, status))

    def write_many(self, rows: list[tuple[str, float, float, int]]) -> None:
        async def all_of() -> None:
            for row in rows:
                await self._write(*row)
        self._call(all_of())

    async def _write(self, tag: str, value: float, ts_s: float, status: int) -> None:
        stamp = datetime.fromtimestamp(ts_s, UTC)
        await self.variables[tag].write_value(ua.DataValue(
            ua.Variant(value, ua.VariantType.Double), StatusCode=ua.StatusCode(status),
            SourceTimestamp=stamp, ServerTimestamp=datetime.now(UTC)))

    def stop(self) -> None:
        if self.server is not None:
            self._call(self.server.stop())
            self.server = None

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def make_certificate(folder: Path, name: str, uri: str, server: bool) -> tuple[Path, Path]:
    """A self-signed application certificate (PEM) and its key, as OPC UA Part 6 wants one:
    the application URI and the host in subjectAltName."""
    key = generate_private_key()
    names = [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost"),
             x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    use = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = generate_self_signed_app_certificate(key, name, {}, names, extended=[use])
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.PEM))
    key_path.write_bytes(dump_private_key_as_pem(key))
    return cert_path, key_path
