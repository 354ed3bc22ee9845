"""Sensor payloads: ``{"v": 12.3, "ts": "2026-11-22T10:00:00.000Z"}`` or a bare number."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime


class PayloadError(ValueError):
    """A payload that cannot be used; the message says why (counted by reason)."""


def parse_sample(payload: bytes, received_s: float) -> tuple[float, float]:
    """Return ``(timestamp_s, value)``; without a ``ts`` the receive time is used."""
    if len(payload) > 4096:
        raise PayloadError("too_large")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError("not_json") from exc
    if isinstance(data, dict):
        value, ts = data.get("v"), data.get("ts")
        ts_s = received_s if ts is None else parse_timestamp(ts)
    else:
        value, ts_s = data, received_s
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError("not_a_number")
    if not math.isfinite(value):
        raise PayloadError("not_finite")
    return ts_s, float(value)


def parse_timestamp(ts: object) -> float:
    """ISO 8601 with a zone (``Z`` or offset), or epoch milliseconds (Sparkplug style)."""
    if isinstance(ts, bool):
        raise PayloadError("bad_timestamp")
    if isinstance(ts, int | float):
        if not math.isfinite(ts):
            raise PayloadError("bad_timestamp")
        return float(ts) / 1000.0
    if not isinstance(ts, str):
        raise PayloadError("bad_timestamp")
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError as exc:
        raise PayloadError("bad_timestamp") from exc
    if moment.tzinfo is None:
        raise PayloadError("timestamp_without_zone")
    return moment.timestamp()


def iso_ms(epoch_s: float) -> str:
    """UTC, ISO 8601, milliseconds, ``Z``."""
    moment = datetime.fromtimestamp(epoch_s, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
