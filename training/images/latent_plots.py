"""Latent-space pictures of the image generators: a 2-D PCA of real vs generated images
(on pixels, or on the feature classifier's features) coloured by class, and interpolation
strips through an image CVAE's latent space between two real images of one class.

A strip shows whether the latent space is smooth between two real tiles (every step a
plausible tile of the class) or whether the decoder jumps; the PCA whether the generated
images sit where the real ones of their class sit, or in a clump of their own."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from training import generative_plots as plots  # noqa: E402
from training.images.generators import to_uint8  # noqa: E402


def pca(real: np.ndarray, real_c: np.ndarray, fake: np.ndarray, fake_c: np.ndarray,
        names: list[str], path: Path, title: str) -> Path:
    """PCA fitted on the real rows (images or feature vectors, flattened); dots real, crosses
    generated, one colour per class."""
    return plots.pca_plot(real, real_c, fake, fake_c, names, path, title)


def pairs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """Per class with two images or more: (class, its first image, its last image)."""
    out = []
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        if len(idx) > 1:
            out.append((int(k), int(idx[0]), int(idx[-1])))
    return out


def interpolation_strips(model, x: np.ndarray, c: np.ndarray, names: list[str], path: Path,
                         steps: int = 7) -> Path | None:
    """One row per class: real image a, ``steps`` images decoded along the latent line from
    a to b (the model's ``interpolate``), real image b; ``None`` when no class has two
    images. Images in [-1, 1]."""
    rows = pairs(c)
    if not rows:
        return None
    cols = steps + 2
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.0 * cols, 1.15 * len(rows)),
                             squeeze=False)
    for r, (k, ia, ib) in enumerate(rows):
        line = model.interpolate(x[ia], x[ib], k, steps)
        for j, (image, what) in enumerate([(x[ia], "real a"), *((im, "") for im in line),
                                           (x[ib], "real b")]):
            ax = axes[r][j]
            ax.imshow(to_uint8(image)[..., 0], cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and what:
                ax.set_title(what, fontsize=7)
        axes[r][0].set_ylabel(names[k], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
