"""A tiny synthetic defect set in the magnetic-tile layout, for tests and smoke runs:
textured grey backgrounds of varying size; dark blobs and thin bright scratches with masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("MT_Blob", "MT_Free", "MT_Scratch")


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    base = 120 + 30 * np.sin(xx / rng.uniform(6, 14) + rng.uniform(0, 6)) * 0.3
    base = base + rng.uniform(-20, 20) * yy / height + rng.normal(0, 8, (height, width))
    return base


def defect_image(rng: np.random.Generator, kind: str, height: int, width: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8, mask uint8 0/255) of one class."""
    img = texture(rng, height, width)
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    if kind == "MT_Blob":
        r = rng.uniform(0.1, 0.16) * min(height, width)
        cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        shade = -90
    elif kind == "MT_Scratch":
        x0, y0 = rng.uniform(0, width * 0.3), rng.uniform(0, height)
        x1, y1 = rng.uniform(width * 0.7, width), rng.uniform(0, height)
        draw.line([x0, y0, x1, y1], fill=255, width=int(max(4, min(height, width) * 0.06)))
        shade = 80
    else:
        shade = 0
    m = np.asarray(mask)
    img = np.where(m > 0, img + shade, img)
    return np.clip(img, 0, 255).astype(np.uint8), m


def write_set(root: Path, per_class: int = 16, seed: int = 0, free_extra: int = 0) -> Path:
    """Write ``<root>/<class>/Imgs/<stem>.jpg|.png``; defect-free gets ``free_extra`` more."""
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        folder = Path(root) / kind / "Imgs"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class + (free_extra if kind == "MT_Free" else 0)):
            h, w = int(rng.integers(72, 110)), int(rng.integers(60, 130))
            img, mask = defect_image(rng, kind, h, w)
            Image.fromarray(img).save(folder / f"s{seed}_{i:03d}.jpg", quality=92)
            Image.fromarray(mask).save(folder / f"s{seed}_{i:03d}.png")
    return Path(root)
