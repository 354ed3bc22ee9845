"""Plots of a generative run: loss curves, real vs generated traces per tag and class, and a
2-D PCA of real vs generated windows coloured by class (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def loss_curves(history: dict[str, list[float]], path: Path, title: str) -> Path:
    """One panel per loss term, against the optimizer step (a 1 % moving mean over the raw
    values)."""
    fig, axes = plt.subplots(1, len(history), figsize=(4 * len(history), 3), squeeze=False)
    for ax, (key, values) in zip(axes[0], history.items(), strict=True):
        v = np.asarray(values, float)
        ax.plot(v, alpha=0.3)
        w = max(len(v) // 100, 1)
        ax.plot(np.arange(w - 1, len(v)), np.convolve(v, np.ones(w) / w, "valid"))
        ax.set(xlabel="step", title=key)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path)


def sample_grid(real: np.ndarray, real_c: np.ndarray, fake: np.ndarray, fake_c: np.ndarray,
                tags: list[str], class_names: list[str], path: Path, per_class: int = 6,
                most_tags: int = 6) -> Path:
    """Rows: tags (the first ``most_tags``); columns: classes; grey real windows, coloured
    generated ones (``per_class`` of each), in engineering units."""
    n_tags, n_cls = min(len(tags), most_tags), len(class_names)
    fig, axes = plt.subplots(n_tags, n_cls, figsize=(3.2 * n_cls, 1.8 * n_tags),
                             squeeze=False, sharex=True)
    for j, name in enumerate(class_names):
        r, f = real[real_c == j][:per_class], fake[fake_c == j][:per_class]
        for i in range(n_tags):
            ax = axes[i][j]
            for w in r:
                ax.plot(w[:, i], color="0.5", lw=0.8)
            for w in f:
                ax.plot(w[:, i], color="tab:red", lw=0.8, alpha=0.8)
            if i == 0:
                ax.set_title(f"{name} (grey real, red generated)", fontsize=8)
            if j == 0:
                ax.set_ylabel(tags[i], fontsize=8)
            ax.tick_params(labelsize=7)
    return _save(fig, path)


def pca_plot(real: np.ndarray, real_c: np.ndarray, fake: np.ndarray, fake_c: np.ndarray,
             class_names: list[str], path: Path, title: str) -> Path:
    """PCA fitted on the real windows (flattened); dots real, crosses generated."""
    from sklearn.decomposition import PCA

    pca = PCA(2).fit(real.reshape(len(real), -1))
    pr, pf = pca.transform(real.reshape(len(real), -1)), pca.transform(fake.reshape(len(fake),
                                                                                   -1))
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for j, name in enumerate(class_names):
        color = f"C{j % 10}"
        ax.scatter(*pr[real_c == j].T, s=8, color=color, alpha=0.5, label=f"{name} real")
        ax.scatter(*pf[fake_c == j].T, s=12, color=color, marker="x", alpha=0.7,
                   label=f"{name} generated")
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    ax.legend(fontsize=7)
    return _save(fig, path)


def interpolation_strip(a: np.ndarray, b: np.ndarray, path_windows: np.ndarray,
                        tags: list[str], path: Path, title: str, most_tags: int = 4) -> Path:
    """One panel per tag: real window ``a`` (black) and ``b`` (grey, dashed), and the windows
    decoded along the latent line between them, coloured from a to b."""
    n_tags = min(len(tags), most_tags)
    fig, axes = plt.subplots(1, n_tags, figsize=(3.2 * n_tags, 2.6), squeeze=False)
    colors = plt.cm.viridis(np.linspace(0, 1, len(path_windows)))
    for i, ax in enumerate(axes[0]):
        for w, color in zip(path_windows, colors, strict=True):
            ax.plot(w[:, i], color=color, lw=1)
        ax.plot(a[:, i], color="black", lw=1.5)
        ax.plot(b[:, i], color="0.5", lw=1.5, ls="--")
        ax.set_title(tags[i], fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)
