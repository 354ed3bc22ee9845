"""Config errors for people: the file, the field, what is wrong, and a suggestion when one is
obvious ("did you mean 'timestamp_column'?"). Shared by the gateway's and the training config."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError


class ConfigError(ValueError):
    """A config (or command-line argument) that cannot work: the CLI exits 2 on it."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def read_yaml(path: Path, what: str) -> dict:
    """The mapping in a YAML file; a missing file or a syntax error names the file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the {what} must be a mapping of keys, "
                          f"not a {type(raw).__name__}")
    return raw


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the (nested) model that ``loc`` points into."""
    current: object = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type)
                                         and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(part)
        if field is None:
            break
        current = _model_in(field.annotation)
    return list(current.model_fields) if isinstance(current, type) and issubclass(
        current, BaseModel) else []


def _model_in(annotation) -> object:
    """The pydantic model inside ``X``, ``X | None`` or ``list[X]``, else the annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return annotation


def field_path(loc: tuple) -> str:
    """``('models', 0, 'bundle')`` → ``models[0].bundle``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def explain(exc: ValidationError, model: type[BaseModel]) -> list[str]:
    """One line per error: ``field: message`` with a suggestion for an unknown key."""
    lines = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        where = field_path(loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            known = _fields_at(model, loc[:-1])
            lines.append(f"{where}: unknown key{did_you_mean(str(loc[-1]), known)}"
                         + (f" (known: {', '.join(known)})" if known else ""))
        else:
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {message}" if loc else message)
    return lines


def validate(model: type[BaseModel], raw: dict, path: Path, what: str):
    """``model.model_validate(raw)``, or a :class:`ConfigError` naming the file and fields."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        body = "\n".join(f"  {line}" for line in explain(exc, model))
        raise ConfigError(f"{path}: invalid {what}\n{body}") from exc
