"""PNG plots of reactor batches: each controller's temperature against the hindsight optimum,
and the concentrations (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from training.control import plant  # noqa: E402


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def temperature_profiles(t_h: np.ndarray, runs: dict[str, dict], optimum_T: np.ndarray,
                         path: Path, title: str, limit: float | None = None) -> Path:
    """Reactor temperature of each controller (``runs[name]["T"]``, K, at the control
    instants ``t_h``) and, dashed, the episode's hindsight optimum; the hard limit if any.
    The jacketed runs also draw their jacket set-points (thin)."""
    fig, axes = plt.subplots(2 if limit is not None else 1, 1, figsize=(8, 6 if limit else 3.5),
                             squeeze=False, sharex=True)
    ax = axes[0, 0]
    for name, run in runs.items():
        ax.plot(t_h, run["T"], lw=1.2, label=name)
    ax.plot(t_h, optimum_T, "k--", lw=1.5, label="hindsight optimum")
    if limit is not None:
        ax.axhline(limit, color="k", ls=":", lw=1.5, label="hard limit")
    ax.set(ylabel="reactor T (K)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if limit is not None:
        ax = axes[1, 0]
        for name, run in runs.items():
            ax.step(t_h[:-1], run["setpoint"], where="post", lw=1, label=name)
        ax.set(ylabel="jacket set-point (K)")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("batch time (h)")
    return _save(fig, path)


def concentrations(t_h: np.ndarray, runs: dict[str, dict], path: Path, title: str) -> Path:
    """x1 (A) and x2 (B) of each controller over the batch."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, run in runs.items():
        axes[0].plot(t_h, run["x1"], lw=1.2, label=name)
        axes[1].plot(t_h, run["x2"], lw=1.2, label=name)
    axes[0].set(xlabel="batch time (h)", ylabel="x1, A (mol/L)", title=title)
    axes[1].set(xlabel="batch time (h)", ylabel="x2, B (mol/L)")
    axes[1].axhline(plant.J_STAR, color="k", ls=":", lw=1, label="J* (kinetics)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    return _save(fig, path)
