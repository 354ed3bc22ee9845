"""Which worker process runs which model (``workers:`` and ``models[].process``).

A gateway with several cores runs its models in several worker processes (one GIL each). The
partition is decided here, once, from the config: ``workers: N`` names the workers ``w0`` …
``w<N-1>``; ``workers: [fast, slow]`` names them. A model with ``process: <name>`` runs in
that worker; the others are dealt round-robin over all workers in config order. Cameras run in
the first worker.

Each worker is a complete daemon with a config of its own (:func:`worker_config`): its models,
its MQTT client id, its outbox file and its gateway name (``<gateway>-<worker>``: its own
status, command and reply topics), so that nothing crosses a process per message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_runtime.config import EdgeConfig

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")  # one topic level, one client-id suffix


def check_workers(value: int | list[str]) -> int | list[str]:
    """``workers:`` is a count ≥ 1 or a list of distinct names (letters, digits, - and _)."""
    if isinstance(value, bool):
        raise ValueError("give a number of worker processes (≥ 1) or a list of their names")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"{value}: at least 1 worker process")
        return value
    if not value:
        raise ValueError("an empty list: name at least one worker process")
    bad = [n for n in value if not _NAME.match(n)]
    if bad:
        raise ValueError(f"worker names {bad}: letters, digits, '-' and '_' only (≤ 32)")
    if len(set(value)) != len(value):
        raise ValueError(f"worker names {value}: each name once")
    return value


def worker_names(config: EdgeConfig) -> list[str]:
    w = config.workers
    return [f"w{i}" for i in range(w)] if isinstance(w, int) else list(w)


def assign(config: EdgeConfig) -> dict[str, list[str]]:
    """Worker name → the names of the models it runs (explicit ``process`` first, the rest
    round-robin in config order)."""
    names = worker_names(config)
    groups: dict[str, list[str]] = {n: [] for n in names}
    dealt = 0
    for model in config.models:
        if model.process is not None:
            groups[model.process].append(model.name)
        else:
            groups[names[dealt % len(names)]].append(model.name)
            dealt += 1
    return groups


def check_partition(config: EdgeConfig) -> None:
    """The partition can run: every ``process`` names a worker, every worker has something to
    run, and nothing that is one per gateway (a Sparkplug node, an OPC UA session) is asked
    of several workers. The messages name the field."""
    names = worker_names(config)
    for i, model in enumerate(config.models):
        if model.process is not None and model.process not in names:
            raise ValueError(f"models[{i}].process: unknown worker {model.process!r} (workers: "
                             f"{', '.join(names)})")
    if len(names) == 1:
        return
    for field, value in (("sparkplug.input", config.sparkplug.input),
                         ("sparkplug.output", config.sparkplug.output),
                         ("opcua", config.opcua)):
        if value is not None:
            raise ValueError(f"{field}: not supported with several worker processes (one "
                             "session per gateway); run it with workers: 1")
    idle = [n for n, models in assign(config).items()
            if not models and not (config.cameras and n == names[0])]
    if idle:
        raise ValueError(f"workers: {', '.join(idle)} would run no model ({len(names)} "
                         f"workers, {len(config.models)} model(s)); fewer workers, or "
                         "`process:` on the models")


def worker_outbox(path: Path, name: str) -> Path:
    """The outbox file of worker ``name``, beside the configured one:
    ``outbox.sqlite`` → ``outbox-w0.sqlite``."""
    return path.with_name(f"{path.stem}-{name}{path.suffix}")


def worker_config(config: EdgeConfig, name: str) -> EdgeConfig:
    """The config worker ``name`` runs as a daemon of its own: its models (and the cameras,
    in the first worker), one worker, its own client id, outbox file and gateway name; no
    metrics port (the supervisor serves one endpoint for all)."""
    mine = set(assign(config)[name])
    first = worker_names(config)[0] == name
    models = [m.model_copy(update={"process": None}) for m in config.models if m.name in mine]
    mqtt = config.mqtt.model_copy(update={
        "client_id": f"{config.mqtt.client_id or 'procedge-' + config.gateway}-{name}"})
    outbox = config.outbox.model_copy(update={"path": worker_outbox(config.outbox.path, name)})
    return config.model_copy(update={
        "workers": 1, "models": models, "cameras": config.cameras if first else [],
        "gateway": f"{config.gateway}-{name}", "mqtt": mqtt, "outbox": outbox,
        "metrics_port": 0})
