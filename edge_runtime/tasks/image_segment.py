"""Task ``image_segment`` at the edge: a camera's segmenter. Its mask, mapped back onto the
frame, gives ``defect_area_px`` / ``defect_area_pct``, the ``regions`` count and their
``boxes``; the frame-size ``mask`` rides along for the debug topic and is never published as
JSON. Without a classifier on the camera the mask decides the verdict (``min_defect_px``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PIL import Image

from edge_runtime.imaging import connected_regions, mask_to_frame, to_input

if TYPE_CHECKING:
    from edge_runtime.imaging import QcSettings, TaskModel

ROLE = "segmenter"


def read(model: TaskModel, img: Image.Image, settings: QcSettings) -> dict[str, Any]:
    spec = model.spec
    prob = model.run(to_input(img, spec))[..., 0]
    mask = mask_to_frame(prob >= spec.mask_threshold, img.width, img.height, spec)
    regions = connected_regions(mask)
    area = int(mask.sum())
    return {"defect_area_px": area,
            "defect_area_pct": round(100.0 * area / mask.size, 3),
            "regions": len(regions),
            "boxes": [list(g.box) for g in regions[: settings.max_boxes]],
            "mask": mask,
            "verdict_from_mask": "NOK" if area >= settings.min_defect_px else "OK"}
