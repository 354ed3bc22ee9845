"""``procedge eval reactor --env kinetics|jacketed --controller pid,openloop,… --episodes N``:
every controller on the same held-apart episodes (seeds ``envs.EVAL_SEED_BASE + i``, never
used in training), scored against each episode's hindsight optimum (the optimal control of its
true parameters, :mod:`training.control.optimal`).

Per controller: mean and 5th percentile of the yield x2(t_f), the regret (the episode's
optimum − yield; mean and 95th percentile), the jacket utility energy (kWh), the peak reactor
temperature (mean over episodes and the highest), the constraint violations (control steps
with the true peak above the hard limit, and episodes with any) and the shield's interventions
(0 for these controllers, which run without a shield). The optima are cached in
``--out/optima_<env>_<steps>.json`` (keyed by the episode's parameters), so a re-run only
simulates.

Trained policies join as rows beside the baselines: ``--run-dir RUN`` (the Keras policy of a
``procedge train`` run of task ``control``) and ``--bundle BUNDLE`` (its converted LiteRT model,
as the gateway runs it). With either, every controller runs behind that policy's safety shield
(its settings from the run record or bundle), whose interventions are counted, and a policy
row also reports ``action_ms``: the mean time of one policy call.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evaluation.results import write_results
from training.control import baselines, envs, optimal, plant
from training.progress import progress

if TYPE_CHECKING:
    import gymnasium as gym

    from edge_runtime.bundle import ControlSpec


@dataclass
class Episode:
    """One batch of one controller: the trajectory at the control instants and its totals."""

    seed: int
    T: list[float] = field(default_factory=list)
    x1: list[float] = field(default_factory=list)
    x2: list[float] = field(default_factory=list)
    setpoint: list[float] = field(default_factory=list)
    yield_: float = 0.0
    energy: float = 0.0
    peak_T: float = 0.0
    violations: int = 0
    interventions: int = 0
    reward: float = 0.0


def run_episode(env, controller: baselines.Controller, seed: int) -> Episode:
    obs, info = env.reset(seed=seed)
    controller.reset()
    ep = Episode(seed, T=[info["T"]], x1=[info["x1"]], x2=[info["x2"]])
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(controller.act(obs, info))
        done = terminated or truncated
        ep.reward += reward
        ep.T.append(info["T"])
        ep.x1.append(info["x1"])
        ep.x2.append(info["x2"])
        ep.setpoint.append(info["setpoint"])
        ep.violations += int(info["violation"])
        ep.interventions += int(info.get("shield", "pass") != "pass")
    ep.yield_, ep.energy, ep.peak_T = info["yield"], info["energy"], info["peak_T"]
    return ep


def _key(kind: str, steps: int, params: dict) -> str:
    return f"{kind}:{steps}:{plant.SUBSTEPS}:{plant.T_LIMIT}:" + ",".join(
        f"{k}={params[k]:.12g}" for k in sorted(params))


def episode_optima(kind: str, seeds: list[int], steps: int,
                   cache: Path | None) -> list[optimal.Optimum]:
    """The hindsight optimum of each episode (from its true parameters), warm-started from the
    nominal optimum, read from and written to ``cache``."""
    store = json.loads(cache.read_text()) if cache is not None and cache.exists() else {}
    env = envs.make_env(kind, steps=steps)
    nominal = baselines.references(kind, steps).optimum
    out = []
    for seed in progress(seeds, f"{kind} optima", unit="episode"):
        env.reset(seed=seed)
        params = env.unwrapped.params
        key = _key(kind, steps, params.as_dict())
        if key not in store:
            store[key] = optimal.solve(kind, steps, params, x0=nominal.controls).as_dict()
        out.append(optimal.Optimum.from_dict(store[key]))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(store))
    return out


class TimedPolicy:
    """``policy(obs)`` with its calls timed: the edge's time per control action."""

    def __init__(self, policy: Callable[[np.ndarray], np.ndarray]):
        self.policy, self.calls, self.seconds = policy, 0, 0.0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self.policy(obs)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out

    @property
    def ms(self) -> float:
        return 1e3 * self.seconds / max(self.calls, 1)


def keras_policy(run_dir: Path) -> tuple[baselines.PolicyController, ControlSpec]:
    """The Keras policy of a ``control`` run directory, named ``<family> keras``."""
    import keras

    from edge_runtime.bundle import RunRecord

    record = RunRecord.load(run_dir)
    spec = _control_of(record, run_dir)
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    timed = TimedPolicy(lambda obs: np.asarray(model(obs[None], training=False))[0])
    return _controller(f"{record.family} keras", timed, spec), spec


def edge_policy(bundle_path: Path) -> tuple[baselines.PolicyController, ControlSpec]:
    """The LiteRT policy of a ``control`` bundle, as the gateway runs it (one observation
    per invoke, one thread), named ``<family> edge <mode>``."""
    from edge_runtime.bundle import Bundle
    from edge_runtime.interpreter import EdgeModel

    bundle = Bundle.load(bundle_path)
    m = bundle.manifest
    spec = _control_of(m, bundle_path)
    model = EdgeModel(bundle.model_path)
    timed = TimedPolicy(lambda obs: model.predict_each(obs[None])[0][0])
    return _controller(f"{m.family} edge {m.quantization}", timed, spec), spec


