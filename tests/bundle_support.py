"""A sealed bundle with a placeholder model: enough for hashing and signing tests, which never
run the model (the trained-model tests use the real fixtures in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_runtime.bundle import InputSpec, Manifest, ScalerSpec, TagSpec, write_bundle


def sealed_bundle(directory: Path, extra_files: dict[str, str] | None = None,
                  **manifest_fields) -> Path:
    directory.mkdir(parents=True)
    (directory / "model.tflite").write_bytes(b"not a real model; Bundle.load checks hashes only")
    for name, text in (extra_files or {}).items():
        (directory / name).write_text(text)
    fields = {
        "name": "m", "version": "1", "task": "anomaly", "family": "dense_ae",
        "quantization": "int8", "training_data_sha256": "0" * 64,
        "input": InputSpec(tags=[TagSpec(name="t", unit="degC")], period_s=1, window=4,
                           max_gap_s=2),
        "scaler": ScalerSpec(mean=[0.0], scale=[1.0]),
    } | manifest_fields
    return write_bundle(directory, Manifest(**fields))


def ed25519_keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """An Ed25519 key pair as PEM files (private PKCS8, public SubjectPublicKeyInfo), as a
    bundle builder or an operator console holds them."""
    key = Ed25519PrivateKey.generate()
    private, public = directory / f"{name}.pem", directory / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public
