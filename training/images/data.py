"""Folders of grey images with masks → fixed-size arrays, a stratified validation split, and
augmented, class-balanced batches.

Layout (as the magnetic-tile set): ``<root>/<class>/Imgs/<stem>.jpg`` with ``<stem>.png`` masks
(defect = 255; binarised at 128). A ``split.csv`` (``class,stem,split``) in the root, when
present, restricts the training part to ``split == train``. Images are read with the gateway's
own :func:`edge_runtime.imaging.decode_image` / :func:`to_input`.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from PIL import Image
from scipy import ndimage

from edge_runtime.bundle import ImageSpec
from edge_runtime.imaging import ImageLimits, decode_image, to_input

OK_CLASS = "MT_Free"


@dataclass
class Item:
    image: Path
    mask: Path | None
    label: int


@dataclass
class ImageSet:
    items: list[Item]
    class_names: list[str]

    @property
    def labels(self) -> np.ndarray:
        return np.array([i.label for i in self.items], dtype=np.int64)

    def subset(self, index) -> ImageSet:
        return ImageSet([self.items[i] for i in index], self.class_names)


def scan(root: Path, split: str | None = "train", class_names: list[str] | None = None
         ) -> ImageSet:
    """Every ``<class>/Imgs/*.jpg`` (sorted), limited to ``split`` when split.csv says so."""
    root = Path(root)
    names = class_names or sorted(p.name for p in root.iterdir() if (p / "Imgs").is_dir())
    if not names:
        raise FileNotFoundError(f"{root}: no <class>/Imgs folders")
    allowed = _split_stems(root / "split.csv", split) if split else None
    items = []
    for label, name in enumerate(names):
        for image in sorted((root / name / "Imgs").glob("*.jpg")):
            if allowed is not None and (name, image.stem) not in allowed:
                continue
            mask = image.with_suffix(".png")
            items.append(Item(image, mask if mask.is_file() else None, label))
    return ImageSet(items, names)


def _split_stems(path: Path, split: str) -> set[tuple[str, str]] | None:
    if not path.is_file():
        return None
    with path.open() as handle:
        return {(r["class"], r["stem"]) for r in csv.DictReader(handle) if r["split"] == split}


def stratified_split(labels: np.ndarray, fraction: float, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: ``fraction`` of every class (at least one) goes to validation."""
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        val.extend(idx[: max(1, round(len(idx) * fraction))].tolist())
    val_set = set(val)
    train = np.array([i for i in range(len(labels)) if i not in val_set])
    return train, np.array(sorted(val_set))


def load_arrays(data: ImageSet, spec: ImageSpec) -> tuple[np.ndarray, np.ndarray]:
    """x (N, H, W, C) normalised as at the edge; masks (N, H, W, 1) float 0/1."""
    limits = ImageLimits(max_bytes=1 << 30, max_pixels=1 << 30)
    xs, ms = [], []
    for item in data.items:
        img = decode_image(item.image.read_bytes(), spec.channels, limits)
        xs.append(to_input(img, spec))
        ms.append(_mask(item, img.size, spec))
    return np.stack(xs).astype(np.float32), np.stack(ms).astype(np.float32)


def ok_class(names: list[str]) -> str:
    """The defect-free class: ``MT_Free`` where present, else the first class."""
    return OK_CLASS if OK_CLASS in names else names[0]


def load_splits(spec: ImageSpec, train_set: ImageSet, val_set: ImageSet, test_set: ImageSet,
                separate_test: bool) -> tuple[ImageSpec, Split, Split, Split]:
    """Arrays for every split; mean/std from the training images only (and in the spec)."""
    plain = spec.model_copy(update={"mean": 0.0, "std": 1.0})
    arrays = [load_arrays(s, plain) for s in (train_set, val_set)]
    arrays.append(load_arrays(test_set, plain) if separate_test else arrays[1])
    mean, std = float(arrays[0][0].mean()), float(arrays[0][0].std())
    spec = spec.model_copy(update={"mean": mean, "std": std})
    splits = [Split((x - mean) / std, s.labels, m)
              for (x, m), s in zip(arrays, (train_set, val_set, test_set), strict=True)]
    return spec, *splits


@dataclass
class Split:
    """Images normalised by the spec, labels and masks (N, H, W, 1)."""

    x: np.ndarray
    labels: np.ndarray
    masks: np.ndarray


def _mask(item: Item, size: tuple[int, int], spec: ImageSpec) -> np.ndarray:
    """Binarise at 128 in the frame, then resize like the image (defect where ≥ 0.5)."""
    if item.mask is None:
        return np.zeros((spec.height, spec.width, 1), np.float32)
    m = np.asarray(Image.open(item.mask).convert("L"), dtype=np.uint8) >= 128
    if m.shape[::-1] != size:  # a mask not matching its image: resize it to the image
        m = np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(size)) >= 128
    plain = spec.model_copy(update={"mean": 0.0, "std": 1.0})
    frame = Image.fromarray(m.astype(np.uint8) * 255)
    return (to_input(frame, plain) >= 0.5).astype(np.float32)


def coarse_masks(masks: np.ndarray, stride: int) -> np.ndarray:
    """(N, H, W, 1) masks → (N, H/stride, W/stride, 1): a cell is defective if any pixel is."""
    n, h, w, _ = masks.shape
    if h % stride or w % stride:
        raise ValueError(f"mask {h}x{w} is not a multiple of the feature stride {stride}")
    return masks.reshape(n, h // stride, stride, w // stride, stride, 1).max(axis=(2, 4))


def fingerprint(data: ImageSet) -> str:
    digest = hashlib.sha256()
    for item in data.items:
        digest.update(f"{item.label}:{item.image.name}:{item.image.stat().st_size}".encode())
    return digest.hexdigest()


@dataclass
class Augment:
    """Random flips, a small rotation, a random crop (zoom in), brightness and contrast."""

    flip: bool = True
    rotate_deg: float = 5.0
    crop: float = 0.1  # crop away up to this share of each side length
    brightness: float = 0.08  # ± in units of pixel/255
    contrast: float = 0.1  # × (1 ± contrast) around the image mean

    def __call__(self, x: np.ndarray, m: np.ndarray, rng: np.random.Generator, std: float
                 ) -> tuple[np.ndarray, np.ndarray]:
        h, w = x.shape[:2]
        angle = np.deg2rad(rng.uniform(-self.rotate_deg, self.rotate_deg))
        zoom = 1.0 - rng.uniform(0, self.crop)
        fy = -1.0 if self.flip and rng.random() < 0.5 else 1.0
        fx = -1.0 if self.flip and rng.random() < 0.5 else 1.0
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        matrix = rot @ np.diag([fy * zoom, fx * zoom])
        shift = (1 - zoom) * np.array([h, w]) * rng.uniform(-0.5, 0.5, 2)
        centre = np.array([h - 1, w - 1]) / 2
        offset = centre - matrix @ centre + shift
        fill = float(x.mean())
        x = np.stack([ndimage.affine_transform(x[..., c], matrix, offset, order=1,
                                               mode="constant", cval=fill)
                      for c in range(x.shape[-1])], axis=-1)
        m = ndimage.affine_transform(m[..., 0], matrix, offset, order=0, mode="constant")[..., None]
        mean = x.mean()
        x = (x - mean) * (1 + rng.uniform(-self.contrast, self.contrast)) + mean
        x = x + rng.uniform(-self.brightness, self.brightness) / std
        return x.astype(np.float32), m.astype(np.float32)


class Batches(keras.utils.PyDataset):
    """Augmented batches for ``fit``: ``(x, y, sample_weight)``.

    ``target`` is 'labels' (classifier; weight = the "balanced" class weight raised to
    ``weight_power``: 1 = fully balanced, 0.5 = softened, 0 = none; with ``mask_stride`` the
    targets are ``(labels, masks max-pooled by mask_stride)``) or 'masks' (segmenter; a
    ``defect_share`` of the draws are defective images).
    """

    def __init__(self, x, labels, masks, target: str, batch_size: int, std: float,
                 augment: Augment | None, seed: int = 0, weight_power: float = 0.5,
                 patch: int = 0, defect_share: float = 0.5, mask_stride: int = 0):
        super().__init__()
        self.patch, self.mask_stride = patch, mask_stride
        self.x, self.labels, self.masks, self.target = x, labels, masks, target
        self.batch_size, self.std, self.augment = batch_size, std, augment
        self.seed, self.epoch = seed, -1
        counts = np.bincount(labels, minlength=labels.max() + 1).astype(float)
        weights = np.where(counts > 0,
                           len(labels) / (len(counts[counts > 0]) * np.maximum(counts, 1)), 0.0)
        self.class_weight = weights**weight_power
        defective = masks.reshape(len(masks), -1).max(axis=1) > 0
        share = defect_share if defective.any() and (~defective).any() else 0.5
        p = np.where(defective, share / max(defective.sum(), 1),
                     (1 - share) / max((~defective).sum(), 1))
        self.draw_p = p / p.sum()
        self.start_epoch(0)

    def __len__(self) -> int:
        return int(np.ceil(len(self.x) / self.batch_size))

    def start_epoch(self, epoch: int) -> None:
        """Order and augmentation of ``epoch`` from (seed, epoch) alone: a fit resumed at
        epoch e draws what the uninterrupted fit drew."""
        if epoch == self.epoch:
            return
        self.epoch, n = epoch, len(self.x)
        self.rng = np.random.default_rng([self.seed, epoch])
        self.order = (self.rng.permutation(n) if self.target == "labels"
                      else self.rng.choice(n, size=n, p=self.draw_p))

    def on_epoch_end(self) -> None:
        self.start_epoch(self.epoch + 1)

    def __getitem__(self, i: int):
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        xs, ms = self.x[idx], self.masks[idx]
        if self.augment is not None:
            pairs = [self.augment(x, m, self.rng, self.std) for x, m in zip(xs, ms, strict=True)]
            xs = np.stack([p[0] for p in pairs])
            ms = np.stack([p[1] for p in pairs])
        if self.patch:
            xs, ms = self._patches(xs, ms)
        if self.target == "labels":
            y = self.labels[idx]
            w = self.class_weight[y].astype(np.float32)
            if self.mask_stride:
                return xs, (y, coarse_masks(ms, self.mask_stride)), w
            return xs, y, w
        return xs, ms, np.ones(len(idx), np.float32)

    def _patches(self, xs: np.ndarray, ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Segmenter: square crops (4× cheaper steps at half the side), centred near a random
        defect pixel when the image has one; the U-Net is fully convolutional, so it still
        runs on the whole frame at inference."""
        p, (h, w) = self.patch, xs.shape[1:3]
        out_x, out_m = [], []
        for x, m in zip(xs, ms, strict=True):
            ys, xs_ = np.nonzero(m[..., 0] > 0)
            if len(ys):
                k = self.rng.integers(len(ys))
                cy = ys[k] + self.rng.integers(-p // 4, p // 4 + 1)
                cx = xs_[k] + self.rng.integers(-p // 4, p // 4 + 1)
            else:
                cy, cx = self.rng.integers(0, h), self.rng.integers(0, w)
            top = int(np.clip(cy - p // 2, 0, h - p))
            left = int(np.clip(cx - p // 2, 0, w - p))
            out_x.append(x[top : top + p, left : left + p])
            out_m.append(m[top : top + p, left : left + p])
        return np.stack(out_x), np.stack(out_m)
