"""Image quality control at the edge: camera frames (JPEG/PNG bytes) → OK/NOK verdict, defect
class, defect area and bounding boxes, and an alarm when too many parts fail.

Pillow + numpy + LiteRT only (no OpenCV, no TensorFlow). :func:`decode_image` and
:func:`to_input` are also what training uses to read its images, so a model sees at the edge
exactly the pixels it was trained on.
"""

from __future__ import annotations

import io
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge_runtime.alarms import AlarmLogic
from edge_runtime.bundle import Bundle, ImageSpec, ThresholdSpec
from edge_runtime.interpreter import EdgeModel
from edge_runtime.payloads import iso_ms
from edge_runtime.pipelines import Output

FORMATS = ("JPEG", "PNG")


class ImageError(ValueError):
    """A frame that cannot be used; ``reason`` is the counter label."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 10_000_000
    max_pixels: int = 25_000_000


def decode_image(payload: bytes, channels: int = 1,
                 limits: ImageLimits = ImageLimits()) -> Image.Image:  # noqa: B008
    """Decode a JPEG/PNG fully (a truncated file fails here, not later), as L or RGB.
    Size limits are checked before any pixel is decoded (decompression bombs)."""
    if not payload:
        raise ImageError("image_empty")
    if len(payload) > limits.max_bytes:
        raise ImageError("image_too_large", f"{len(payload)} bytes > {limits.max_bytes}")
    try:
        img = Image.open(io.BytesIO(payload))
        if img.format not in FORMATS:
            raise ImageError("image_format", str(img.format))
        if img.width * img.height > limits.max_pixels:
            raise ImageError("image_too_large", f"{img.width}x{img.height} pixels")
        img.load()
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError("image_corrupt", str(exc)) from exc
    return img.convert("L" if channels == 1 else "RGB")


def placement(width: int, height: int, spec: ImageSpec) -> tuple[int, int, int, int]:
    """Where the frame lands in the model input: (left, top, new_width, new_height)."""
    if spec.resize == "stretch":
        return 0, 0, spec.width, spec.height
    scale = min(spec.width / width, spec.height / height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    return (spec.width - w) // 2, (spec.height - h) // 2, w, h


def to_input(img: Image.Image, spec: ImageSpec) -> np.ndarray:
    """Resize (stretch or letterbox with the mean grey) and normalise → (H, W, C) float32."""
    left, top, w, h = placement(img.width, img.height, spec)
    resized = img.resize((w, h), Image.BILINEAR)
    if (w, h) != (spec.width, spec.height):
        fill = int(round(spec.mean * 255))
        canvas = Image.new(img.mode, (spec.width, spec.height), fill if img.mode == "L"
                           else (fill,) * 3)
        canvas.paste(resized, (left, top))
        resized = canvas
    x = np.asarray(resized, dtype=np.float32) / 255.0
    if x.ndim == 2:
        x = x[..., None]
    return (x - spec.mean) / spec.std


def mask_to_frame(mask: np.ndarray, width: int, height: int, spec: ImageSpec) -> np.ndarray:
    """A model-size boolean mask → the original frame's size (nearest neighbour)."""
    left, top, w, h = placement(width, height, spec)
    crop = mask[top : top + h, left : left + w].astype(np.uint8) * 255
    return np.asarray(Image.fromarray(crop).resize((width, height), Image.NEAREST)) >= 128


@dataclass
class Region:
    area: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (inclusive), frame pixels


def connected_regions(mask: np.ndarray) -> list[Region]:
    """8-connected regions of a boolean mask, largest first: run-length union-find in numpy
    and a little Python (a few runs per row), so the gateway needs no scipy or OpenCV."""
    parent: list[int] = []
    runs: list[tuple[int, int, int]] = []  # (row, start, end exclusive)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    previous: list[int] = []
    for r, row in enumerate(np.asarray(mask, dtype=bool)):
        edges = np.diff(np.concatenate(([0], row.view(np.uint8), [0])).astype(np.int8))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        current = []
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            idx = len(runs)
            runs.append((r, s, e))
            parent.append(idx)
            for j in previous:  # touching the run above, diagonals included
                _, ps, pe = runs[j]
                if ps <= e and s <= pe:
                    parent[find(idx)] = find(j)
            current.append(idx)
        previous = current
    regions: dict[int, list[int]] = {}
    for i, (r, s, e) in enumerate(runs):
        acc = regions.setdefault(find(i), [0, s, r, e - 1, r])
        acc[0] += e - s
        acc[1], acc[2] = min(acc[1], s), min(acc[2], r)
        acc[3], acc[4] = max(acc[3], e - 1), max(acc[4], r)
    found = [Region(a[0], (a[1], a[2], a[3], a[4])) for a in regions.values()]
    return sorted(found, key=lambda g: -g.area)


