"""What both agents (:mod:`training.control.dqn`, :mod:`training.control.ppo`) share: the
training record and its plot, TensorBoard scalars, running statistics, and the evaluation of
an exported policy on many seeded episodes at once (one batched forward pass per step)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class TrainLog:
    """What a ``fit`` did: each finished episode's return and the step it ended at, the
    training losses, the periodic evaluations, and the wall time."""

    episode_returns: list[float] = field(default_factory=list)
    episode_end_steps: list[int] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, mean loss)
    evaluations: list[tuple[int, float]] = field(default_factory=list)  # (step, score)
    best: tuple[int, float] | None = None  # the evaluation whose weights were kept
    steps: int = 0
    wall_s: float = 0.0

    def summary(self) -> dict:
        last = self.episode_returns[-20:]
        return {"steps": self.steps, "wall_s": round(self.wall_s, 1),
                "episodes": len(self.episode_returns),
                "last20_mean_return": float(np.mean(last)) if last else None,
                "best_evaluation": list(self.best) if self.best else None}

    def plot(self, path: Path, title: str) -> Path:
        """A PNG of the learning curve: episode returns (and their moving mean), evaluations."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        steps, returns = np.asarray(self.episode_end_steps), np.asarray(self.episode_returns)
        ax.plot(steps, returns, ".", ms=2, alpha=0.35, label="episode return")
        if len(returns) >= 10:
            k = max(10, len(returns) // 50)
            ax.plot(steps[k - 1:], np.convolve(returns, np.ones(k) / k, "valid"),
                    label=f"mean of {k}")
        if self.evaluations:
            ax.plot(*zip(*self.evaluations, strict=True), "o-", label="evaluation")
        ax.set(xlabel="environment steps", ylabel="return", title=title)
        ax.legend(loc="lower right")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


class Scalars:
    """TensorBoard scalars in ``log_dir``; does nothing without one."""

    def __init__(self, log_dir: Path | None):
        self._writer = None
        if log_dir is not None:
            import tensorflow as tf

            self._writer = tf.summary.create_file_writer(str(log_dir))

    def __call__(self, step: int, **values: float) -> None:
        if self._writer is None:
            return
        import tensorflow as tf

        with self._writer.as_default():
            for name, value in values.items():
                tf.summary.scalar(name, float(value), step=step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()


class RunningStats:
    """Running mean and variance (parallel Welford), as for observation normalisation."""

    def __init__(self, shape: tuple[int, ...] = ()):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, np.float64).reshape(-1, *self.mean.shape)
        n, mean, var = len(batch), batch.mean(axis=0), batch.var(axis=0)
        delta, total = mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + var * n
                    + delta ** 2 * self.count * n / total) / total
        self.count = total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var + 1e-8)


class Stopwatch:
    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


def policy_returns(model, make_env: Callable[[], object], seeds: Sequence[int],
                   discrete: bool, max_steps: int = 100_000,
                   info_key: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Run the exported ``model`` (Q-values → argmax if ``discrete``, else the action) on one
    episode per seed, all episodes side by side: one batched forward pass per step. Returns
    each episode's return and, with ``info_key``, that key of its last step's ``info`` (e.g.
    the reactor's ``yield``)."""
    envs = [make_env() for _ in seeds]
    obs = np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, seeds, strict=True)])
    returns = np.zeros(len(envs))
    finals = np.full(len(envs), np.nan)
    active = np.ones(len(envs), bool)
    for _ in range(max_steps):
        idx = np.flatnonzero(active)
        if not len(idx):
            break
        out = np.asarray(model(obs[idx].astype(np.float32), training=False))
        for row, i in enumerate(idx):
            action = int(np.argmax(out[row])) if discrete else out[row]
            o, r, terminated, truncated, info = envs[i].step(action)
            obs[i], returns[i] = o, returns[i] + float(r)
            if terminated or truncated:
                active[i] = False
                if info_key is not None:
                    finals[i] = float(info[info_key])
    for env in envs:
        env.close()
    return returns, (finals if info_key is not None else None)
