"""Fuzzed inputs (hypothesis) through the daemon's real handling path, real LiteRT models.

Every message is either used or rejected with a counted reason; no crash; no bad value ever
reaches a window buffer; out-of-order and duplicate timestamps never build a bad window.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.config import EdgeConfig
from edge_runtime.daemon import EdgeDaemon, Inbound
from edge_runtime.inputs.raw import RawSource
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


# --- issue 17: parse errors of every kind counted by reason, logged once per topic a minute --


def _fresh(bundles, tmp_path: Path) -> EdgeDaemon:
    return EdgeDaemon(EdgeConfig.model_validate(edge_config(tmp_path, 1, bundles)))


def test_overlong_integers_are_counted_not_a_traceback_each(bundles, tmp_path: Path, caplog):
    """A 4 301-digit integer (Python refuses to convert it), a value or a timestamp too large
    for a float: each message counted under its reason; one log line for the topic, no
    traceback, nothing reaches a window."""
    d = _fresh(bundles, tmp_path)
    topic = "procedge/test/area/tank/raw/level"
    now = time.time()
    ms = int(now * 1000)
    kinds = {
        "malformed_number": f'[{{"v": {"7" * 4301}, "ts": {ms}}}]'.encode(),
        "not_finite": f'[{{"v": {10 ** 400}, "ts": {ms}}}]'.encode(),
        "bad_timestamp": f'[{{"v": 1.5, "ts": {10 ** 400}}}]'.encode(),
    }
    single = {"not_finite": f'{{"v": {10 ** 400}}}'.encode()}  # not a batch: same reasons
    before = {r: d.metrics.value("procedge_messages_rejected_total", reason=r)
              for r in [*kinds, "internal_error"]}
    with caplog.at_level(logging.INFO, logger="procedge.edge"):
        for _ in range(100):
            d._process([Inbound(topic, p, now) for p in [*kinds.values(), *single.values()]])
    assert d.metrics.value("procedge_messages_rejected_total", reason="internal_error") == \
        before["internal_error"]
    assert d.metrics.value("procedge_messages_rejected_total", reason="malformed_number") == \
        before["malformed_number"] + 100
    assert d.metrics.value("procedge_messages_rejected_total", reason="not_finite") == \
        before["not_finite"] + 200
    assert d.metrics.value("procedge_messages_rejected_total", reason="bad_timestamp") == \
        before["bad_timestamp"] + 100
    records = [r for r in caplog.records if r.name == "procedge.edge"]
    assert not [r for r in records if r.exc_info], "a traceback was logged"
    assert len([r for r in records if topic in r.getMessage()]) == 1
    assert sum(len(r.getMessage()) for r in records) < 2000  # no 4 301-digit payload logged
    assert buffers_clean(d) and sum(p.windows_built for p in d.pipelines.values()) == 0
    d.outbox.close()


def test_unexpected_errors_are_counted_and_logged_once_per_topic(bundles, tmp_path: Path,
                                                                 caplog, monkeypatch):
    """Any exception a message still raises is counted (``internal_error``), and its traceback
    logged at most once per topic per minute, not once per message."""
    d = _fresh(bundles, tmp_path)

    def broken(*_args, **_kwargs):
        raise RuntimeError("injected fault")

    monkeypatch.setattr(d.feed, "feed", broken)  # fault injection into the real daemon
    monkeypatch.setattr(d.feed, "feed_many", broken)  # (raw samples: a run at once)
    now = time.time()
    topics = [f"procedge/test/area/tank/raw/{t}" for t in TAGS[:2]]
    with caplog.at_level(logging.INFO, logger="procedge.edge"):
        for k in range(100):
            d._process([Inbound(t, json.dumps({"v": 1.0 + k, "ts": iso_ms(now)}).encode(), now)
                        for t in topics])
    assert d.metrics.value("procedge_messages_rejected_total", reason="internal_error") == 200
    assert total(d, "procedge_messages_total") == 200  # still committed, acknowledged
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == len(topics)
    assert {t for t in topics if any(t in r.getMessage() for r in tracebacks)} == set(topics)
    d.outbox.close()


def test_a_claim_that_raises_costs_only_its_messages(bundles, tmp_path: Path, monkeypatch):
    """Messages are grouped into runs by the source claiming their topic; a claim that raises
    (a bug) counts those messages as internal errors and the rest of the batch is used."""
    d = _fresh(bundles, tmp_path)
    raw = next(s for s in d.dispatch.sources if isinstance(s, RawSource))
    claims = raw.claims
    bad = f"procedge/test/area/tank/raw/{TAGS[0]}"
    monkeypatch.setattr(raw, "claims", lambda t: 1 / 0 if t == bad else claims(t))
    now = time.time()
    d._process([Inbound(f"procedge/test/area/tank/raw/{t}",
                        json.dumps({"v": 1.0, "ts": iso_ms(now)}).encode(), now)
                for t in TAGS[:3]])
    assert d.metrics.value("procedge_messages_rejected_total", reason="internal_error") == 1
    assert total(d, "procedge_messages_total") == 3  # committed, acknowledged
    assert len(d.pipelines["tank_anomaly"].buffer._samples[TAGS[1]]) == 1  # the others fed
    d.outbox.close()