def mask_png(mask: np.ndarray) -> bytes:
    """A boolean mask as an 8-bit PNG (defect = 255), the debug "evidence" payload."""
    out = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(out, format="PNG")
    return out.getvalue()


@dataclass
class QcSettings:
    nok_window: int = 50  # parts in the NOK-rate window
    nok_rate_limit: float = 0.2  # alarm when the NOK share of the window reaches this
    clear_ratio: float = 0.5  # clears below ratio x limit (deadband)
    nok_threshold: float = 0.5  # classifier: NOK when p(NOK) >= this
    min_defect_px: int = 20  # segmenter alone: NOK when the defect area reaches this
    max_boxes: int = 20
    debug_mask: bool = False  # publish the mask PNG on a debug topic
    limits: ImageLimits = field(default_factory=ImageLimits)


class ImagePipeline:
    """One camera: frames in, verdicts (and NOK-rate alarms) out, as :class:`Output` records.

    With a classifier the verdict and class come from it; with a segmenter the defect area,
    region count and boxes come from the mask (and decide OK/NOK when there is no classifier).
    """

    def __init__(self, name: str, classifier: Bundle | None = None,
                 segmenter: Bundle | None = None, settings: QcSettings | None = None,
                 threads: int = 1):
        if classifier is None and segmenter is None:
            raise ValueError(f"camera {name!r}: needs a classifier and/or a segmenter bundle")
        self.name = name
        self.settings = settings or QcSettings()
        self.classifier = TaskModel(classifier, "classifier", threads) if classifier else None
        self.segmenter = TaskModel(segmenter, "segmenter", threads) if segmenter else None
        s = self.settings
        self.recent: deque[bool] = deque(maxlen=s.nok_window)
        self.alarm = AlarmLogic(ThresholdSpec(
            raise_at=s.nok_rate_limit, clear_at=s.nok_rate_limit * s.clear_ratio,
            rule=f"NOK share of the last {s.nok_window} parts"))
        self.alarm_id = f"{name}.nok_rate"
        self.rejected: Counter[str] = Counter()
        self.parts = 0
        self.inference_s: list[float] = []  # the daemon drains this into its histogram

    def process(self, payload: bytes, received_s: float | None = None) -> list[Output]:
        """One frame → outputs; a bad frame gives a 'rejected' record, never an exception."""
        received_s = time.time() if received_s is None else received_s
        try:
            channels = (self.classifier or self.segmenter).spec.channels
            img = decode_image(payload, channels, self.settings.limits)
            verdict = self.inspect(img)  # a frame a task cannot use (its size) is rejected
        except ImageError as exc:
            self.rejected[exc.reason] += 1
            return [Output("inference", {"camera": self.name, "status": "rejected",
                                         "reason": exc.reason, "bytes": len(payload),
                                         "received": iso_ms(received_s)})]
        verdict |= {"camera": self.name, "status": "ok", "received": iso_ms(received_s)}
        outputs = [Output("inference", verdict)]
        if self.settings.debug_mask and "mask" in verdict:
            outputs.append(Output("debug", {"png": mask_png(verdict["mask"])}))
        verdict.pop("mask", None)
        outputs.extend(self._nok_rate(verdict["verdict"] == "NOK", received_s))
        return outputs

    def inspect(self, img: Image.Image) -> dict[str, Any]:
        """Verdict of one decoded frame (JSON-ready, plus the frame-size 'mask' if any)."""
        start = time.perf_counter()
        out: dict[str, Any] = {"width": img.width, "height": img.height}
        for model in (self.classifier, self.segmenter):  # edge_runtime/tasks/<task>.py
            if model:
                out |= model.task.read(model, img, self.settings)
        from_mask = out.pop("verdict_from_mask", None)
        if not self.classifier:
            out["verdict"] = from_mask
        elapsed = time.perf_counter() - start
        self.inference_s.append(elapsed)
        out["inference_ms"] = round(1000 * elapsed, 2)
        out["models"] = {m.role: m.version for m in (self.classifier, self.segmenter) if m}
        return out

    def _nok_rate(self, nok: bool, received_s: float) -> list[Output]:
        self.parts += 1
        self.recent.append(nok)
        if len(self.recent) < self.recent.maxlen:
            return []  # no rate before the window is full
        rate = float(np.mean(self.recent))
        event = self.alarm.update(rate)
        if event is None:
            return []
        limit = self.settings.nok_rate_limit
        return [Output("alarm", {"event": event, "alarm_id": self.alarm_id, "camera": self.name,
                                 "nok_rate": rate, "limit": limit,
                                 "window_parts": len(self.recent), "score": rate,
                                 "threshold": limit, "priority": self.alarm.priority(rate),
                                 "ts": iso_ms(received_s)}, alarm_id=self.alarm_id)]


