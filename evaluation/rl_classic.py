"""``procedge eval rl-classic``: the agents proven on environments nobody here wrote.

- DQN on Gymnasium's ``CartPole-v1``: goal mean return ≥ 475 (the environment's own
  threshold) over 100 evaluation episodes, greedy policy;
- PPO on ``Pendulum-v1`` (torque rescaled to [-1, 1]): goal mean return ≥ −200 over 100
  evaluation episodes, deterministic (mean) policy.

Protocol: training resets its environments from ``--seed``; every ``--eval-every`` steps the
exported policy plays 30 *validation* episodes (seeds 10 000…) and the best weights are kept,
as a practitioner keeps the best checkpoint; the figures come from 100 *test* episodes (seeds
1 000 000…) that neither training nor the selection ever saw. What is evaluated is the exported
``policy_model()`` (the registered family that converts to LiteRT), never a private network.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.results import write_results

VALIDATION_SEEDS = range(10_000, 10_030)
TEST_SEEDS = range(1_000_000, 1_000_100)


@dataclass(frozen=True)
class Benchmark:
    agent: str
    env_id: str
    goal: float
    steps: int  # default training budget (environment steps)
    eval_every: int

    def make_env(self):
        import gymnasium as gym

        env = gym.make(self.env_id)
        if isinstance(env.action_space, gym.spaces.Box):  # the agents act in [-1, 1]
            one = np.ones(env.action_space.shape, np.float32)
            env = gym.wrappers.RescaleAction(env, -one, one)
        return env


BENCHMARKS = {
    "dqn": Benchmark("dqn", "CartPole-v1", 475.0, 50_000, 5_000),
    "ppo": Benchmark("ppo", "Pendulum-v1", -200.0, 300_000, 8_192),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="procedge eval rl-classic",
                                description=__doc__.splitlines()[0])
    p.add_argument("--agent", choices=("dqn", "ppo", "both"), default="both")
    p.add_argument("--steps", type=int,
                   help="training steps per agent (default: DQN 50 000, PPO 300 000)")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--eval-every", type=int,
                   help="validation period in steps (default: DQN 5 000, PPO 8 192; 0 = "
                        "off, the last weights are evaluated)")
    p.add_argument("--config", type=json.loads, default={}, metavar="JSON",
                   help='agent hyper-parameters over the defaults, e.g. \'{"gamma": 0.98}\' '
                        "(DQNConfig / PPOConfig fields)")
    p.add_argument("--episodes", type=int, default=len(TEST_SEEDS),
                   help="test episodes (seeds 1 000 000…)")
    p.add_argument("--out", type=Path, default=Path("artifacts/eval/rl_classic"),
                   help="learning-curve PNGs, exported models, TensorBoard logs (tb/)")
    p.add_argument("--json", nargs="?", const="-", metavar="PATH",
                   help="write the result document to PATH; bare --json prints it instead "
                        "of the table")
    return p.parse_args(argv)


def make_agent(name: str, env, seed: int, overrides: dict | None = None):
    """An agent sized for ``env``'s spaces, its config the defaults plus ``overrides``."""
    obs_dim = int(np.prod(env.observation_space.shape))
    if name == "dqn":
        from training.control.dqn import DQNAgent, DQNConfig

        return DQNAgent(obs_dim, int(env.action_space.n), DQNConfig(**(overrides or {})),
                        seed=seed)
    from training.control.ppo import PPOAgent, PPOConfig

    return PPOAgent(obs_dim, int(np.prod(env.action_space.shape)),
                    PPOConfig(**(overrides or {})), seed=seed)


def run(bench: Benchmark, steps: int, seed: int, eval_every: int, episodes: int,
        out: Path, progress: bool, overrides: dict | None = None) -> tuple[dict, list]:
    """Train one agent, evaluate its exported policy; the result row and the validation
    curve ``[[step, mean return], …]``."""
    from training.control.rl_common import policy_returns

    discrete = bench.agent == "dqn"
    env = bench.make_env()
    agent = make_agent(bench.agent, env, seed, overrides)

    def validate(model) -> float:
        return float(policy_returns(model, bench.make_env, VALIDATION_SEEDS, discrete)[0].mean())

    fit_env: object | Callable = env if discrete else bench.make_env
    log = agent.fit(fit_env, steps, log_dir=out / "tb" / bench.agent, progress=progress,
                    evaluate=validate if eval_every else None, eval_every=eval_every)
    env.close()
    model = agent.policy_model()
    tag = f"{bench.agent}_{bench.env_id.split('-')[0].lower()}"
    log.plot(out / f"{tag}.png", f"{bench.agent.upper()} on {bench.env_id}")
    model.save(out / f"{tag}.keras")
    clock = time.perf_counter()
    returns, _ = policy_returns(model, bench.make_env, TEST_SEEDS[:episodes], discrete)
    return {"model": bench.agent, "variant": "keras", "mode": "float32", "env": bench.env_id,
            "mean_return": float(returns.mean()), "std_return": float(returns.std()),
            "min_return": float(returns.min()), "episodes": len(returns), "goal": bench.goal,
            "passed": bool(returns.mean() >= bench.goal), "train_steps": log.steps,
            "train_wall_s": round(log.wall_s, 1),
            "eval_wall_s": round(time.perf_counter() - clock, 1),
            "selected_at_step": log.best[0] if log.best else None,
            "validation_score": log.best[1] if log.best else None}, [
                [s, round(v, 1)] for s, v in log.evaluations]


def format_table(rows: list[dict]) -> str:
    head = (f"{'agent':6} {'env':12} {'steps':>8} {'train s':>8} {'mean':>9} {'std':>7} "
            f"{'min':>9} {'goal':>7}  pass")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['model']:6} {r['env']:12} {r['train_steps']:>8} "
                     f"{r['train_wall_s']:>8.1f} {r['mean_return']:>9.1f} "
                     f"{r['std_return']:>7.1f} {r['min_return']:>9.1f} {r['goal']:>7.0f}  "
                     f"{'yes' if r['passed'] else 'NO'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from training.control.networks import set_normaliser  # noqa: F401 (TensorFlow loads here)

    names = ["dqn", "ppo"] if args.agent == "both" else [args.agent]
    rows, curves, bare_json = [], {}, args.json == "-"
    for name in names:
        bench = BENCHMARKS[name]
        steps = args.steps or bench.steps
        every = bench.eval_every if args.eval_every is None else args.eval_every
        if not bare_json:
            print(f"{name}: training on {bench.env_id} for {steps} steps (seed {args.seed})",
                  flush=True)
        row, curves[name] = run(bench, steps, args.seed, every, args.episodes, args.out,
                                progress=not bare_json, overrides=args.config)
        rows.append(row)
    settings = {"seed": args.seed, "validation_seeds": [VALIDATION_SEEDS.start,
                                                        VALIDATION_SEEDS.stop],
                "test_seeds": [TEST_SEEDS.start, TEST_SEEDS.start + args.episodes],
                "eval_every": args.eval_every, "config_overrides": args.config,
                "validation_curves": curves,
                "out": str(args.out)}
    document = write_results(None if bare_json else (Path(args.json) if args.json else None),
                             rows, settings)
    if bare_json:
        print(json.dumps(document, indent=2, default=str))
    else:
        print(format_table(rows))
