"""Model families by name: training configs pick a builder with ``family: <name>``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Task = Literal["forecast", "anomaly"]


@dataclass(frozen=True)
class Family:
    name: str
    task: Task
    build: Callable[..., object]  # returns an (uncompiled) keras.Model
    offline_only: bool = False  # needs data a live window does not have (e.g. BiLSTM)
    doc: str = ""


_FAMILIES: dict[str, Family] = {}


def register(task: Task, name: str, offline_only: bool = False):
    """Decorator: ``@register("forecast", "tcn")`` on a builder function."""

    def wrap(builder: Callable[..., object]) -> Callable[..., object]:
        if name in _FAMILIES:
            raise ValueError(f"model family {name!r} registered twice")
        doc = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
        _FAMILIES[name] = Family(name, task, builder, offline_only, doc)
        return builder

    return wrap


def get_family(name: str, task: Task | None = None) -> Family:
    _load_builtin_families()
    if name not in _FAMILIES:
        raise KeyError(f"unknown model family {name!r}; known: {sorted(_FAMILIES)}")
    family = _FAMILIES[name]
    if task is not None and family.task != task:
        raise ValueError(f"model family {name!r} is a {family.task} model, not {task}")
    return family


def families(task: Task | None = None) -> list[Family]:
    _load_builtin_families()
    return [f for f in _FAMILIES.values() if task is None or f.task == task]


def _load_builtin_families() -> None:
    from training import autoencoders, forecasters  # noqa: F401  (registration side effect)
