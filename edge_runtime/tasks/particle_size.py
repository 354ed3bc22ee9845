"""Task ``particle_size`` at the edge: a camera's particle sizer (it takes the camera's
``segmenter`` slot). The frame is preprocessed as in training, the U-Net gives per-pixel
background/interior/boundary scores, and ``edge_runtime.particles`` turns them into the
payload: count, ECDs in µm, D10/D50/D90, span, aspect ratios, histogram and the calibration
used. A frame of another size than the model's is rejected (and counted): resizing would
change the µm per pixel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from edge_runtime.imaging import ImageError
from edge_runtime.particles import preprocess, size_particles

if TYPE_CHECKING:
    from edge_runtime.imaging import QcSettings, TaskModel

ROLE = "segmenter"


def read(model: TaskModel, img: Image.Image, settings: QcSettings) -> dict[str, Any]:
    spec = model.spec
    if (img.width, img.height) != (spec.width, spec.height):
        raise ImageError("image_size", f"{img.width}x{img.height}, the model takes "
                         f"{spec.width}x{spec.height} (the calibration is per pixel)")
    probs = model.run(preprocess(np.asarray(img), spec.flatten_px))
    fields, labels = size_particles(probs, spec.um_per_px)
    return fields | {"mask": labels > 0}
