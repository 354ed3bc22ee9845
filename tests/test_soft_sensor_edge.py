"""A soft sensor at the edge, end to end over a real Mosquitto with a real tiny bundle: an
estimate every period; a lab value on ``<uns>/lab/<target>`` gives the residual of the window
its dead time points at and moves the bias of later estimates; lab values for an unknown tag,
stamped in the future, stale, unmatched or malformed are counted and skipped."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
import pytest

from converters.build import build_auto
from edge_runtime.config import (
    EdgeConfig,
    ModelConfig,
    MqttConfig,
    OutboxConfig,
    SoftSensorEdgeConfig,
    TopicConfig,
)
from edge_runtime.daemon import EdgeDaemon
from edge_runtime.payloads import iso_ms, parse_timestamp
from tests.daemon_support import Collector, wait_for
from tests.helpers import tiny_soft_sensor
from training.simulator import simulate

UNS = "t/s/a/soft"
ALPHA = 0.5


@pytest.fixture(scope="module")
def soft_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("soft")
    run_dir = tiny_soft_sensor("cnn1d", out / "runs")
    bundle, _ = build_auto(run_dir, out / "bundles", ("int8", "fp32"))
    return bundle.root


def publish_rows(client: mqtt.Client, run, rows: range) -> None:
    for i in rows:
        for tag, value in zip(run.tag_names, run.values[i], strict=True):
            body = {"v": round(float(value), 6), "ts": iso_ms(float(run.timestamps[i]))}
            client.publish(f"{UNS}/raw/{tag}", json.dumps(body), qos=1).wait_for_publish(5)


def lab(client: mqtt.Client, tag: str, payload) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload)
    client.publish(f"{UNS}/lab/{tag}", body, qos=1).wait_for_publish(5)


def test_estimates_residuals_and_bias_over_mqtt(soft_bundle, broker, tmp_path):
    config = EdgeConfig(gateway="ss", mqtt=MqttConfig(port=broker.port),
                        topics=TopicConfig(uns=UNS),
                        outbox=OutboxConfig(path=tmp_path / "outbox.sqlite"),
                        models=[ModelConfig(name="ss", bundle=soft_bundle,
                                            soft_sensor=SoftSensorEdgeConfig(
                                                bias_update=True, bias_alpha=ALPHA))])
    daemon = EdgeDaemon(config)
    kinds = [type(s).__name__ for s in daemon.dispatch.sources]
    assert kinds.index("LabSource") == kinds.index("RawSource") - 1  # only with a soft sensor
    collector = Collector(broker.port, [f"{UNS}/inference/#"], client_id="ss-collector")
    daemon.start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    steps = 50
    start = time.time() - steps * 5.0 - 600
    run = simulate(steps, 5.0, seed=5, start_epoch_s=start - start % 5.0)
    rejected = lambda reason: daemon.metrics.value(  # noqa: E731
        "procedge_messages_rejected_total", reason=reason)

    def topic(name: str) -> list[dict]:
        with collector.lock:
            return [json.loads(p) for t, p in collector.messages if t == name]

    estimates = lambda: topic(f"{UNS}/inference/ss")  # noqa: E731
    residuals = lambda: topic(f"{UNS}/inference/ss/residual")  # noqa: E731
    try:
        assert daemon.subscribed.wait(10)
        publish_rows(pub, run, range(40))
        # window 8: an estimate for every grid step from the 8th row on (all tags reported)
        assert collector.wait(lambda: len(estimates()) >= 33, 30), collector.messages[-2:]
        first = estimates()
        stamps = [parse_timestamp(e["ts"]) for e in first]
        assert stamps == [float(run.timestamps[i]) for i in range(7, 40)]  # every period
        assert all(e["bias"] == 0.0 and e["estimate"] == e["raw_estimate"] for e in first)
        assert {e["target"] for e in first} == {"conversion"} and first[0]["unit"] == "%"
        # a lab value stamped 22 s after row 30: dead time 20 s → the window ending at row 30
        measured_at = float(run.timestamps[30])
        raw = next(e["raw_estimate"] for e in first if parse_timestamp(e["ts"]) == measured_at)
        measured = round(raw + 3.0, 3)
        lab(pub, "conversion", {"v": measured, "ts": iso_ms(measured_at + 22.0)})
        assert collector.wait(lambda: len(residuals()) == 1, 10)
        [res] = residuals()
        assert parse_timestamp(res["process_ts"]) == measured_at
        assert res["measured"] == measured and res["raw_estimate"] == raw
        assert res["residual"] == pytest.approx(raw - measured, abs=1e-5)  # estimate − lab
        assert res["bias"] == pytest.approx(ALPHA * (measured - raw), abs=1e-5)
        # later estimates carry the bias
        publish_rows(pub, run, range(40, 46))
        assert collector.wait(lambda: len(estimates()) >= 39, 20)
        later = estimates()[33:]
        assert all(e["bias"] == pytest.approx(res["bias"], abs=1e-5) for e in later)
        assert all(e["estimate"] == pytest.approx(e["raw_estimate"] + res["bias"], abs=1e-5)
                   for e in later)
        # skipped, each counted: unknown tag, future stamp, stale, unmatched, malformed
        lab(pub, "viscosity", {"v": 1.0, "ts": iso_ms(measured_at + 40.0)})
        lab(pub, "conversion", {"v": 1.0, "ts": iso_ms(time.time() + 3600.0)})
        lab(pub, "conversion", {"v": 1.0, "ts": iso_ms(measured_at + 22.0)})
        lab(pub, "conversion", {"v": 1.0, "ts": iso_ms(float(run.timestamps[45]) + 200.0)})
        lab(pub, "conversion", b"not json")
        for reason in ("lab_unknown_tag", "lab_future", "lab_stale", "lab_unmatched",
                       "not_json"):
            assert wait_for(lambda r=reason: rejected(r) == 1, 10), reason
        assert len(residuals()) == 1 and daemon.metrics.value(
            "procedge_lab_values_total", model="ss") == 1
        assert rejected("unknown_topic") == 0
    finally:
        pub.loop_stop()
        collector.close()
        daemon.stop()
    # a restart resumes with the bias (and the newest lab value used), committed with its batch
    again = EdgeDaemon(config)
    try:
        state = again.pipelines["ss"].task_state
        assert state.bias.bias == pytest.approx(res["bias"], abs=1e-5)
        assert state.last_lab_s == parse_timestamp(res["ts"])
    finally:
        again.outbox.close()


def test_sparkplug_catalogue_carries_estimates_and_residuals(soft_bundle):
    from edge_runtime.bundle import Bundle
    from edge_runtime.outbox import Message
    from edge_runtime.pipelines import ModelPipeline
    from edge_runtime.sparkplug.catalogue import Catalogue

    catalogue = Catalogue({"ss": ModelPipeline("ss", Bundle.load(soft_bundle))},
                          lambda kind, **f: f"x/{kind}/{f.get('model')}")
    assert {"ss/estimate", "ss/raw_estimate", "ss/bias", "ss/residual",
            "ss/lab_value"} <= set(catalogue.aliases)
    estimate = {"ts": "2026-01-01T00:00:00.000Z", "estimate": 51.5, "raw_estimate": 51.0,
                "bias": 0.5, "version": "v"}
    residual = {"ts": "2026-01-01T00:05:00.000Z", "residual": -0.4, "measured": 51.9,
                "bias": 0.7}
    rows = catalogue.metrics_of([Message("x/inference/ss", json.dumps(estimate).encode(), 1),
                                 Message("x/residual/ss", json.dumps(residual).encode(), 1)])
    assert dict(rows[0][1]) == {"ss/version": "v", "ss/estimate": 51.5,
                                "ss/raw_estimate": 51.0, "ss/bias": 0.5}
    assert rows[1] == (1767225900000, [["ss/residual", -0.4], ["ss/lab_value", 51.9],
                                       ["ss/bias", 0.7]])
