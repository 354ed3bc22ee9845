"""The one result format of every ``procedge eval … --json``::

    {"results": [{"model": …, "variant": …, "mode": …, <metrics>…}, …],
     "settings": {<what the run was asked to do and how it went>…}}

``variant`` says what computed the row (``keras``, ``edge``, ``numpy``, ``pca``), ``mode`` its
numbers (``float32``, ``int8``, …). Rows hold metrics flat; everything about the run (data,
protocol, epochs and truncation of each trained model) goes in ``settings``. The writer checks
the document against :class:`Results` before writing it, so no benchmark can drift from it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from edge_runtime.contract import Strict


class ResultRow(BaseModel):
    """One row: who, how, and its metrics as further keys."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(description="Model or detector name (e.g. 'linear', 'pca_t2_spe').")
    variant: str = Field(description="What computed it: keras, edge, numpy, …")
    mode: str = Field(description="Its numbers: float32, int8, …")


class Results(Strict):
    results: list[ResultRow]
    settings: dict[str, Any]


def check(document: Any) -> Results:
    """Validate a result document (raises ``pydantic.ValidationError`` naming the field)."""
    return Results.model_validate(document)


def write_results(path: Path | None, rows: list[dict], settings: dict) -> dict:
    """Check and (if ``path``) write ``{"results": rows, "settings": settings}``; returns it."""
    document = {"results": rows, "settings": settings}
    check(document)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return document
