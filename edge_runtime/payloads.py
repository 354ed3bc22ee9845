"""Sensor payloads: ``{"v": 12.3, "ts": "2026-11-22T10:00:00.000Z"}`` or a bare number."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from functools import lru_cache

from edge_runtime import fastjson


class PayloadError(ValueError):
    """A payload that cannot be used; the message says why (counted by reason)."""


def parse_sample(payload: bytes, received_s: float) -> tuple[float, float]:
    """Return ``(timestamp_s, value)``; without a ``ts`` the receive time is used."""
    if len(payload) > 4096:
        raise PayloadError("too_large")
    return _sample(loads(payload), received_s)


def loads(payload: bytes) -> object:
    """JSON, or a :class:`PayloadError`: ``not_json``, or ``malformed_number`` for an integer
    longer than Python converts (4 300 digits: ``int()`` raises a plain ``ValueError``)."""
    try:
        return fastjson.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PayloadError("not_json") from exc
    except ValueError as exc:
        raise PayloadError("malformed_number") from exc


def _sample(data: object, received_s: float) -> tuple[float, float]:
    if isinstance(data, dict):
        value, ts = data.get("v"), data.get("ts")
        ts_s = received_s if ts is None else parse_timestamp(ts)
    else:
        value, ts_s = data, received_s
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError("not_a_number")
    try:  # an int beyond a float's range (10**400) overflows
        value = float(value)
    except OverflowError as exc:
        raise PayloadError("not_finite") from exc
    if not math.isfinite(value):
        raise PayloadError("not_finite")
    return ts_s, value


MAX_BATCH_BYTES = 1 << 20
MAX_FUTURE_S = 86_400.0  # a source timestamp more than a day ahead is a broken clock
MIN_EPOCH_S = 946_684_800.0  # 2000-01-01: older ones are not plant data


def parse_samples(payload: bytes, received_s: float) -> list[tuple[float, float]]:
    """One sample (as :func:`parse_sample`) or a JSON list of ``{"v", "ts"}`` objects.

    A batch is all-or-nothing: one bad element rejects it, so no window mixes in bad data.
    Timestamps outside [2000, receive time + 1 day] are refused: one wild clock would
    otherwise push the window grid where no real sample can follow.
    """
    if payload[:1] == b"[" or payload.lstrip()[:1] == b"[":
        if len(payload) > MAX_BATCH_BYTES:
            raise PayloadError("too_large")
        items = loads(payload)
        if not isinstance(items, list) or not items:
            raise PayloadError("empty_batch")
        if not all(isinstance(i, dict) and "ts" in i for i in items):
            raise PayloadError("batch_item_without_ts")
        samples = [_sample(i, received_s) for i in items]
    else:
        samples = [parse_sample(payload, received_s)]
    for ts, _ in samples:
        if not MIN_EPOCH_S <= ts <= received_s + MAX_FUTURE_S:
            raise PayloadError("timestamp_out_of_range")
    return samples


def parse_timestamp(ts: object) -> float:
    """ISO 8601 with a zone (``Z`` or offset), or epoch milliseconds (Sparkplug style)."""
    if isinstance(ts, bool):
        raise PayloadError("bad_timestamp")
    if isinstance(ts, int | float):
        try:  # an int beyond a float's range (10**400) overflows
            ms = float(ts)
        except OverflowError as exc:
            raise PayloadError("bad_timestamp") from exc
        if not math.isfinite(ms):
            raise PayloadError("bad_timestamp")
        return ms / 1000.0
    if not isinstance(ts, str):
        raise PayloadError("bad_timestamp")
    return _iso_s(ts)


@lru_cache(maxsize=1024)
def _iso_s(ts: str) -> float:
    """An ISO timestamp in seconds, remembered: the tags of one grid step (and the results
    of several models for it) carry the same string, parsed once instead of once each
    (errors are raised again every time, never cached)."""
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError as exc:
        raise PayloadError("bad_timestamp") from exc
    if moment.tzinfo is None:
        raise PayloadError("timestamp_without_zone")
    try:
        return moment.timestamp()
    except (OverflowError, ValueError) as exc:
        raise PayloadError("bad_timestamp") from exc


@lru_cache(maxsize=1024)
def iso_ms(epoch_s: float) -> str:
    """UTC, ISO 8601, milliseconds, ``Z`` (remembered: every model's result for one grid
    step formats the same time)."""
    moment = datetime.fromtimestamp(epoch_s, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
