"""A whole batch closed loop over a real Mosquitto: the batch reactor as the plant
(procedge/plant.py, what `procedge simulate --plant batch_reactor` runs) publishes its tags,
the daemon runs a tiny trained policy (train → convert behind the parity gate) through the
shield and writes the set-points back, the plant applies them. One tag goes silent for a few
periods: the watchdog must hold, raise its alarm and count the interventions."""

from __future__ import annotations

import json
import threading

import pytest

from edge_runtime.config import (
    ControlEdgeConfig,
    EdgeConfig,
    EventTimeConfig,
    ModelConfig,
    MqttConfig,
    OutboxConfig,
    TopicConfig,
)
from edge_runtime.daemon import EdgeDaemon
from edge_runtime.payloads import parse_timestamp
from tests.daemon_support import Collector

UNS = "t/s/a/reactor"
WALL_PERIOD_S = 0.3  # one control period of the plant, in wall time (20 in a batch)
SILENT = (5, 10)  # steps during which the first observation tag is not published


def tiny_control_run(out, family: str = "ppo"):
    """A policy trained a few hundred steps on the kinetics benchmark behind the shield (it
    tests the plumbing, not the yield); returns the run directory."""
    from training.config import TrainConfig
    from training.train import train

    agent = ({"hidden": [8], "n_envs": 1, "n_steps": 64, "batch_size": 32, "epochs": 2}
             if family == "ppo" else
             {"hidden": [8], "learning_starts": 50, "train_freq": 16, "gradient_steps": 4,
              "batch_size": 16, "target_update": 8})
    return train(TrainConfig.model_validate({
        "name": f"reactor_{family}", "task": "control", "family": family,
        "control": {"env": "kinetics", "steps": 300, "agent": agent, "eval_seeds": [101],
                    "representative_seeds": [102],
                    "shield": {"low": 298.0, "high": 398.0,
                               "guard": {"tag": "T", "trip": 396.0, "reset": 390.0},
                               "watchdog": {"stale_periods": 2, "on_stale": "hold"}},
                    "pid": {"kp": 2.0, "ti_s": 900.0, "setpoint": 350.0}},
        "fit": {"seed": 0, "tensorboard": False}, "output_dir": str(out)}))


@pytest.fixture(scope="module")
def reactor_bundle(tmp_path_factory):
    from converters.build import build_auto

    out = tmp_path_factory.mktemp("reactor")
    bundle, lines = build_auto(tiny_control_run(out / "runs"), out / "bundles")
    assert bundle.manifest.metrics["edge"]["action_error"] <= 0.01, lines
    return bundle.root


def test_a_batch_closed_loop_over_mosquitto_with_a_stale_tag(reactor_bundle, broker, tmp_path):
    from procedge.feeds import connect
    from procedge.plant import StaleTag, run_batch
    from training.control import envs

    env = envs.make_env("kinetics", seed=7)
    u = env.unwrapped
    speed = u.period_s / WALL_PERIOD_S
    write_topic = f"{UNS}/setpoint/{u.action_spec.name}"
    silent_tag = u.observation_tags[0].name
    config = EdgeConfig(
        gateway="gwr", mqtt=MqttConfig(port=broker.port), topics=TopicConfig(uns=UNS),
        outbox=OutboxConfig(path=tmp_path / "outbox.sqlite", synchronous="NORMAL"),
        event_time=EventTimeConfig(max_skew_s=None),  # the plant's clock runs ahead
        models=[ModelConfig(name="reactor", bundle=reactor_bundle, control=ControlEdgeConfig(
            mode="closed_loop", write_topic=write_topic, speed=speed,
            timer_slack=1.5))])  # a loaded CI machine may take a while with a window
    daemon = EdgeDaemon(config)
    collector = Collector(broker.port, [f"{UNS}/advice/#", f"{UNS}/alarm/#"],
                          client_id="reactor-collector")
    daemon.start()
    stopped = False
    plant = connect("127.0.0.1", broker.port, "reactor-plant")
    try:
        assert daemon.subscribed.wait(10)
        result = run_batch(plant, env, UNS, write_topic, speed, seed=7,
                           stale=(StaleTag(silent_tag, *SILENT),))
        daemon.stop()  # after the batch no tag comes: the watchdog would go on holding
        stopped = True
        assert 0.0 < result.yield_ < 1.0
        # the set-points reached the plant in their periods (a loaded machine can make some
        # late: the plant then keeps the one it has, as it does in the silent periods)
        assert result.setpoints_received + result.held == result.steps
        assert result.setpoints_received >= result.steps // 3, result
        assert collector.wait(lambda: len(collector.json("/advice/reactor")) >= result.steps,
                              10)
        advice = sorted(collector.json("/advice/reactor"), key=lambda a: a["ts"])
        # every step of the batch got advice, once; any later period is the watchdog's
        stamps = [parse_timestamp(a["ts"]) for a in advice]
        assert stamps[:result.steps] == result.stamps and len(set(stamps)) == len(stamps)
        after = advice[result.steps:]
        assert all(a["verdict"] == "watchdog" for a in after)
        verdicts = [a["verdict"] for a in advice[:result.steps]]
        assert verdicts[SILENT[0]:SILENT[1]] == ["watchdog"] * (SILENT[1] - SILENT[0]), verdicts
        assert verdicts.count("pass") + verdicts.count("clamped") >= result.steps // 3
        assert all(a["written"] and a["mode"] == "closed_loop" for a in advice)
        events = [(e["alarm_id"], e["event"]) for e in collector.json("/alarm/")
                  if "event_id" in e]
        assert events[:2] == [("reactor.watchdog", "raise"), ("reactor.watchdog", "clear")]
        watchdog = sum(a["verdict"] == "watchdog" for a in advice)  # each counted once
        assert daemon.metrics.value("procedge_shield_interventions_total", model="reactor",
                                    reason="watchdog") == watchdog
        assert daemon.metrics.value("procedge_control_writes_total", model="reactor",
                                    result="ok") == len(advice)
    finally:
        threading.Thread(target=plant.disconnect).start()
        collector.close()
        if not stopped:
            daemon.stop()


