"""Logging, configured once per process (:func:`setup_logging`): text or one JSON object per
line, UTC timestamps with milliseconds, on stderr.

Audit lines (operator commands and model swaps) go to the ``procedge.edge.audit`` logger,
which logs at INFO whatever the level: a gateway run at WARNING still records who commanded
what, and which model version replaced which.
"""

from __future__ import annotations

import json
import logging
import sys

from edge_runtime.payloads import iso_ms

AUDIT = "procedge.edge.audit"  # under procedge.edge: its handlers and levels apply
audit = logging.getLogger(AUDIT)
# Libraries whose DEBUG lines describe their own internals (a PNG's chunks, h5py's type
# converters, matplotlib's font search): at DEBUG they would bury procedge's own lines.
CHATTY = ("PIL", "h5py", "matplotlib")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line (``log_format: json``) for journald / log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        body = {"ts": iso_ms(record.created), "level": record.levelname,
                "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body)


class TextLogFormatter(logging.Formatter):
    """``2026-11-22T10:00:00.123Z WARNING procedge.edge: message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return iso_ms(record.created)


class _ProcedgeHandler(logging.StreamHandler):
    """The handler this module installs (a second call replaces it); writes to whatever
    ``sys.stderr`` is when a record is emitted."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(level: str | int = "WARNING", fmt: str = "text") -> None:
    """(Re)configure the root logger: one stderr handler in ``fmt`` (text or json) at
    ``level``; the audit logger at INFO at least; the :data:`CHATTY` libraries at INFO at
    least. Handlers others installed are left alone, the one a previous call installed is
    replaced."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _ProcedgeHandler)]:
        root.removeHandler(handler)
    handler = _ProcedgeHandler()
    handler.setFormatter(JsonLogFormatter() if fmt == "json" else TextLogFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    audit.setLevel(min(root.level, logging.INFO))
    for name in CHATTY:
        logging.getLogger(name).setLevel(max(root.level, logging.INFO))