def _control_of(record, where: Path) -> ControlSpec:
    if record.task != "control" or record.control is None:
        raise ValueError(f"{where}: a {record.task!r} model, not task 'control'")
    return record.control


def _controller(name: str, timed: TimedPolicy, spec: ControlSpec) -> baselines.PolicyController:
    ctl = baselines.PolicyController(name, timed, np.array(spec.levels) if spec.levels else None)
    ctl.timer = timed
    return ctl


def check_policy_env(spec: ControlSpec, env, where: str) -> None:
    """A policy sees the observation it was trained on: the same tags, centres and scales."""
    ours = [(t.name, float(t.center), float(t.scale)) for t in env.unwrapped.observation_tags]
    theirs = [(t.name, t.center, t.scale) for t in spec.observation]
    if ours != theirs:
        raise ValueError(f"{where}: trained on observation {theirs}, but --env "
                         f"{env.unwrapped.kind} observes {ours}")


def summarise(name: str, episodes: list[Episode], optima: list[optimal.Optimum],
              variant: str = "numpy", mode: str = "float64") -> dict:
    y = np.array([e.yield_ for e in episodes])
    regret = np.array([o.yield_ for o in optima]) - y
    peaks = np.array([e.peak_T for e in episodes])
    return {"model": name, "variant": variant, "mode": mode, "episodes": len(episodes),
            "yield_mean": float(y.mean()), "yield_p5": float(np.percentile(y, 5)),
            "regret_mean": float(regret.mean()), "regret_p95": float(np.percentile(regret, 95)),
            "energy_kwh": float(np.mean([e.energy for e in episodes])),
            "max_T_mean": float(peaks.mean()), "max_T_max": float(peaks.max()),
            "violations": int(sum(e.violations for e in episodes)),
            "violating_episodes": int(sum(e.violations > 0 for e in episodes)),
            "shield_interventions": int(sum(e.interventions for e in episodes)),
            "return_mean": float(np.mean([e.reward for e in episodes]))}


def optimum_row(kind: str, optima: list[optimal.Optimum]) -> dict:
    y = np.array([o.yield_ for o in optima])
    peaks = np.array([o.peak_T.max() for o in optima])
    over = [(o.peak_T > plant.T_LIMIT + 1e-6) & (kind == "jacketed") for o in optima]
    return {"model": "optimum", "variant": "scipy", "mode": "float64", "episodes": len(optima),
            "yield_mean": float(y.mean()), "yield_p5": float(np.percentile(y, 5)),
            "regret_mean": 0.0, "regret_p95": 0.0,
            "energy_kwh": float(np.mean([o.energy_kwh for o in optima])),
            "max_T_mean": float(peaks.mean()), "max_T_max": float(peaks.max()),
            "violations": int(sum(v.sum() for v in over)),
            "violating_episodes": int(sum(bool(v.any()) for v in over)),
            "shield_interventions": 0, "solver_failures": int(sum(not o.success for o in optima))}


def evaluate(kind: str, controllers: list[baselines.Controller], episodes: int = 100,
             steps: int = envs.STEPS, cache: Path | None = None, plots: Path | None = None,
             wrap: Callable[[gym.Env], gym.Env] | None = None) -> dict:
    """Every controller on the same held-apart episodes; the result document's rows and
    settings (and PNGs in ``plots``). ``wrap``: e.g. the safety shield around the
    environment (its ``info["shield"]`` verdicts other than ``pass`` are counted)."""
    seeds = envs.eval_seeds(episodes)
    optima = episode_optima(kind, seeds, steps, cache)
    env = envs.make_env(kind, steps=steps)
    env = wrap(env) if wrap is not None else env
    rows, runs = [optimum_row(kind, optima)], {}
    for ctl in progress(controllers, "controllers", unit="controller"):
        eps = [run_episode(env, ctl, s) for s in seeds]
        rows.append(summarise(ctl.name, eps, optima))
        if getattr(ctl, "timer", None) is not None:
            rows[-1]["action_ms"] = ctl.timer.ms
        runs[ctl.name] = {"T": eps[0].T, "x1": eps[0].x1, "x2": eps[0].x2,
                          "setpoint": eps[0].setpoint}
    u = env.unwrapped
    settings = {"env": kind, "episodes": episodes, "steps": steps, "period_s": u.period_s,
                "seeds": f"{seeds[0]}..{seeds[-1]}", "t_limit_K": plant.T_LIMIT,
                "action": vars(u.action_spec),
                "nominal_optimum": baselines.references(kind, steps).optimum.yield_,
                "pid_tuning": baselines.simc_tuning(u.period_s).as_dict(),
                "plots": []}
    if plots is not None:
        settings["plots"] = [str(p) for p in _plots(kind, runs, optima[0], steps, plots)]
    return {"results": rows, "settings": settings}


