"""A gateway has no TensorFlow, Keras or pandas: edge_runtime must import without them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import importlib, pkgutil, sys
BLOCKED = ("tensorflow", "keras", "tf_keras", "pandas", "sklearn", "training", "converters",
           "evaluation", "procedge")
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"gateway has no {name}")
sys.meta_path.insert(0, Block())
import edge_runtime
names = [m.name for m in pkgutil.walk_packages(edge_runtime.__path__, "edge_runtime.")]
for name in names:
    importlib.import_module(name)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not heavy, heavy
print(len(names))
"""


def test_every_edge_runtime_module_imports_without_workstation_packages():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 10  # every module was really imported
