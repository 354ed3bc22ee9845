"""Signed bundles: the gateway, given a public key, accepts only bundles signed by its owner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_runtime.bundle import (
    MANIFEST,
    SIGNATURE,
    Bundle,
    BundleError,
    _manifest_digest,
    sign_bundle,
)
from edge_runtime.config import load_edge_config
from tests.bundle_support import ed25519_keypair, sealed_bundle


def _bundle(directory: Path) -> Path:
    return sealed_bundle(directory, task="forecast", family="tcn",
                         representative_sha256="abc")


@pytest.fixture
def keys(tmp_path):
    return ed25519_keypair(tmp_path, "builder"), ed25519_keypair(tmp_path, "stranger")


def test_signed_bundle_is_accepted(tmp_path, keys):
    (private, public), _ = keys
    root = _bundle(tmp_path / "b")
    sign_bundle(root, private)
    bundle = Bundle.load(root, public_key=public)
    assert bundle.manifest.representative_sha256 == "abc"
    assert SIGNATURE not in bundle.manifest.files  # the signature is over the manifest


def test_unsigned_bundle_is_refused_when_a_key_is_configured(tmp_path, keys):
    (_, public), _ = keys
    root = _bundle(tmp_path / "b")
    Bundle.load(root)  # fine without a key
    with pytest.raises(BundleError, match="unsigned"):
        Bundle.load(root, public_key=public)


def test_bundle_signed_by_another_key_is_refused(tmp_path, keys):
    (_, public), (stranger, _) = keys
    root = _bundle(tmp_path / "b")
    sign_bundle(root, stranger)
    with pytest.raises(BundleError, match="signature does not match"):
        Bundle.load(root, public_key=public)


def test_tampered_bundle_is_refused(tmp_path, keys):
    (private, public), _ = keys
    root = _bundle(tmp_path / "b")
    sign_bundle(root, private)
    # Edit the manifest and fix its own hash: only the signature can tell.
    data = json.loads((root / MANIFEST).read_text())
    data["quantization"] = "fp32"
    data["manifest_sha256"] = _manifest_digest(data)
    (root / MANIFEST).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    Bundle.load(root)  # internally consistent, so an unkeyed gateway would take it
    with pytest.raises(BundleError, match="signature does not match"):
        Bundle.load(root, public_key=public)
    # Swap the model file: the (signed) manifest's hash list catches it.
    root2 = _bundle(tmp_path / "c")
    sign_bundle(root2, private)
    (root2 / "model.tflite").write_bytes(b"evil")
    with pytest.raises(BundleError, match="model.tflite: SHA-256 does not match"):
        Bundle.load(root2, public_key=public)


def test_edge_config_takes_a_public_key_relative_to_the_file(tmp_path):
    (tmp_path / "edge.yaml").write_text(
        "models:\n  - {name: m, bundle: b, public_key: keys/builder.pub.pem}\n")
    config = load_edge_config(tmp_path / "edge.yaml")
    assert config.models[0].public_key == (tmp_path / "keys/builder.pub.pem").resolve()


def test_daemon_refuses_an_unsigned_bundle_when_its_config_has_a_key(tmp_path, keys):
    from edge_runtime.daemon import EdgeDaemon

    (_, public), _ = keys
    _bundle(tmp_path / "b")
    (tmp_path / "edge.yaml").write_text(
        f"models:\n  - {{name: m, bundle: b, public_key: {public.name}}}\n")
    with pytest.raises(BundleError, match="unsigned"):
        EdgeDaemon(load_edge_config(tmp_path / "edge.yaml"))
