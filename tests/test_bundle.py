"""A corrupt or edited bundle is refused, naming the file; a good one loads from dir or zip."""

from __future__ import annotations

import json
import re
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


# --- issue 17: zip bundles bounded, listed, inside; temporary folders removed ---------------


def _leftovers(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("procedge-bundle-*"))


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """A private TMPDIR: the test counts the bundle folders left behind in it."""
    import tempfile

    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def _reseal(root: Path, files: dict[str, str]) -> None:
    """Rewrite the manifest's ``files`` and its own SHA-256, as a forger without a key can."""
    from edge_runtime.bundle import _manifest_digest

    data = json.loads((root / "manifest.json").read_text())
    data["files"] = files
    data["manifest_sha256"] = _manifest_digest(data)
    (root / "manifest.json").write_text(json.dumps(data))


def _zip(archive: Path, members: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return archive


def test_zip_bomb_is_refused_and_leaves_no_folder(tmp_path, private_tmp):
    """A member over the per-member cap (default caps, a real bomb: ~130 KB of zip that
    inflates to 129 MiB), listed with its true hash: refused before anything is written."""
    import hashlib
    import zipfile

    size = (128 << 20) + (1 << 20)  # the default per-member cap (128 MiB) + 1 MiB
    chunk = b"\0" * (1 << 20)
    digest = hashlib.sha256()
    for _ in range(size // len(chunk)):
        digest.update(chunk)
    root = _bundle(tmp_path)
    _reseal(root, json.loads((root / "manifest.json").read_text())["files"]
            | {"big.bin": digest.hexdigest()})
    archive = pack_bundle(root, tmp_path / "bomb.zip")
    with zipfile.ZipFile(archive, "a", zipfile.ZIP_DEFLATED) as zf:
        bomb = zf.open("big.bin", "w", force_zip64=True)
        for _ in range(size // len(chunk)):
            bomb.write(chunk)
        bomb.close()
    assert archive.stat().st_size < 1 << 20
    with pytest.raises(BundleError, match=r"big\.bin.*larger than"):
        Bundle.load(archive)
    assert _leftovers(private_tmp) == []
    import edge_runtime.bundle as bundle_module

    assert bundle_module.MAX_MEMBER_BYTES == 128 << 20


def test_zip_total_size_cap(tmp_path, private_tmp, monkeypatch):
    import edge_runtime.bundle as bundle_module

    monkeypatch.setattr(bundle_module, "MAX_BUNDLE_BYTES", 3000)
    files = {"a.bin": "x" * 2000, "b.bin": "y" * 2000}
    root = sealed_bundle(tmp_path / "b", extra_files=files)
    with pytest.raises(BundleError, match="more than 3000 bytes"):
        Bundle.load(pack_bundle(root, tmp_path / "b.zip"))
    assert _leftovers(private_tmp) == []


@pytest.mark.parametrize("name", ["extra.bin", "reports/extra.json", "model.tflite.bak"])
def test_zip_member_not_in_the_manifest_is_refused(tmp_path, private_tmp, name):
    root = _bundle(tmp_path)
    members = {p.name: p.read_bytes() for p in root.iterdir()} | {name: b"payload"}
    with pytest.raises(BundleError, match=re.escape(repr(name)) + ".*not listed"):
        Bundle.load(_zip(tmp_path / "extra.zip", members))
    assert _leftovers(private_tmp) == []


def test_zip_symlink_member_is_refused(tmp_path, private_tmp):
    import stat
    import zipfile

    root = _bundle(tmp_path)
    archive = pack_bundle(root, tmp_path / "link.zip")
    info = zipfile.ZipInfo("parity.json")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(tmp_path / "link2.zip", "w") as zf:
        with zipfile.ZipFile(archive) as src:
            for item in src.infolist():
                if item.filename != "parity.json":
                    zf.writestr(item, src.read(item))
        zf.writestr(info, "/etc/hostname")
    with pytest.raises(BundleError, match=r"parity\.json.*symbolic link"):
        Bundle.load(tmp_path / "link2.zip")
    assert _leftovers(private_tmp) == []


def test_zip_loads_leave_no_folder_once_released(tmp_path, private_tmp):
    root = _bundle(tmp_path)
    archive = pack_bundle(root, tmp_path / "b.zip")
    for _ in range(5):
        bundle = Bundle.load(archive)
        assert len(_leftovers(private_tmp)) == 1 and bundle.root.is_dir()
        bundle.release()
        bundle.release()  # idempotent
    assert _leftovers(private_tmp) == []
    with (root / "model.tflite").open("ab") as f:
        f.write(b"\0")
    tampered = pack_bundle(root, tmp_path / "tampered.zip")
    for _ in range(5):
        with pytest.raises(BundleError, match="SHA-256 does not match"):
            Bundle.load(tampered)
    assert _leftovers(private_tmp) == []
    directory = Bundle.load(_bundle(tmp_path / "d"))
    directory.release()  # a directory bundle is never removed
    assert (directory.root / "manifest.json").is_file()


@pytest.mark.parametrize("entry", ["ABSOLUTE", "../secret.txt", "sub/../../secret.txt",
                                   "..\\secret.txt", "link.txt"])
def test_manifest_path_outside_the_bundle_is_refused_unhashed(tmp_path, monkeypatch, entry):
    """A ``files`` entry naming a file outside the bundle (with its true hash: the old code
    accepted the bundle) is refused naming the entry; the file is never hashed, and the
    message is the same whether its hash matched or not."""
    import edge_runtime.bundle as bundle_module
    from edge_runtime.bundle import sha256_file

    secret = tmp_path / "secret.txt"
    secret.write_text("gateway secret\n")
    entry = str(secret) if entry == "ABSOLUTE" else entry
    root = _bundle(tmp_path)
    if entry == "link.txt":
        (root / "link.txt").symlink_to(secret)
    listed = json.loads((root / "manifest.json").read_text())["files"]
    hashed: list[Path] = []
    monkeypatch.setattr(bundle_module, "sha256_file",
                        lambda p: hashed.append(Path(p).resolve()) or sha256_file(p))
    messages = []
    for digest in (sha256_file(secret), "0" * 64):
        _reseal(root, listed | {entry: digest})
        with pytest.raises(BundleError, match="outside the bundle") as refused:
            Bundle.load(root)
        messages.append(str(refused.value))
    assert entry in messages[0] or repr(entry) in messages[0]
    assert messages[0] == messages[1]  # says nothing about the outside file
    assert secret.resolve() not in hashed
