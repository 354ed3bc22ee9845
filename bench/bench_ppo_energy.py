"""Validation of jacketed-reactor PPO runs against PID on *training-range* seeds (issue 19,
energy goal): the choice between candidate reward settings is made here, never on the
held-apart evaluation seeds of ``procedge eval reactor``.

    python bench/bench_ppo_energy.py RUN_DIR [RUN_DIR …] [--episodes 30]

Each controller (PID and every run's Keras policy) runs behind the first run's shield, on seeds
``VALIDATION_BASE + i`` (below ``envs.EVAL_SEED_BASE``). Prints per controller the mean and 5th
percentile of the yield, the mean energy (kWh) and its ratio to PID's, the violating steps and
the shield's interventions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from evaluation.reactor import keras_policy, run_episode
from evaluation.rl_reactor import VALIDATION_SEEDS
from training.control import baselines, envs
from training.control.shielded import shield_wrap

VALIDATION_BASE = VALIDATION_SEEDS.start  # where evaluation.rl_reactor validates, < EVAL_SEED_BASE


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dirs", type=Path, nargs="+")
    p.add_argument("--episodes", type=int, default=30)
    args = p.parse_args()
    seeds = [envs.check_training_seed(VALIDATION_BASE + i) for i in range(args.episodes)]
    policies = [keras_policy(d) for d in args.run_dirs]
    env = shield_wrap(policies[0][1])(envs.make_env("jacketed"))
    rows = [("pid", baselines.make_controller("pid", env))]
    rows += [(str(d), ctl) for d, (ctl, _) in zip(args.run_dirs, policies, strict=True)]
    pid_energy = None
    print(f"{'controller':<40}{'yield':>8}{'p5':>8}{'kWh':>7}{'/pid':>7}{'viol':>6}{'shield':>8}")
    for name, ctl in rows:
        eps = [run_episode(env, ctl, s) for s in seeds]
        y = np.array([e.yield_ for e in eps])
        energy = float(np.mean([e.energy for e in eps]))
        pid_energy = pid_energy or energy
        print(f"{name:<40}{y.mean():8.4f}{np.percentile(y, 5):8.4f}{energy:7.1f}"
              f"{energy / pid_energy:7.3f}{sum(e.violations for e in eps):6d}"
              f"{sum(e.interventions for e in eps):8d}", flush=True)


if __name__ == "__main__":
    main()
