"""The agents on the batch reactor (``make_env("kinetics"|"jacketed")``): train DQN (discrete
levels) or PPO (continuous) with their ``REACTOR_DEFAULTS``, evaluate the exported policy on
the environments' held-apart seeds (``envs.eval_seeds``), print the mean yield against J*
(and, without a shield, the steps that broke the temperature limit, energy, peak temperature).

    python -m evaluation.rl_reactor --agent ppo|dqn [--env kinetics] [--steps N] [--seed S]
        [--env-args '{"energy_weight": 2.5e-4, "move_weight": 5e-6}']

A development check of the agents' reactor hyper-parameters; the comparison with PID and the
optimum, shield and edge included, is ``procedge eval reactor``. Like ``rl-classic``, the best
of periodic validation checkpoints (seeds 500 000…, below the evaluation's) is kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

J_STAR = 0.6108  # kinetics benchmark, published optimum
VALIDATION_SEEDS = range(500_000, 500_005)
GOALS = {"ppo": 0.600, "dqn": 0.59}
STEPS = {"ppo": 60_000, "dqn": 30_000}  # default budgets (≈ 2.5 min each on 2 CPU cores)
EVAL_EVERY = {"ppo": 4096, "dqn": 2000}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m evaluation.rl_reactor",
                                description=__doc__.splitlines()[0])
    p.add_argument("--agent", choices=("dqn", "ppo"), default="ppo")
    p.add_argument("--env", choices=("kinetics", "jacketed"), default="kinetics")
    p.add_argument("--steps", type=int, help="default: PPO 60 000, DQN 30 000")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--levels", type=int, default=11, help="DQN's discrete temperature levels")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--eval-every", type=int, help="default: PPO 4096, DQN 2000")
    p.add_argument("--config", type=json.loads, default={}, metavar="JSON",
                   help="over the agent's REACTOR_DEFAULTS[env]")
    p.add_argument("--env-args", type=json.loads, default={}, metavar="JSON",
                   help="make_env overrides, as a training config's control.overrides (e.g. "
                        "the jacketed reactor's reward weights; default: the environment's)")
    p.add_argument("--out", type=Path, default=Path("artifacts/eval/rl_reactor"))
    return p.parse_args(argv)


def episode(model, make, seed: int, discrete: bool) -> dict:
    """One episode of the exported ``model`` on ``seed`` (no shield): yield, the steps with
    a temperature violation, energy, peak temperature."""
    env = make()
    obs, info = env.reset(seed=seed)
    violations, done = 0, False
    while not done:
        out = np.asarray(model(obs[None].astype(np.float32), training=False))[0]
        obs, _, terminated, truncated, info = env.step(int(np.argmax(out)) if discrete else out)
        violations += bool(info["violation"])
        done = terminated or truncated
    return {"yield": float(info["yield"]), "violations": violations,
            "energy": float(info["energy"]), "peak_T": float(info["peak_T"])}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from training.control.envs import eval_seeds, make_env
    from training.control.rl_common import policy_returns

    levels = args.levels if args.agent == "dqn" else 0

    def make():
        return make_env(args.env, discrete=levels, **args.env_args)

    env = make_env(args.env, seed=args.seed, discrete=levels, **args.env_args)
    obs_dim = env.observation_space.shape[0]
    if args.agent == "dqn":
        from training.control.dqn import REACTOR_DEFAULTS, DQNAgent, DQNConfig

        config = DQNConfig(**{**REACTOR_DEFAULTS.get(args.env, {}), **args.config})
        agent = DQNAgent(obs_dim, levels, config, seed=args.seed)
    else:
        from training.control.ppo import REACTOR_DEFAULTS, PPOAgent, PPOConfig

        config = PPOConfig(**{**REACTOR_DEFAULTS.get(args.env, {}), **args.config})
        agent = PPOAgent(obs_dim, 1, config, seed=args.seed)
    discrete = args.agent == "dqn"

    def validate(model) -> float:
        return float(np.mean(policy_returns(model, make, VALIDATION_SEEDS, discrete,
                                            info_key="yield")[1]))

    steps = args.steps or STEPS[args.agent]
    every = EVAL_EVERY[args.agent] if args.eval_every is None else args.eval_every
    log = agent.fit(env, steps, log_dir=args.out / "tb" / f"{args.agent}_{args.env}",
                    evaluate=validate, eval_every=every)
    model = agent.policy_model()
    args.out.mkdir(parents=True, exist_ok=True)
    log.plot(args.out / f"{args.agent}_{args.env}.png", f"{args.agent.upper()} on {args.env}")
    model.save(args.out / f"{args.agent}_{args.env}.keras")
    clock = time.perf_counter()
    episodes = [episode(model, make, seed, discrete) for seed in eval_seeds(args.episodes)]
    yields = np.array([e["yield"] for e in episodes])
    result = {"agent": args.agent, "env": args.env, "train_steps": log.steps,
              "train_wall_s": round(log.wall_s, 1),
              "eval_wall_s": round(time.perf_counter() - clock, 1),
              "episodes": len(yields), "yield_mean": float(yields.mean()),
              "yield_p5": float(np.percentile(yields, 5)), "yield_min": float(yields.min()),
              "violation_steps": int(sum(e["violations"] for e in episodes)),
              "energy_mean": float(np.mean([e["energy"] for e in episodes])),
              "peak_T_max": float(max(e["peak_T"] for e in episodes)),
              "j_star": J_STAR, "goal": GOALS[args.agent],
              "passed": bool(yields.mean() >= GOALS[args.agent]),
              "selected_at_step": log.best[0] if log.best else None,
              "validation_curve": [[s, round(v, 4)] for s, v in log.evaluations],
              "config": config.model_dump(), "env_args": args.env_args}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
