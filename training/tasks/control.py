"""Task ``control``: a policy trained by reinforcement learning on a batch-reactor environment,
every action through the safety shield; what ships is the policy network (PPO: the action in
[-1, 1]; DQN: the Q-value of each level, argmax at the edge).

The run directory: ``model.keras`` (the agent's ``policy_model()``), ``heldout.npz`` (``x``:
observations of deterministic episodes on held-apart seeds, ``y``: the Keras actions in
[-1, 1]), ``representative.npz`` (observations of other episodes, for int8), plots. Metrics:
the yield of those held-apart episodes and the shield's interventions. Parity: mean
|edge action − Keras action| as a fraction of the action range (DQN: the levels the argmax
picks), within the budget of the task's row (0.01 = 1 % of the range).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path

import numpy as np

from edge_runtime.bundle import OutputSpec, RunRecord
from training.calibration import save_representative
from training.config import TrainConfig
from training.control.shielded import ShieldedEnv, control_spec
from training.registry import Family

CONFIG_FIELDS = ("control",)


def make_shielded(config: TrainConfig, seed: int | None) -> ShieldedEnv:
    """The configured environment behind the configured shield (DQN: discrete levels)."""
    from training.control.envs import make_env

    c = config.control
    env = make_env(c.env, seed=seed, **c.overrides)
    levels = c.levels if config.family == "dqn" else 0
    return ShieldedEnv(env, control_spec(env, c.shield, c.pid, levels))


def make_agent(config: TrainConfig, env: ShieldedEnv):
    """The family's agent (``dqn``: DQNAgent over the levels; ``ppo``: PPOAgent); its settings
    are ``control.agent`` over the agents' proven ``REACTOR_DEFAULTS`` for the environment."""
    c, seed = config.control, config.fit.seed
    obs_dim = env.observation_space.shape[0]
    if config.family == "dqn":
        from training.control.dqn import REACTOR_DEFAULTS, DQNAgent, DQNConfig

        settings = DQNConfig(**(REACTOR_DEFAULTS.get(c.env, {}) | c.agent))
        return DQNAgent(obs_dim, len(env.levels), settings, seed)
    if config.family == "ppo":
        from training.control.ppo import REACTOR_DEFAULTS, PPOAgent, PPOConfig

        settings = PPOConfig(**(REACTOR_DEFAULTS.get(c.env, {}) | c.agent))
        check_step_head(settings.hold_obs, settings.max_step, env.control)
        return PPOAgent(obs_dim, 1, settings, seed)
    raise ValueError(f"task control trains families dqn and ppo, not {config.family!r}")


def check_step_head(hold_obs: int | None, max_step: float, spec) -> None:
    """A step policy (``agent.hold_obs``) adds its step to that observation column, so the
    column must *be* the applied action in action units: the tag's center and scale equal
    the action's mid-range and half-range; and a step the shield would rate-limit defeats
    the purpose, so ``max_step`` must stay within the rate limit."""
    if hold_obs is None:
        return
    tags, a = spec.observation, spec.action
    if hold_obs >= len(tags):
        raise ValueError(f"control.agent.hold_obs {hold_obs}: the observation has "
                         f"{len(tags)} tags")
    tag, mid, half = tags[hold_obs], (a.low + a.high) / 2, (a.high - a.low) / 2
    if not (np.isclose(tag.center, mid) and np.isclose(tag.scale, half)):
        raise ValueError(f"control.agent.hold_obs {hold_obs}: tag {tag.name!r} "
                         f"(center {tag.center}, scale {tag.scale}) is not the action "
                         f"{a.name!r} in action units (center {mid}, scale {half})")
    if spec.max_rate is not None and max_step * half > spec.max_rate + 1e-9:
        raise ValueError(f"control.agent.max_step {max_step} is {max_step * half:g} "
                         f"{a.unit} per period, over the shield's max_rate {spec.max_rate}")


def rollout(config: TrainConfig, agent, seed: int) -> dict:
    """One deterministic episode on ``seed``: observations, actions, temperatures, yield."""
    env = make_shielded(config, seed)
    obs, _ = env.reset(seed=seed)
    observations, actions, temps, setpoints = [], [], [], []
    info: dict = {}
    done = False
    while not done:
        observations.append(np.asarray(obs, np.float32))
        action = agent.act(obs, deterministic=True)
        obs, _, terminated, truncated, info = env.step(action)
        actions.append(info["raw_action"])
        temps.append(float(info.get("T", np.nan)))
        setpoints.append(float(info["shielded_setpoint"]))
        done = terminated or truncated
    return {"x": np.stack(observations), "actions": np.asarray(actions), "T": np.asarray(temps),
            "setpoint": np.asarray(setpoints), "yield": float(info.get("yield", np.nan)),
            "violations": float(info.get("violation", False)),
            "interventions": Counter(env.interventions)}


