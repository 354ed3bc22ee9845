"""KerasTuner's chief/worker protocol as `procedge tune` serves it (training/tune_cluster.py):
a chief serving the oracle over gRPC on 127.0.0.1 and two workers sharing its trials. The
workers' trials are a formula here (no training: the full command with real trials is
bench/tune_distributed.py, its run in bench/HISTORY.md)."""

from __future__ import annotations

import threading
import time

import keras_tuner as kt
import pytest

from edge_runtime.validation import ConfigError
from procedge.broker import free_port
from training.tune_cluster import role, serve


def test_role_from_the_environment(monkeypatch):
    for name in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        monkeypatch.delenv(name, raising=False)
    assert role() == "local"
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    with pytest.raises(ConfigError, match="KERASTUNER_ORACLE_PORT, KERASTUNER_TUNER_ID"):
        role()
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    assert role() == "chief"
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner1")
    assert role() == "worker"


def test_chief_serves_two_workers_until_every_trial_is_done(tmp_path, monkeypatch):
    ran: dict[str, list[str]] = {"tuner0": [], "tuner1": []}

    class Formula(kt.Tuner):
        def run_trial(self, trial, *args, **kwargs):
            ran[self.tuner_id].append(trial.trial_id)
            time.sleep(0.2)  # both workers hold a trial at once
            return {"val_loss": (trial.hyperparameters.values["x"] - 3) ** 2}

    def oracle():
        hps = kt.HyperParameters()
        hps.Int("x", 0, 9)
        return kt.oracles.RandomSearchOracle(kt.Objective("val_loss", "min"), max_trials=6,
                                             hyperparameters=hps, seed=0)

    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", str(free_port()))
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    chief = Formula(oracle(), directory=str(tmp_path / "chief"), project_name="kt")
    served = threading.Thread(target=serve, args=(chief.oracle, 2, 0.05))
    served.start()
    workers = []
    for tuner in ("tuner0", "tuner1"):
        monkeypatch.setenv("KERASTUNER_TUNER_ID", tuner)
        workers.append(Formula(oracle(), directory=str(tmp_path / tuner), project_name="kt"))
    threads = [threading.Thread(target=w.search) for w in workers]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in (*threads, served):
        t.join(timeout=60)
    assert not served.is_alive() and not any(t.is_alive() for t in threads)
    assert time.monotonic() - start < 15
    trials = chief.oracle.trials
    assert len(trials) == 6 and all(str(t.status) == "COMPLETED" for t in trials.values())
    assert ran["tuner0"] and ran["tuner1"]  # both took trials
    assert sorted(ran["tuner0"] + ran["tuner1"]) == sorted(trials)  # each trial ran once
    best = chief.oracle.get_best_trials(1)[0]
    assert best.score == min(t.score for t in trials.values())
