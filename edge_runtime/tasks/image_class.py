"""Task ``image_class`` at the edge: a camera's classifier. Its class scores give the
frame's ``class``, ``confidence``, ``p_nok`` (1 − p(OK class)) and the OK/NOK ``verdict``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from edge_runtime.imaging import to_input

if TYPE_CHECKING:
    from edge_runtime.imaging import QcSettings, TaskModel

ROLE = "classifier"


def read(model: TaskModel, img: Image.Image, settings: QcSettings) -> dict[str, Any]:
    spec = model.spec
    probs = model.run(to_input(img, spec))
    best = int(np.argmax(probs))
    ok = spec.class_names.index(spec.ok_class) if spec.ok_class else -1
    p_nok = float(1.0 - probs[ok]) if ok >= 0 else float("nan")
    return {"class": spec.class_names[best], "confidence": round(float(probs[best]), 4),
            "p_nok": round(p_nok, 4),
            "verdict": "NOK" if p_nok >= settings.nok_threshold else "OK"}
