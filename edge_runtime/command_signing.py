"""Signed operator commands: the sender's identity is proved by an Ed25519 signature, not
taken from what the sender writes (``commands.require_signature``).

The envelope is the command's JSON object itself, with four more members:

- ``by``: the operator id, a key of ``commands.operator_keys``;
- ``ts``: when it was signed, ISO 8601 with a zone or epoch milliseconds;
- ``nonce``: random hex, 16 to 64 characters, never used twice;
- ``sig``: base64 (standard alphabet) of the Ed25519 signature over :func:`canonical_bytes`:
  the object without ``sig``, as JSON with sorted keys and no spaces
  (``separators=(",", ":")``, ``ensure_ascii=False``), UTF-8.

The gateway accepts a command when the key of ``by`` is known, the signature is valid, ``ts``
is within ``max_clock_skew_s`` of its clock and the (``by``, ``nonce``) pair was not seen in
the last 2 × ``max_clock_skew_s`` (a replay). Same primitives as the bundle signatures
(:func:`edge_runtime.bundle.sign_bundle`): PEM keys, ``cryptography``'s Ed25519.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import string
import time
from collections import OrderedDict
from pathlib import Path

from edge_runtime.payloads import PayloadError, iso_ms, parse_timestamp

ENVELOPE = ("by", "ts", "nonce", "sig")


class CommandAuthError(Exception):
    """A command refused by the signature check; ``code`` is the metric label."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def canonical_bytes(body: dict) -> bytes:
    """What is signed: the command without ``sig``, sorted keys, no spaces, UTF-8."""
    unsigned = {k: v for k, v in body.items() if k != "sig"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def sign_command(body: dict, private_key: str | Path, *, by: str, now_s: float | None = None,
                 iso_ts: bool = False) -> dict:
    """Return ``body`` with ``by``, ``ts`` (epoch ms, or ISO 8601 with ``iso_ts``), a fresh
    ``nonce`` and ``sig``, signed with an Ed25519 private key (PEM, unencrypted)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(Path(private_key).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{private_key}: not an Ed25519 private key")
    now_s = time.time() if now_s is None else now_s
    signed = {k: v for k, v in body.items() if k not in ENVELOPE}
    signed |= {"by": by, "ts": iso_ms(now_s) if iso_ts else round(now_s * 1000),
               "nonce": secrets.token_hex(16)}
    signed["sig"] = base64.b64encode(key.sign(canonical_bytes(signed))).decode("ascii")
    return signed


def load_public_key(path: Path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    key = load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key


class CommandVerifier:
    """Checks signed commands; keeps the nonces it accepted, bounded in time and number."""

    def __init__(self, operator_keys: dict[str, Path], max_clock_skew_s: float,
                 max_nonces: int = 10_000):
        """Loads every key now: a missing or wrong key file stops the daemon at start."""
        self.keys = {op: load_public_key(path) for op, path in operator_keys.items()}
        self.skew = max_clock_skew_s
        self.max_nonces = max_nonces
        self.nonces: OrderedDict[tuple[str, str], float] = OrderedDict()  # → forget after

    def verify(self, body: dict, now_s: float) -> tuple[str, str | None]:
        """(verified operator id, None) or (claimed id, why refused)."""
        try:
            return self.check(body, now_s), None
        except CommandAuthError as exc:
            return str(body.get("by", ""))[:100], str(exc)

    def check(self, body: dict, now_s: float) -> str:
        """The verified operator id; raises :class:`CommandAuthError`."""
        from cryptography.exceptions import InvalidSignature

        sig, by, nonce = body.get("sig"), body.get("by"), body.get("nonce")
        if not isinstance(sig, str) or not sig:
            raise CommandAuthError("unsigned", "unsigned command (commands.require_signature "
                                               "is on): add by, ts, nonce and sig")
        if not isinstance(by, str) or by not in self.keys:
            raise CommandAuthError("unknown_operator", f"unknown operator {str(by)[:100]!r}: "
                                                       "no key in commands.operator_keys")
        if not isinstance(nonce, str) or not 16 <= len(nonce) <= 64 or not _is_hex(nonce):
            raise CommandAuthError("bad_envelope", "nonce must be 16-64 hex characters")
        try:
            ts = parse_timestamp(body.get("ts"))
        except PayloadError as exc:
            raise CommandAuthError("bad_envelope", "ts must be ISO 8601 with a zone or epoch "
                                                   "milliseconds") from exc
        try:
            self.keys[by].verify(base64.b64decode(sig, validate=True), canonical_bytes(body))
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise CommandAuthError("bad_signature", f"signature does not match the key of "
                                                    f"{by!r}") from exc
        if abs(now_s - ts) > self.skew:
            raise CommandAuthError("stale", f"ts {now_s - ts:+.0f} s from the gateway clock "
                                            f"(at most ±{self.skew:g} s)")
        self._forget(now_s)
        if (by, nonce) in self.nonces:
            raise CommandAuthError("replay", "replayed command (nonce already used)")
        if len(self.nonces) >= self.max_nonces:
            raise CommandAuthError("nonce_cache_full", "too many signed commands in the replay "
                                                       "window; retry later")
        self.nonces[(by, nonce)] = now_s + 2 * self.skew
        return by

    def _forget(self, now_s: float) -> None:
        """Drop nonces whose commands are stale by now (kept in arrival order)."""
        while self.nonces:
            key, until = next(iter(self.nonces.items()))
            if until > now_s:
                break
            del self.nonces[key]


def _is_hex(text: str) -> bool:
    return all(c in string.hexdigits for c in text)