class FolderWatcher:
    """For cameras that drop files: a new ``*.jpg|*.jpeg|*.png`` is taken once its size held
    still for one poll (the camera finished writing), then moved to ``done/`` so it is never
    read twice. At most ``max_bytes + 1`` bytes are read: an oversized file is still rejected
    (and counted) by the pipeline without filling memory."""

    SUFFIXES = (".jpg", ".jpeg", ".png")

    def __init__(self, folder: Path, max_bytes: int):
        self.folder, self.max_bytes = Path(folder), max_bytes
        self.done = self.folder / "done"
        self.done.mkdir(parents=True, exist_ok=True)
        self._sizes: dict[Path, int] = {}

    def poll(self) -> list[tuple[Path, bytes]]:
        ready, sizes = [], {}
        for path in sorted(self.folder.iterdir()):
            if not path.is_file() or path.suffix.lower() not in self.SUFFIXES:
                continue
            try:
                size = path.stat().st_size
                if self._sizes.get(path) != size:
                    sizes[path] = size  # still being written, or new: look again next poll
                    continue
                with path.open("rb") as handle:
                    data = handle.read(self.max_bytes + 1)
                path.replace(self.done / path.name)
            except OSError:  # vanished or unreadable: try again next poll
                continue
            ready.append((self.done / path.name, data))
        self._sizes = sizes
        return ready


def camera_pipeline(camera) -> ImagePipeline:
    """An :class:`ImagePipeline` from an ``edge_runtime.config.CameraConfig``."""
    settings = QcSettings(
        nok_window=camera.nok_window, nok_rate_limit=camera.nok_rate_limit,
        nok_threshold=camera.nok_threshold, min_defect_px=camera.min_defect_px,
        debug_mask=camera.debug_mask,
        limits=ImageLimits(max_bytes=camera.max_bytes, max_pixels=camera.max_pixels))
    bundles = []
    try:
        for path in (camera.classifier, camera.segmenter):
            bundles.append(Bundle.load(path) if path is not None else None)
        return ImagePipeline(camera.name, *bundles, settings, camera.threads)
    finally:  # the interpreters are built: a zip bundle's temporary folder can go
        for bundle in bundles:
            if bundle is not None:
                bundle.release()


class TaskModel:
    """An image bundle's model, spec and task module (``edge_runtime/tasks/<task>.py``)."""

    def __init__(self, bundle: Bundle, role: str, threads: int):
        from edge_runtime.tasks import edge_task

        m = bundle.manifest
        task = edge_task(m.task)
        if getattr(task, "ROLE", None) != role or m.image is None:
            raise ValueError(f"{bundle.root}: not an image {role} bundle")
        self.role, self.spec, self.version, self.task = role, m.image, m.version, task
        self.model = EdgeModel(bundle.model_path, num_threads=threads)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x[None])[0][0]