def _plots(kind: str, runs: dict, opt: optimal.Optimum, steps: int, out: Path) -> list[Path]:
    from training.control import plots

    t_h = np.linspace(0.0, plant.T_FINAL_H, steps + 1)
    opt_T = np.append(opt.controls, opt.controls[-1]) if kind == "kinetics" else opt.T
    title = f"{kind}, episode seed {envs.EVAL_SEED_BASE}"
    return [plots.temperature_profiles(t_h, runs, opt_T, out / f"{kind}_temperature.png", title,
                                       plant.T_LIMIT if kind == "jacketed" else None),
            plots.concentrations(t_h, runs, out / f"{kind}_concentrations.png", title)]


COLUMNS = (("yield_mean", "yield", ".4f"), ("yield_p5", "yield_p5", ".4f"),
           ("regret_mean", "regret", ".4f"), ("regret_p95", "regret_p95", ".4f"),
           ("energy_kwh", "energy_kWh", ".1f"), ("max_T_mean", "maxT_mean", ".2f"),
           ("max_T_max", "maxT_max", ".2f"), ("violations", "viol_steps", "d"),
           ("violating_episodes", "viol_eps", "d"), ("shield_interventions", "shield", "d"))


def format_table(doc: dict) -> str:
    s = doc["settings"]
    lines = [f"reactor {s['env']}: {s['episodes']} held-apart episodes (seeds {s['seeds']}), "
             f"{s['steps']} steps of {s['period_s']:.0f} s, hard limit {s['t_limit_K']} K"
             + (" (not enforced in the kinetics benchmark)" if s["env"] == "kinetics" else ""),
             f"{'controller':<18}" + "".join(f"{title:>12}" for _, title, _ in COLUMNS)]
    for r in doc["results"]:
        lines.append(f"{r['model']:<18}" + "".join(f"{r[k]:>12{fmt}}" for k, _, fmt in COLUMNS)
                     + (f"  {r['action_ms']:.3f} ms/action" if "action_ms" in r else ""))
    if s.get("shield"):
        lines.append(f"every controller behind the shield of {s['shield']}")
    if s["env"] == "kinetics":
        lines.append(f"published J* = {plant.J_STAR} (continuous T); the optimum on this "
                     f"{s['steps']}-step grid: {s['nominal_optimum']:.5f}")
    t = s["pid_tuning"]
    lines.append(f"PID (SIMC on FOPDT K={t['gain']:.3f} K/K, tau={t['tau_s']:.0f} s, "
                 f"theta={t['dead_s']:.0f} s): kp={t['kp']:.3f} K/K, ti={t['ti_s']:.0f} s, "
                 f"td={t['td_s']:.0f} s" + (" — unused: T is the action in the kinetics "
                                             "benchmark" if s["env"] == "kinetics" else ""))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="procedge eval reactor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", choices=sorted(envs.ENVS), default="jacketed")
    p.add_argument("--controller", default=",".join(baselines.CONTROLLERS),
                   help=f"comma list of {', '.join(baselines.CONTROLLERS)}")
    p.add_argument("--run-dir", type=Path, action="append", default=[],
                   help="a trained control run (its Keras policy joins as a row); repeatable")
    p.add_argument("--bundle", type=Path, action="append", default=[],
                   help="a converted control bundle (its LiteRT policy joins as a row)")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--steps", type=int, default=envs.STEPS, help="control steps per batch")
    p.add_argument("--out", type=Path, default=Path("artifacts/eval/reactor"),
                   help="plots and the cache of per-episode optima")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--json", type=Path, help="write {'results': [...], 'settings': …} here")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    names = [n.strip() for n in args.controller.split(",") if n.strip()]
    unknown = sorted(set(names) - set(baselines.CONTROLLERS))
    if unknown or not names:
        raise ValueError(f"--controller {args.controller!r}: unknown {unknown}; "
                         f"choose from {', '.join(baselines.CONTROLLERS)}")
    if args.episodes < 1:
        raise ValueError("--episodes must be >= 1")
    env = envs.make_env(args.env, steps=args.steps)
    policies = ([keras_policy(p) + (p,) for p in args.run_dir]
                + [edge_policy(p) + (p,) for p in args.bundle])
    for _, spec, where in policies:
        check_policy_env(spec, env, str(where))
    controllers = [baselines.make_controller(n, env) for n in names]
    controllers += [ctl for ctl, _, _ in policies]
    wrap = None
    if policies:
        from training.control.shielded import shield_wrap

        wrap = shield_wrap(policies[0][1])
    doc = evaluate(args.env, controllers, args.episodes, args.steps,
                   cache=args.out / f"optima_{args.env}_{args.steps}.json",
                   plots=None if args.no_plots else args.out, wrap=wrap)
    doc["settings"]["shield"] = str(policies[0][2]) if policies else ""
    print(format_table(doc))
    write_results(args.json, doc["results"], doc["settings"])
    return doc
