"""Why did the model say so? Grad-CAM heat maps over classifier decisions, confusion
matrices and segmentation overlays, as PNG files an engineer can scan."""

from __future__ import annotations

from pathlib import Path

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402


def gradcam(model: keras.Model, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) of ``classes`` on the layer ``gradcam_target``, using
    the logits (pre-softmax); heat maps (N, H, W) in [0, 1] at the input size."""
    import tensorflow as tf

    grad_model = keras.Model(model.inputs, [model.get_layer("gradcam_target").output,
                                            model.get_layer("logits").output])
    maps = []
    for start in range(0, len(x), 16):
        xb = tf.convert_to_tensor(x[start : start + 16])
        cb = classes[start : start + 16]
        with tf.GradientTape() as tape:
            features, logits = grad_model(xb, training=False)
            score = tf.reduce_sum(logits * tf.one_hot(cb, logits.shape[-1]), axis=1)
        grads = tape.gradient(score, features)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1)).numpy()
        maps.extend(cam)
    size = (x.shape[2], x.shape[1])
    out = []
    for cam in maps:
        cam = cam / cam.max() if cam.max() > 0 else cam
        out.append(np.asarray(Image.fromarray(cam.astype(np.float32)).resize(size,
                                                                             Image.BILINEAR)))
    return np.clip(np.stack(out), 0, 1)


def save_gradcam_overlays(model, x, labels, probs, class_names: list[str], out_dir: Path,
                          sample: int = 8, seed: int = 0) -> list[Path]:
    """Overlays for a random sample of images and for every misclassification."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    rng = np.random.default_rng(seed)
    sampled = rng.choice(len(x), size=min(sample, len(x)), replace=False)
    pick = np.unique(np.concatenate([sampled, wrong])).astype(int)
    cams = gradcam(model, x[pick], pred[pick])
    paths = []
    for i, cam in zip(pick, cams, strict=True):
        tag = "wrong" if pred[i] != labels[i] else "ok"
        path = out_dir / f"{tag}_{i:04d}_{class_names[labels[i]]}_as_{class_names[pred[i]]}.png"
        fig, axes = plt.subplots(1, 2, figsize=(6, 3.4))
        axes[0].imshow(x[i, ..., 0], cmap="gray")
        axes[1].imshow(x[i, ..., 0], cmap="gray")
        axes[1].imshow(cam, cmap="jet", alpha=0.4, vmin=0, vmax=1)
        for ax in axes:
            ax.axis("off")
        fig.suptitle(f"true {class_names[labels[i]]}, predicted {class_names[pred[i]]} "
                     f"({probs[i, pred[i]]:.2f})", fontsize=9)
        paths.append(_save(fig, path))
    return paths


def save_confusion_matrix(labels, pred, class_names: list[str], path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ConfusionMatrixDisplay.from_predictions(
        labels, pred, labels=list(range(len(class_names))), display_labels=class_names, ax=ax,
        xticks_rotation=45, colorbar=False)
    ax.set_title(title)
    return _save(fig, path)


def save_segmentation_overlays(x, masks, probs, out_dir: Path, threshold: float = 0.5,
                               limit: int = 8) -> list[Path]:
    """Image, true mask outline (green), predicted mask (red) for defective images."""
    out_dir.mkdir(parents=True, exist_ok=True)
    defective = np.flatnonzero(masks.reshape(len(masks), -1).max(axis=1) > 0)[:limit]
    paths = []
    for i in defective:
        pred = probs[i, ..., 0] >= threshold
        truth = masks[i, ..., 0] >= 0.5
        inter, union = (pred & truth).sum(), (pred | truth).sum()
        fig, ax = plt.subplots(figsize=(3.5, 3.8))
        ax.imshow(x[i, ..., 0], cmap="gray")
        ax.imshow(np.ma.masked_where(~pred, pred), cmap="autumn", alpha=0.45)
        ax.contour(truth, levels=[0.5], colors="lime", linewidths=0.8)
        ax.set_title(f"IoU {inter / max(union, 1):.2f} (green: truth, red: predicted)",
                     fontsize=8)
        ax.axis("off")
        paths.append(_save(fig, out_dir / f"seg_{i:04d}.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