def train(config: TrainConfig, family: Family, run_dir: Path) -> RunRecord:
    from training.budget import one_pass  # imports keras: only when training

    c = config.control
    env = make_shielded(config, config.fit.seed)
    agent = make_agent(config, env)
    start = time.perf_counter()
    log = agent.fit(env, c.steps, log_dir=run_dir / "logs" if config.fit.tensorboard else None,
                    progress=False)
    seconds = time.perf_counter() - start
    policy = agent.policy_model()
    policy.save(run_dir / "model.keras")
    held = [rollout(config, agent, s) for s in c.eval_seeds]
    x = np.concatenate([r["x"] for r in held]).astype(np.float32)
    y = action_of(env.levels, policy.predict(x, verbose=0))[:, None].astype(np.float32)
    np.savez_compressed(run_dir / "heldout.npz", x=x, y=y)
    rep = np.concatenate([rollout(config, agent, s)["x"] for s in c.representative_seeds])
    save_representative(run_dir, rep.astype(np.float32), config.fit.seed)
    _plots(held, log, env, run_dir)
    spec = env.control
    yields = np.asarray([r["yield"] for r in held])
    shielded = sum((r["interventions"] for r in held), Counter())
    metrics = {"yield_mean": float(yields.mean()), "yield_min": float(yields.min()),
               "episodes": float(len(held)), "steps": float(c.steps),
               "violations": float(sum(r["violations"] for r in held)),
               "shield_interventions": float(sum(shielded.values()))}
    metrics |= {f"shield_{k}": float(v) for k, v in shielded.items()}
    returns = list(getattr(log, "episode_returns", []) or [])
    if returns:
        metrics["train_return_last"] = float(np.mean(returns[-10:]))
    return RunRecord(
        name=config.name, task="control", family=config.family,
        input=spec.input_spec(c.max_gap_s), scaler=spec.scaler_spec(), output=OutputSpec(),
        control=spec, metrics={"keras": metrics},
        training=one_pass(seconds, env_steps=c.steps),
        training_data_sha256=_fingerprint(config, x))


def _fingerprint(config: TrainConfig, x: np.ndarray) -> str:
    """SHA-256 of what defines the training: the control section, the seed, and the
    held-out observations the policy produced."""
    text = config.control.model_dump_json() + f"|{config.family}|{config.fit.seed}"
    return hashlib.sha256(text.encode() + np.ascontiguousarray(x).tobytes()).hexdigest()


def _plots(held: list[dict], log, env: ShieldedEnv, run_dir: Path) -> None:
    """Episode returns of the training, and the held-apart episodes' temperature and
    shielded set-point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    returns = list(getattr(log, "episode_returns", []) or [])
    ax1.plot(returns)
    ax1.set(xlabel="episode", ylabel="return", title="training")
    a = env.control.action
    for r in held:
        ax2.plot(r["setpoint"], alpha=0.7, label=f"yield {r['yield']:.3f}")
        if np.isfinite(r["T"]).any():
            ax2.plot(r["T"], ":", alpha=0.7)
    ax2.set(xlabel="step", ylabel=f"{a.name} [{a.unit}]", title="held-apart episodes")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run_dir / "control.png", dpi=100)
    plt.close(fig)


def parity(refs: list[np.ndarray], gots: list[np.ndarray], heldout: dict[str, np.ndarray],
           record: RunRecord, budget: float):
    """Mean |Δaction| as a fraction of the action range ([-1, 1]: a range of 2); DQN also
    reports the agreement of the argmax levels (the error is that of the levels picked)."""
    spec = record.control
    ref_a, got_a = action_of(spec.levels, refs[0]), action_of(spec.levels, gots[0])
    error = float(np.mean(np.abs(ref_a - got_a)) / 2.0)
    keras_m = {"action_error": 0.0}
    edge_m = {"action_error": error, "action_max_error": float(np.max(np.abs(ref_a - got_a))
                                                               / 2.0)}
    if spec.levels:
        agree = float(np.mean(refs[0].argmax(axis=-1) == gots[0].argmax(axis=-1)))
        keras_m["level_agreement"], edge_m["level_agreement"] = 1.0, agree
    reasons = [] if error <= budget else [
        f"edge action error {error:.4%} of the action range > budget {budget:.2%}"]
    return keras_m, edge_m, reasons


def action_of(levels: list[float], out: np.ndarray) -> np.ndarray:
    """Model outputs → actions in [-1, 1] (levels: the argmax's level)."""
    out = np.asarray(out, dtype=np.float64).reshape(len(out), -1)
    if levels:
        return np.asarray(levels)[out.argmax(axis=1)]
    return np.clip(out[:, 0], -1.0, 1.0)
