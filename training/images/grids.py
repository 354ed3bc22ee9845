"""Pictures of image generators: a grid of real and generated images per class (PNG), and
the generated images written one PNG each (``procedge generate`` on an image run)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from training.images.generators import to_uint8  # noqa: E402


def image_grid(real: np.ndarray, real_c: np.ndarray, fake: np.ndarray, fake_c: np.ndarray,
               class_names: list[str], path: Path, per_class: int = 8) -> Path:
    """One row pair per class: ``per_class`` real images (left label "real"), then as many
    generated ones; images in [-1, 1]."""
    rows = 2 * len(class_names)
    fig, axes = plt.subplots(rows, per_class, figsize=(1.1 * per_class, 1.2 * rows),
                             squeeze=False)
    for j, name in enumerate(class_names):
        for r, (images, labels, what) in enumerate(((real, real_c, "real"),
                                                    (fake, fake_c, "generated"))):
            pick = images[labels == j][:per_class]
            for i, ax in enumerate(axes[2 * j + r]):
                ax.axis("off")
                if i < len(pick):
                    ax.imshow(to_uint8(pick[i])[..., 0], cmap="gray", vmin=0, vmax=255)
            axes[2 * j + r][0].set_title(f"{name} {what}", fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_pngs(images: np.ndarray, classes: np.ndarray, class_names: list[str], out: Path,
               info: dict) -> Path:
    """``<out>/<class>_<i>.png`` (8-bit grey) and ``<out>/synthetic.json`` (``synthetic:
    true``, the run, family, seed, and each file's class); returns the JSON's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for i, (image, c) in enumerate(zip(to_uint8(images), classes, strict=True)):
        name = f"{class_names[c]}_{i:05d}.png"
        Image.fromarray(image[..., 0], mode="L").save(out / name)
        files[name] = class_names[c]
    side = out / "synthetic.json"
    side.write_text(json.dumps(info | {"files": files}, indent=2) + "\n")
    return side
