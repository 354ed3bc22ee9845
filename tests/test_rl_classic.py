"""``procedge eval rl-classic`` end to end on a tiny budget: it trains, evaluates the exported
policy on the test seeds and prints a result document that passes the shared schema."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("gymnasium")


def test_cli_prints_a_checked_result_document(tmp_path, capsys):
    from evaluation.results import check
    from procedge.cli import main

    main(["eval", "rl-classic", "--agent", "both", "--steps", "600", "--episodes", "2",
          "--eval-every", "0", "--out", str(tmp_path), "--json"])
    document = json.loads(capsys.readouterr().out)
    check(document)
    rows = {r["model"]: r for r in document["results"]}
    assert rows["dqn"]["env"] == "CartPole-v1" and rows["ppo"]["env"] == "Pendulum-v1"
    assert rows["dqn"]["episodes"] == 2 and rows["dqn"]["train_steps"] == 600
    assert rows["ppo"]["train_steps"] >= 600  # whole rollouts
    assert rows["dqn"]["mean_return"] >= 8  # CartPole pays 1 per step, ≥ 8 steps
    assert -2000 < rows["ppo"]["mean_return"] < 0
    assert (tmp_path / "dqn_cartpole.png").exists() and (tmp_path / "ppo_pendulum.keras").exists()
