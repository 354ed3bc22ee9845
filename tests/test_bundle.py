"""A corrupt or edited bundle is refused, naming the file; a good one loads from dir or zip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge_runtime.bundle import Bundle, BundleError, pack_bundle
from tests.bundle_support import sealed_bundle


def _bundle(tmp_path: Path) -> Path:
    return sealed_bundle(tmp_path / "b", extra_files={"parity.json": "{}"})


def test_round_trip_directory_and_zip(tmp_path):
    root = _bundle(tmp_path)
    assert Bundle.load(root).manifest.files.keys() == {"model.tflite", "parity.json"}
    archive = pack_bundle(root, tmp_path / "b.zip")
    assert Bundle.load(archive).manifest.name == "m"


def test_tampered_model_is_refused_naming_the_file(tmp_path):
    root = _bundle(tmp_path)
    with (root / "model.tflite").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"model\.tflite: SHA-256 does not match"):
        Bundle.load(root)


def test_edited_manifest_is_refused(tmp_path):
    root = _bundle(tmp_path)
    data = json.loads((root / "manifest.json").read_text())
    data["input"]["window"] = 8
    (root / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"manifest\.json: content does not match"):
        Bundle.load(root)


def test_missing_listed_file_is_refused(tmp_path):
    root = _bundle(tmp_path)
    (root / "parity.json").unlink()
    with pytest.raises(BundleError, match=r"parity\.json: listed in the manifest but missing"):
        Bundle.load(root)


def test_zip_with_path_traversal_is_refused(tmp_path):
    import zipfile

    root = _bundle(tmp_path)
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(root / "manifest.json", "../manifest.json")
    with pytest.raises(BundleError, match="unsafe path"):
        Bundle.load(archive)
    shutil.rmtree(root)
