"""Sensor payload parsing and strict configs: bad input gets a clear, specific error."""

from __future__ import annotations

import pytest

from edge_runtime.config import load_edge_config
from edge_runtime.payloads import PayloadError, iso_ms, parse_sample


def test_json_and_bare_number_are_accepted():
    assert parse_sample(b'{"v": 12.5, "ts": "2026-11-22T10:00:00.000Z"}', 0.0) == (
        1795341600.0, 12.5)
    assert parse_sample(b"3", 42.0) == (42.0, 3.0)
    assert parse_sample(b'{"v": 1, "ts": 1795341600000}', 0.0) == (1795341600.0, 1.0)


@pytest.mark.parametrize("payload,reason", [
    (b"{not json", "not_json"), (b'{"v": "hot"}', "not_a_number"), (b"true", "not_a_number"),
    (b'{"v": NaN}', "not_finite"), (b'{"v": Infinity}', "not_finite"),
    (b'{"v": 1, "ts": "yesterday"}', "bad_timestamp"),
    (b'{"v": 1, "ts": "2026-11-22T10:00:00"}', "timestamp_without_zone"),
    (b"\xff\xfe", "not_json"), (b"1" * 5000, "too_large"),
])
def test_bad_payloads_are_rejected_with_a_reason(payload, reason):
    with pytest.raises(PayloadError, match=reason):
        parse_sample(payload, 0.0)


def test_iso_ms_is_utc_with_milliseconds():
    assert iso_ms(1795341600.1234) == "2026-11-22T10:00:00.123Z"


def test_config_error_names_file_and_field(tmp_path):
    path = tmp_path / "edge.yaml"
    path.write_text("models: [{name: m, bundle: x}]\nmqtt: {hots: 127.0.0.1}\n")
    with pytest.raises(ValueError, match=r"(?s)edge\.yaml.*mqtt\.hots"):
        load_edge_config(path)


def test_config_resolves_bundle_paths_relative_to_the_file(tmp_path):
    path = tmp_path / "edge.yaml"
    path.write_text("models: [{name: m, bundle: bundles/m}]\n")
    assert load_edge_config(path).models[0].bundle == tmp_path / "bundles" / "m"