def test_a_dqn_policy_advises_one_of_its_levels(tmp_path):
    """Train tiny → convert → parity → edge action, for the discrete family: the advice's
    raw action is the level the argmax picks, as in training."""
    import json
    import time

    from converters.build import build_auto
    from edge_runtime.daemon import Inbound
    from edge_runtime.payloads import iso_ms
    from training.control import envs

    run = tiny_control_run(tmp_path / "runs", "dqn")
    bundle, lines = build_auto(run, tmp_path / "bundles")
    m = bundle.manifest
    assert len(m.control.levels) == 11 and m.metrics["edge"]["action_error"] <= 0.01, lines
    assert "level_agreement" in m.metrics["edge"]
    daemon = EdgeDaemon(EdgeConfig(
        topics=TopicConfig(uns=UNS), outbox=OutboxConfig(path=tmp_path / "o.sqlite"),
        models=[ModelConfig(name="dqn", bundle=bundle.root)]))
    env = envs.make_env("kinetics", seed=3)
    t0 = time.time() - 3600
    t0 -= t0 % env.unwrapped.period_s
    try:
        daemon._process([Inbound(daemon._topic("raw", tag=tag), json.dumps(
            {"v": v, "ts": iso_ms(t0)}).encode(), time.time())
            for tag, v in env.unwrapped.measured_tags().items()])
        [advice] = [json.loads(r.payload) for r in daemon.outbox.peek(0, 100)
                    if "/advice/" in r.topic]
        assert advice["raw_action"] == round(m.control.levels[advice["level"]], 6)
        assert advice["mode"] == "advisory" and not advice["written"]
    finally:
        daemon.outbox.close()


def test_eval_reactor_scores_the_keras_and_the_edge_policy_behind_the_shield(
        reactor_bundle, tmp_path):
    """`procedge eval reactor --run-dir --bundle`: the trained policy's Keras and LiteRT rows
    beside the baselines, on the same held-apart episodes, every controller behind the
    policy's shield; a policy trained on another environment's observation is refused."""
    from evaluation import reactor

    run_dir = reactor_bundle.parent.parent / "runs" / "reactor_ppo"
    args = ["--env", "kinetics", "--episodes", "2", "--controller", "pid", "--no-plots",
            "--out", str(tmp_path), "--run-dir", str(run_dir), "--bundle", str(reactor_bundle)]
    doc = reactor.main(args)
    rows = {r["model"]: r for r in doc["results"]}
    mode = json.loads((reactor_bundle / "manifest.json").read_text())["quantization"]
    keras_row, edge_row = rows["ppo keras"], rows[f"ppo edge {mode}"]
    assert 0.0 < edge_row["yield_mean"] < 1.0
    assert abs(edge_row["yield_mean"] - keras_row["yield_mean"]) <= 0.005  # half a point
    assert edge_row["action_ms"] > 0 and keras_row["action_ms"] > 0
    assert rows["optimum"]["yield_mean"] >= max(r["yield_mean"] for r in doc["results"]) - 1e-9
    assert doc["settings"]["shield"] == str(run_dir)
    with pytest.raises(ValueError, match="observation"):
        reactor.main([*args[:6], "--env", "jacketed", "--out", str(tmp_path),
                      "--bundle", str(reactor_bundle)])
