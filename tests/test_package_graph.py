"""The packages form a DAG: edge_runtime ← training ← converters ← evaluation ← procedge
(bench/ and tests/ on top). Checked on the source, so a backward import anywhere — at module
level or inside a function — fails here, naming the file and line; and no module imports a
private (``_name``) from another package."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("edge_runtime", "training", "converters", "evaluation", "procedge")


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) of every import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name, []) for a in node.names)
    return found


def violations(root: Path = ROOT) -> list[str]:
    bad = []
    for rank, package in enumerate(LAYERS):
        for path in sorted((root / package).rglob("*.py")):
            for line, module, names in imports(path):
                top = module.split(".")[0]
                where = f"{path.relative_to(root)}:{line}"
                if top in LAYERS and LAYERS.index(top) > rank:
                    bad.append(f"{where}: {package} imports {module} (a layer above it)")
                if top in LAYERS and top != package:
                    private = [n for n in names if n.startswith("_")]
                    if private:
                        bad.append(f"{where}: imports private {private} from {module}")
    return bad


def test_packages_form_a_dag_without_private_crossings():
    assert violations() == []


def test_a_backward_import_is_caught(tmp_path):
    """The check itself can fail: a copy of the tree with one backward import added."""
    for package in LAYERS:
        (tmp_path / package).mkdir()
    (tmp_path / "edge_runtime" / "ok.py").write_text("import numpy\n")
    (tmp_path / "training" / "fine.py").write_text("from edge_runtime.bundle import Bundle\n")
    assert violations(tmp_path) == []
    (tmp_path / "edge_runtime" / "bad.py").write_text(
        "def f():\n    from converters.build import build\n")
    (tmp_path / "evaluation" / "sly.py").write_text("from training.train import _fit\n")
    found = violations(tmp_path)
    assert any("edge_runtime/bad.py:2: edge_runtime imports converters.build" in v
               for v in found), found
    assert any("imports private ['_fit']" in v for v in found), found
