"""Fuzzed inputs (hypothesis) through the daemon's real handling path, real LiteRT models.

Every message is either used or rejected with a counted reason; no crash; no bad value ever
reaches a window buffer; out-of-order and duplicate timestamps never build a bad window.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.config import EdgeConfig
from edge_runtime.daemon import EdgeDaemon, Inbound
from edge_runtime.payloads import PayloadError, iso_ms, parse_samples
from tests.daemon_support import edge_config
from training.simulator import TAGS as SIM_TAGS

TAGS = [name for name, _ in SIM_TAGS]
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def daemon(bundles, tmp_path_factory) -> EdgeDaemon:
    workdir = tmp_path_factory.mktemp("fuzz")
    return EdgeDaemon(EdgeConfig.model_validate(edge_config(workdir, 1, bundles)))


def total(daemon: EdgeDaemon, name: str) -> float:
    return sum(s.value for m in daemon.metrics.registry.collect() for s in m.samples
               if s.name == name)


def buffers_clean(daemon: EdgeDaemon) -> bool:
    now = time.time()
    return all(math.isfinite(v) and 946_684_800 <= ts <= now + 86_400
               for p in daemon.pipelines.values() for samples in p.buffer._samples.values()
               for ts, v in samples)


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                    st.booleans(), st.none(), st.text(max_size=5))
stamps = st.one_of(st.floats(allow_nan=True), st.integers(min_value=-10**20, max_value=10**20),
                   st.text(max_size=30), st.none(),
                   st.datetimes().map(lambda d: d.isoformat()),
                   st.floats(0, 4e9).map(lambda s: iso_ms(s)))
sample = st.fixed_dictionaries({"v": numbers, "ts": stamps})
json_values = st.recursive(st.one_of(numbers, st.text(max_size=10)),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(
                               st.text(max_size=4), c, max_size=4), max_leaves=10)
payloads = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda x: json.dumps(x).encode()),
    sample.map(lambda x: json.dumps(x).encode()),
    st.lists(sample, max_size=5).map(lambda x: json.dumps(x).encode()),
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b'{"v": NaN}', b"1e999", b"[" * 5000,
                     b'{"v": 1, "ts": "2026-01-01T00:00:00"}', b"\xff\xfe", b"",
                     b"[]", b"1" * 5000, b"[" + b'{"v":1,"ts":1.7e12},' * 60000 + b"{}]"]),
)
topics = st.one_of(st.sampled_from([f"procedge/test/area/tank/raw/{t}" for t in TAGS]),
                   st.text(max_size=30), st.sampled_from(["edge/gwtest/cmd/alarm/ack",
                                                          "edge/gwtest/cmd/model/load",
                                                          "edge/gwtest/cmd/zzz"]))


@FUZZ
@given(topic=topics, payload=payloads)
def test_every_message_is_used_or_counted(daemon: EdgeDaemon, topic: str, payload: bytes):
    now = time.time()
    seen = total(daemon, "procedge_messages_total")
    rejected = total(daemon, "procedge_messages_rejected_total")
    windows = sum(p.windows_built for p in daemon.pipelines.values())
    replies = daemon.metrics.value("procedge_published_total", kind="inference")
    daemon._process([Inbound(topic, payload, now)])  # raises nothing, whatever the input
    assert total(daemon, "procedge_messages_total") == seen + 1
    assert buffers_clean(daemon)
    if topic.startswith("edge/gwtest/cmd/"):
        return  # commands: answered (refused) on the reply topic, checked in test_commands
    try:
        valid = topic in daemon.routes and bool(parse_samples(payload, now))
    except PayloadError:
        valid = False
    if not valid:
        assert total(daemon, "procedge_messages_rejected_total") == rejected + 1
        assert sum(p.windows_built for p in daemon.pipelines.values()) == windows
        assert daemon.metrics.value("procedge_published_total", kind="inference") == replies


@settings(FUZZ, max_examples=40)
@given(order=st.permutations(list(range(40))), dups=st.lists(st.integers(0, 39), max_size=10))
def test_out_of_order_and_duplicate_timestamps(bundles, tmp_path_factory, order, dups):
    d = EdgeDaemon(EdgeConfig.model_validate(edge_config(tmp_path_factory.mktemp("ooo"), 1,
                                                         bundles)))
    start = time.time() - 3600
    start -= start % 5
    steps = [*order[:20], *sorted(order[20:]), *dups]  # a scrambled stretch, then in order
    for k in steps:
        items = [Inbound(f"procedge/test/area/tank/raw/{t}",
                         json.dumps({"v": 20.0 + (k % 7), "ts": iso_ms(start + 5 * k)}).encode(),
                         time.time()) for t in TAGS]
        d._process(items)
    assert buffers_clean(d)
    messages = total(d, "procedge_messages_total")
    assert messages == 5 * len(steps)
    late = sum(p.buffer.late_samples for p in d.pipelines.values())
    assert d.metrics.value("procedge_messages_rejected_total", reason="late") == late
    rows = d.outbox.peek(0, 10**6)
    stamps = [json.loads(m.payload)["ts"] for m in rows if "inference/tank_anomaly" in m.topic]
    assert stamps == sorted(set(stamps))  # one result per grid point, in time order
    assert all(math.isfinite(json.loads(m.payload)["score"]) for m in rows
               if "inference/tank_anomaly" in m.topic)
    d.outbox.close()


def test_huge_batch_rejected_and_good_batch_used(daemon: EdgeDaemon, tmp_path: Path):
    now = time.time()
    before = daemon.metrics.value("procedge_messages_rejected_total", reason="too_large")
    huge = json.dumps([{"v": 1.0, "ts": iso_ms(now)}] * 40000).encode()
    daemon._process([Inbound("procedge/test/area/tank/raw/level", huge, now)])
    assert daemon.metrics.value("procedge_messages_rejected_total",
                                reason="too_large") == before + 1
    batch = json.dumps([{"v": 1.0 + k, "ts": iso_ms(now - 100 + k)} for k in range(10)])
    assert len(parse_samples(batch.encode(), now)) == 10
    mixed = json.dumps([{"v": 1.0, "ts": iso_ms(now)}, {"v": "x", "ts": iso_ms(now)}])
    with pytest.raises(PayloadError):
        parse_samples(mixed.encode(), now)  # all or nothing
