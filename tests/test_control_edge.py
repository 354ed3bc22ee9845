"""Task control at the edge with a real tiny policy bundle (a ``ppo`` network, converted behind
the parity gate), through the daemon's worker without a broker: advice every period built from
the tag values as the environment builds the observation, the shield's verdicts (guard with
its alarm, rate limit), the watchdog's timer when nothing arrives, advisory mode never writing,
and a closed-loop write that fails (no connection) counted, alarmed, held — nothing crashes."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from edge_runtime.bundle import ControlSpec, OutputSpec, RunRecord
from edge_runtime.config import EdgeConfig
from edge_runtime.daemon import EdgeDaemon, Inbound
from edge_runtime.interpreter import EdgeModel
from edge_runtime.payloads import iso_ms
from tests.daemon_support import UNS

PERIOD = 60.0
SPEC = {
    "observation": [{"name": "T", "unit": "K", "center": 348.0, "scale": 50.0},
                    {"name": "batch_time", "unit": "h", "center": 0.5, "scale": 0.5}],
    "action": {"name": "T_sp", "unit": "K", "low": 298.0, "high": 398.0, "max_rate": 10.0},
    "shield": {"low": 300.0, "high": 395.0, "guard": {"tag": "T", "trip": 390.0, "reset": 380.0},
               "watchdog": {"stale_periods": 2, "on_stale": "hold"}},
    "pid": {"kp": 1.0, "ti_s": 600.0, "setpoint": 360.0},
    "period_s": PERIOD,
}


def tiny_policy_run(run_dir):
    """A run directory as training/tasks/control.py writes it, with an untrained ``ppo``
    network (the edge tests test the plumbing, not the policy)."""
    import keras

    from training.calibration import save_representative
    from training.registry import get_family

    run_dir.mkdir(parents=True)
    keras.utils.set_random_seed(0)
    model = get_family("ppo", "control").build(2, 1, hidden=[8], seed=0)
    model.save(run_dir / "model.keras")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.2, 1.2, (256, 2)).astype(np.float32)
    np.savez_compressed(run_dir / "heldout.npz", x=x, y=model.predict(x, verbose=0))
    save_representative(run_dir, x, 0)
    spec = ControlSpec.model_validate(SPEC)
    RunRecord(name="reactor_policy", task="control", family="ppo", input=spec.input_spec(),
              scaler=spec.scaler_spec(), output=OutputSpec(), control=spec,
              metrics={"keras": {"yield_mean": 0.5}}, training_data_sha256="0" * 64
              ).save(run_dir)
    return run_dir


@pytest.fixture(scope="module")
def policy_bundle(tmp_path_factory):
    from converters.build import build_auto

    out = tmp_path_factory.mktemp("ctl")
    bundle, lines = build_auto(tiny_policy_run(out / "run"), out / "bundles", ("int8", "fp32"))
    assert lines[0].startswith("int8: passed"), lines  # within 1 % of the action range
    assert bundle.manifest.metrics["edge"]["action_error"] <= 0.01
    return bundle.root


def daemon_for(bundle, tmp_path, **control) -> EdgeDaemon:
    return EdgeDaemon(EdgeConfig.model_validate({
        "gateway": "gwc", "topics": {"uns": UNS},
        "outbox": {"path": str(tmp_path / "outbox.sqlite"), "synchronous": "NORMAL"},
        "models": [{"name": "ctl", "bundle": str(bundle), "control": control}]}))


def feed(daemon: EdgeDaemon, t: float, values: dict[str, float]) -> None:
    daemon._process([Inbound(daemon._topic("raw", tag=tag), json.dumps(
        {"v": v, "ts": iso_ms(t)}).encode(), time.time()) for tag, v in values.items()])


def published(daemon: EdgeDaemon, fragment: str) -> list[dict]:
    return [json.loads(m.payload) for m in daemon.outbox.peek(0, 10**6)
            if fragment in m.topic and not m.topic.endswith("/state")]


def keras_setpoint(bundle, T: float, hours: float) -> float:
    obs = np.array([[(T - 348.0) / 50.0, (hours - 0.5) / 0.5]], np.float32)
    action = float(np.clip(EdgeModel(bundle / "model.tflite").predict(obs)[0][0, 0], -1, 1))
    return 298.0 + (action + 1) / 2 * 100.0


def test_advice_every_period_with_the_shield_and_the_guard_alarm(policy_bundle, tmp_path):
    daemon = daemon_for(policy_bundle, tmp_path)
    t0 = time.time() - 3600
    t0 -= t0 % PERIOD
    try:
        for k, T in enumerate([340.0, 345.0, 392.0, 385.0, 375.0]):
            feed(daemon, t0 + k * PERIOD, {"T": T, "batch_time": k / 60})
        advice = published(daemon, "/advice/ctl")
        assert len(advice) == 5 and advice[0]["ts"] == iso_ms(t0)
        first = advice[0]
        # the observation is (value - center) / scale, the action the policy's, in K
        assert first["raw_setpoint"] == pytest.approx(keras_setpoint(policy_bundle, 340.0, 0),
                                                      abs=1e-4)
        assert first["verdict"] in ("pass", "clamped") and first["source"] == "agent"
        assert first["mode"] == "advisory" and first["written"] is False
        assert [a["verdict"] for a in advice[2:4]] == ["guard", "guard"]  # 392 > 390, 385 > 380
        assert advice[2]["source"] == "pid" and advice[2]["guard_active"]
        assert abs(advice[2]["setpoint"] - advice[1]["setpoint"]) <= 10.0  # bumpless, ≤ rate
        assert advice[4]["source"] == "agent" and not advice[4]["guard_active"]  # 375 < 380
        events = [(e["alarm_id"], e["event"]) for e in published(daemon, "/alarm/")]
        assert events == [("ctl.guard", "raise"), ("ctl.guard", "clear")]
        assert daemon.metrics.value("procedge_shield_interventions_total", model="ctl",
                                    reason="guard") == 2
        assert published(daemon, "write") == []  # advisory: nothing is ever written
        assert daemon.metrics.value("procedge_control_writes_total") == 0
    finally:
        daemon.outbox.close()


def test_watchdog_fires_on_the_timer_when_nothing_arrives(policy_bundle, tmp_path):
    daemon = daemon_for(policy_bundle, tmp_path, speed=600.0)  # a period: 0.1 s of wall time
    t0 = time.time() - 3600
    t0 -= t0 % PERIOD
    try:
        feed(daemon, t0, {"T": 340.0, "batch_time": 0.0})
        held = published(daemon, "/advice/ctl")[0]["setpoint"]
        time.sleep(0.6)  # about 5 periods, no sample at all
        daemon._process([])
        advice = published(daemon, "/advice/ctl")
        stale = advice[1:]
        assert len(stale) >= 3 and {a["verdict"] for a in stale} == {"watchdog"}
        assert all(a["setpoint"] == held and a["source"] == "hold" for a in stale)
        assert [a["ts"] for a in stale[:3]] == [iso_ms(t0 + k * PERIOD) for k in (1, 2, 3)]
        assert stale[2]["watchdog_active"] and not stale[1]["watchdog_active"]
        events = [(e["alarm_id"], e["event"]) for e in published(daemon, "/alarm/")]
        assert events == [("ctl.watchdog", "raise")]
        assert daemon.metrics.value("procedge_shield_interventions_total", model="ctl",
                                    reason="watchdog") == len(stale)
        # the late samples of a period already declared stale change nothing; a new one clears
        n = len(advice)
        feed(daemon, t0 + (n + 1) * PERIOD, {"T": 341.0, "batch_time": 0.1})
        last = published(daemon, "/advice/ctl")[-1]
        assert last["verdict"] != "watchdog" and not last["watchdog_active"]
        assert ("ctl.watchdog", "clear") in [(e["alarm_id"], e["event"])
                                             for e in published(daemon, "/alarm/")]
    finally:
        daemon.outbox.close()


def test_a_stale_tag_is_a_stale_period(policy_bundle, tmp_path):
    daemon = daemon_for(policy_bundle, tmp_path)
    t0 = time.time() - 3600
    t0 -= t0 % PERIOD
    try:
        feed(daemon, t0, {"T": 340.0, "batch_time": 0.0})
        feed(daemon, t0 + PERIOD, {"T": float("nan"), "batch_time": 1 / 60})  # NaN: refused
        feed(daemon, t0 + 2 * PERIOD, {"T": 341.0, "batch_time": 2 / 60})
        advice = published(daemon, "/advice/ctl")
        assert [a["verdict"] == "watchdog" for a in advice] == [False, True, False]
        assert advice[1]["raw_action"] is None and advice[1]["setpoint"] == advice[0]["setpoint"]
    finally:
        daemon.outbox.close()


def test_closed_loop_write_failure_is_counted_alarmed_and_held(policy_bundle, tmp_path):
    with pytest.raises(ValueError, match="write_topic"):
        daemon_for(policy_bundle, tmp_path, mode="closed_loop")
    daemon = daemon_for(policy_bundle, tmp_path, mode="closed_loop", write_topic="plant/T_sp")
    t0 = time.time() - 3600
    t0 -= t0 % PERIOD
    try:  # never connected: every write fails
        feed(daemon, t0, {"T": 340.0, "batch_time": 0.0})
        feed(daemon, t0 + PERIOD, {"T": 340.0, "batch_time": 1 / 60})
        advice = published(daemon, "/advice/ctl")
        assert len(advice) == 2 and all(a["written"] and a["mode"] == "closed_loop"
                                        for a in advice)
        assert daemon.metrics.value("procedge_control_writes_total", model="ctl",
                                    result="failed") == 2
        assert daemon.metrics.value("procedge_shield_interventions_total", model="ctl",
                                    reason="write_failed") == 2
        events = [(e["alarm_id"], e["event"]) for e in published(daemon, "/alarm/")]
        assert events == [("ctl.write", "raise")]  # raised once, still active
    finally:
        daemon.outbox.close()


def test_sparkplug_catalogue_carries_the_advice(policy_bundle):
    from edge_runtime.bundle import Bundle
    from edge_runtime.outbox import Message
    from edge_runtime.pipelines import ModelPipeline
    from edge_runtime.sparkplug.catalogue import Catalogue

    catalogue = Catalogue({"ctl": ModelPipeline("ctl", Bundle.load(policy_bundle))},
                          lambda kind, **f: f"x/{kind}/{f.get('model')}")
    assert {"ctl/setpoint", "ctl/raw_action", "ctl/verdict", "ctl/source"} <= set(
        catalogue.aliases)
    advice = {"ts": "2026-01-01T00:00:00.000Z", "version": "v", "setpoint": 352.5,
              "raw_action": None, "verdict": "watchdog", "source": "hold"}
    rows = catalogue.metrics_of([Message("x/advice/ctl", json.dumps(advice).encode(), 1)])
    assert rows == [(1767225600000, [["ctl/version", "v"], ["ctl/setpoint", 352.5],
                                     ["ctl/verdict", "watchdog"], ["ctl/source", "hold"]])]


def test_a_hot_reload_continues_from_the_set_point_the_plant_has(policy_bundle, tmp_path):
    from edge_runtime.bundle import Bundle
    from edge_runtime.reload import Swap, load_pipeline

    daemon = daemon_for(policy_bundle, tmp_path)
    t0 = time.time() - 3600
    t0 -= t0 % PERIOD
    try:
        feed(daemon, t0, {"T": 392.0, "batch_time": 0.0})  # guard: the PID drives
        old = daemon.pipelines["ctl"].task_state
        new = load_pipeline(daemon.config.models[0], Bundle.load(policy_bundle))
        daemon._process([Swap(new, "test")])
        state = daemon.pipelines["ctl"].task_state
        assert state is not old and state.last_t == old.last_t == t0
        assert state.shield.last == old.shield.last and state.shield.guard_active
        assert state.shield.source == "pid" and state.conditions["guard"]
        feed(daemon, t0 + PERIOD, {"T": 391.0, "batch_time": 1 / 60})
        advice = published(daemon, "/advice/ctl")
        assert [a["verdict"] for a in advice] == ["guard", "guard"]
        assert abs(advice[1]["setpoint"] - advice[0]["setpoint"]) <= 10.0
        events = [(e["alarm_id"], e["event"]) for e in published(daemon, "/alarm/")]
        assert events == [("ctl.guard", "raise")]  # not raised again by the new bundle
    finally:
        daemon.outbox.close()


def test_a_restart_continues_from_the_set_point_and_the_guard_it_left(policy_bundle, tmp_path):
    """A restart (a new daemon on the same outbox) starts its rate limit from the last
    set-point and keeps a guard that held the loop until the guard tag is below ``reset``."""
    first = daemon_for(policy_bundle, tmp_path)
    t0 = time.time() - 3600
    t0 -= t0 % PERIOD
    try:
        feed(first, t0, {"T": 340.0, "batch_time": 0.0})
        feed(first, t0 + PERIOD, {"T": 392.0, "batch_time": 1 / 60})  # guard: the PID drives
        left = published(first, "/advice/ctl")[-1]
        assert left["verdict"] == "guard"
    finally:
        first.outbox.close()
    second = daemon_for(policy_bundle, tmp_path)
    try:
        state = second.pipelines["ctl"].task_state
        assert state.shield.last == pytest.approx(left["setpoint"], abs=1e-6)
        assert state.shield.guard_active
        assert state.last_t is None  # the outage's periods are not decided after the fact
        feed(second, t0 + 5 * PERIOD, {"T": 385.0, "batch_time": 5 / 60})  # reset < T < trip
        [advice] = published(second, "/advice/ctl")[-1:]
        assert advice["verdict"] == "guard" and advice["source"] == "pid"
        assert abs(advice["setpoint"] - left["setpoint"]) <= 10.0  # rate-limited from it
        assert ("ctl.guard", "raise") not in [(e["alarm_id"], e["event"]) for e in
                                              published(second, "/alarm/")
                                              if e["ts"] >= iso_ms(t0 + 5 * PERIOD)]
    finally:
        second.outbox.close()
