"""Model families by task and name: training configs pick a builder with ``family: <name>``.

Each family is registered for one task of :data:`edge_runtime.contract.TASKS` with its
``small`` keyword arguments: a model that trains in seconds, which the shared contract test
(``tests/test_family_contract.py``) and each task's end-to-end tests build for every family.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.contract import TaskName, task_spec
from training.channels import with_channels
from training.instance_norm import with_instance_norm


@dataclass(frozen=True)
class Family:
    name: str
    task: TaskName
    build: Callable[..., object]  # returns an (uncompiled) keras.Model
    offline_only: bool = False  # needs data a live window does not have (e.g. BiLSTM)
    doc: str = ""
    small: dict[str, Any] = field(default_factory=dict)  # tiny, fast: for tests


_FAMILIES: dict[tuple[str, str], Family] = {}  # (task, name) → family
# The modules that register the built-in families (import side effect).
BUILTIN_MODULES = ("training.forecasters", "training.autoencoders", "training.images.models",
                   "training.soft_sensors", "training.control.networks",
                   "training.tft", "training.informer", "training.generative",
                   "training.images.particle_models",
                   "training.transformer_ae", "training.images.generators",
                   "training.images.backbones")


def register(task: TaskName, name: str, offline_only: bool = False,
             small: dict[str, Any] | None = None):
    """Decorator: ``@register("forecast", "tcn", small={"filters": 8})`` on a builder."""
    task_spec(task)  # an unknown task is an error at import, naming the known ones

    def wrap(builder: Callable[..., object]) -> Callable[..., object]:
        if (task, name) in _FAMILIES:
            raise ValueError(f"model family {name!r} registered twice for task {task!r}")
        doc = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
        # forecasters: model.norm, then model.channels around it
        build = (with_channels(with_instance_norm(builder, name)) if task == "forecast"
                 else builder)
        _FAMILIES[task, name] = Family(name, task, build, offline_only, doc,
                                       dict(small or {}))
        return builder

    return wrap


def get_family(name: str, task: TaskName | None = None) -> Family:
    """The family ``name`` of ``task``. A name may serve several tasks (``lstm`` forecasts and
    estimates soft sensors): without ``task`` it must be unambiguous."""
    _load_builtin_families()
    tasks = sorted(t for t, n in _FAMILIES if n == name)
    if not tasks:
        raise KeyError(f"unknown model family {name!r}; known: "
                       f"{sorted({n for _, n in _FAMILIES})}")
    if task is None:
        if len(tasks) > 1:
            raise KeyError(f"model family {name!r} exists for tasks {tasks}: name the task")
        task = tasks[0]
    if (task, name) not in _FAMILIES:
        raise ValueError(f"model family {name!r} is a {' and '.join(tasks)} model, not {task}")
    return _FAMILIES[task, name]


def declared_families() -> dict[str, set[str]]:
    """Family name → the tasks it serves, without importing Keras: the ``@register(task,
    name)`` decorators read from the built-in modules' source, plus any family registered
    already. Lets a config be checked (``family``) in a fraction of a second, before
    TensorFlow loads."""
    found: dict[str, set[str]] = {}
    for task, name in _FAMILIES:
        found.setdefault(name, set()).add(task)
    for module in BUILTIN_MODULES:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            continue
        tree = ast.parse(Path(spec.origin).read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "register"
                    and len(node.args) >= 2
                    and all(isinstance(a, ast.Constant) for a in node.args[:2])):
                found.setdefault(node.args[1].value, set()).add(node.args[0].value)
    return found


def families(task: TaskName | None = None) -> list[Family]:
    _load_builtin_families()
    return [f for f in _FAMILIES.values() if task is None or f.task == task]


def _load_builtin_families() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
