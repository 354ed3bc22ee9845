"""JSON on the daemon's hot path: orjson, with the standard library's behaviour kept.

Every input sample is parsed and every result, alarm event and alarm state is encoded, so at
thousands of messages a second ``json`` was one of the largest costs of the worker (a forecast
payload took tens of µs to encode, a sample ~7 µs to parse; orjson ~1 µs each). What differs:

- :func:`loads`: what orjson refuses (``NaN``/``Infinity``, numbers beyond a double, UTF-16,
  lone surrogates, ...) goes to ``json.loads``, so such inputs are accepted or refused, and
  counted by reason, exactly as before. orjson reads an integer beyond 64 bits as a float;
  the daemon converts sample values and epoch milliseconds to float anyway.
- :func:`dumps` is compact (no spaces after ``,`` and ``:``) and writes a NaN or infinite
  float as ``null`` (``json.dumps`` wrote ``NaN``, which is not JSON); what orjson cannot
  encode (an integer beyond 64 bits) goes through ``json.dumps``.
"""

from __future__ import annotations

import json

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS  # int keys become strings, as json.dumps makes them


def loads(data: bytes | str) -> object:
    """Parse JSON; raises what ``json.loads`` raises for what it refuses."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def dumps(obj: object) -> bytes:
    """UTF-8 JSON bytes."""
    try:
        return orjson.dumps(obj, option=_OPTIONS)
    except TypeError:
        return json.dumps(obj).encode()
