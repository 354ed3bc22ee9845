"""Which tags, and which steps of the window, an estimate leans on: saliency, integrated
gradients and permutation importance on the validation windows of a window model (a soft
sensor; a forecaster takes the same (N, L, F) input and is explained by its first output).
A classifier (a classification soft sensor, ``classes`` given) is explained through the
probability of the class it predicts for each window, and its permutation importance is the
rise in cross-entropy (and the drop in accuracy) on the validation labels.

- **saliency**: mean |∂y/∂x| over the windows, per time step × tag: where a small change
  moves the estimate most (local, cheap, noisy);
- **integrated gradients** (Sundararajan et al. 2017): the path integral of the gradient from
  a baseline to the window, times (window − baseline). The baseline is the training mean,
  which is 0 once scaled, so "what the estimate owes to this tag being away from its usual
  value". Attributions add up to f(window) − f(baseline) (completeness); the mean |IG| per
  step × tag is the map;
- **permutation importance**: the validation MSE (scaled target) when one tag's whole
  window is shuffled across windows, minus the unshuffled MSE — what the model loses without
  that tag, independent of gradients (it also sees through saturations that hide a gradient).

:func:`write` puts ``explain_saliency.png``, ``explain_ig.png`` (heat-maps tag × time) and
``explanations.json`` (per-tag totals, ranked) into the run directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from training.soft_class_references import cross_entropy

MAX_WINDOWS = 256  # validation windows explained: the maps settle well before this
IG_STEPS = 32  # Riemann steps of the integral (midpoint rule)
PERMUTATION_REPEATS = 3


def _outputs(model, x: tf.Tensor) -> tf.Tensor:
    """The model's outputs per window, flattened: (N, outputs)."""
    y = model(x, training=False)
    y = y[0] if isinstance(y, (list, tuple)) else y
    return tf.reshape(y, (tf.shape(y)[0], -1))


def _explained(model, x: tf.Tensor, classes: tf.Tensor | None = None) -> tf.Tensor:
    """The explained scalar per window: the model's first output (a soft sensor's estimate,
    a forecaster's first target at its first step), or with ``classes`` (one class index per
    window) that class's probability."""
    y = _outputs(model, x)
    return y[:, 0] if classes is None else tf.gather(y, classes, axis=1, batch_dims=1)


def gradients(model, x: np.ndarray, batch: int = 256,
              classes: np.ndarray | None = None) -> np.ndarray:
    """∂y/∂x for every window of ``x`` (N, L, F), in batches; ``classes``: see
    :func:`_explained`."""
    parts = []
    for start in range(0, len(x), batch):
        xb = tf.convert_to_tensor(x[start:start + batch], tf.float32)
        cb = None if classes is None else tf.constant(classes[start:start + batch], tf.int32)
        with tf.GradientTape() as tape:
            tape.watch(xb)
            y = _explained(model, xb, cb)
        parts.append(tape.gradient(y, xb).numpy())
    return np.concatenate(parts)


def saliency(model, x: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """Mean |∂y/∂x| over the windows: (L, F)."""
    return np.abs(gradients(model, x, classes=classes)).mean(axis=0)


def integrated_gradients(model, x: np.ndarray, baseline: np.ndarray | None = None,
                         steps: int = IG_STEPS, batch: int = 1024,
                         classes: np.ndarray | None = None) -> np.ndarray:
    """Integrated gradients of every window of ``x`` (N, L, F) from ``baseline`` (L, F;
    default zeros: the training mean in scaled units); (N, L, F). The path points of all
    windows go through the model in batches of ``batch``; with ``classes`` each window's
    path follows the probability of its own class."""
    x = np.asarray(x, np.float32)
    base = np.zeros(x.shape[1:], np.float32) if baseline is None else np.asarray(
        baseline, np.float32)
    alphas = ((np.arange(steps) + 0.5) / steps).astype(np.float32)  # midpoints
    delta = x - base  # (N, L, F)
    path = base + alphas[None, :, None, None] * delta[:, None]  # (N, S, L, F)
    path_classes = None if classes is None else np.repeat(classes, steps)
    grads = gradients(model, path.reshape(-1, *x.shape[1:]), batch, path_classes)
    return delta * grads.reshape(path.shape).mean(axis=1)


def squared_error(pred: np.ndarray, y: np.ndarray) -> float:
    """MSE of the first output (a regression's loss)."""
    return float(np.mean((pred.reshape(len(y), -1)[:, 0] - y.reshape(len(y), -1)[:, 0]) ** 2))


def error_rate(probs: np.ndarray, y: np.ndarray) -> float:
    """1 − accuracy: its rise under a shuffle is the drop in accuracy."""
    return float(np.mean(probs.argmax(axis=1) != y.reshape(-1).astype(int)))


def permutation_importance(predict, x: np.ndarray, y: np.ndarray,
                           repeats: int = PERMUTATION_REPEATS, seed: int = 0,
                           losses=None) -> dict[str, np.ndarray]:
    """Per loss of ``losses`` (name → ``(predict(x), y) → float``, lower is better; default
    ``{"mse": squared_error}``) and per tag: the loss with that tag's window shuffled across
    windows − the loss as is, mean of ``repeats`` shuffles (the same shuffles for every
    loss); ``predict``: (N, L, F) → the model's outputs."""
    losses = losses or {"mse": squared_error}
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    as_is = predict(x)
    base = {name: loss(as_is, y) for name, loss in losses.items()}
    rise = {name: np.zeros(x.shape[2]) for name in losses}
    for j in range(x.shape[2]):
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[:, :, j] = x[rng.permutation(len(x)), :, j]
            pred = predict(shuffled)
            for name, loss in losses.items():
                rise[name][j] += loss(pred, y) - base[name]
    return {name: values / repeats for name, values in rise.items()}


def explain(model, x: np.ndarray, y: np.ndarray, tags: list[str], seed: int = 0,
            classes: list[str] | None = None) -> dict:
    """Saliency, integrated gradients and permutation importance of ``model`` on up to
    :data:`MAX_WINDOWS` windows of ``x`` (scaled) with targets ``y`` (scaled; with
    ``classes``, class indices); the maps (L, F) and a JSON-ready summary (per-tag totals,
    ranked)."""
    if len(x) > MAX_WINDOWS:  # evenly spread over the split, not its first stretch
        keep = np.linspace(0, len(x) - 1, MAX_WINDOWS).round().astype(int)
        x, y = x[keep], y[keep]
    x = np.asarray(x, np.float32)
    outputs = lambda w: _outputs(model, tf.convert_to_tensor(w)).numpy()  # noqa: E731
    predicted = None if classes is None else outputs(x).argmax(axis=1).astype(np.int32)
    sal = saliency(model, x, predicted)
    ig = integrated_gradients(model, x, classes=predicted)
    f = lambda w, c: _explained(model, tf.convert_to_tensor(w), c).numpy()  # noqa: E731
    base = f(np.zeros_like(x), predicted)
    completeness = float(np.abs(ig.sum(axis=(1, 2)) - (f(x, predicted) - base)).mean())
    losses = ({"mse_increase": squared_error} if classes is None else
              {"cross_entropy_increase": cross_entropy, "accuracy_drop": error_rate})
    perm = permutation_importance(outputs, x, y, seed=seed, losses=losses)
    ig_map = np.abs(ig).mean(axis=0)
    summary = {
        "windows": len(x), "ig_steps": IG_STEPS, "baseline": "training mean (0 scaled)",
        "explained": "first output" if classes is None else "probability of the predicted "
                     "class",
        "ig_completeness_mean_abs_gap": completeness,
        "saliency": _per_tag(sal.sum(axis=0), tags),
        "integrated_gradients": _per_tag(ig_map.sum(axis=0), tags),
        **{f"permutation_{name}": _per_tag(values, tags) for name, values in perm.items()},
        "ranking": {name: [tags[j] for j in np.argsort(-values, kind="stable")]
                    for name, values in (("saliency", sal.sum(axis=0)),
                                         ("integrated_gradients", ig_map.sum(axis=0)),
                                         ("permutation", next(iter(perm.values()))))},
    }
    if classes is not None:
        summary |= _by_class(ig, predicted, classes, tags)
    return {"saliency": sal, "integrated_gradients": ig_map, "summary": summary}


def _by_class(ig: np.ndarray, predicted: np.ndarray, classes: list[str],
              tags: list[str]) -> dict:
    """How many windows each class was predicted for, and the signed IG per tag summed over
    a window, averaged over the windows of each predicted class: which tags push the
    probability of that class up (positive) or down, away from the training mean."""
    signed = ig.sum(axis=1)  # (N, F)
    return {"predicted_windows": {c: int((predicted == k).sum())
                                  for k, c in enumerate(classes)},
            "integrated_gradients_by_class": {
                c: _per_tag(signed[predicted == k].mean(axis=0), tags)
                for k, c in enumerate(classes) if (predicted == k).any()}}


def _per_tag(values: np.ndarray, tags: list[str]) -> dict[str, float]:
    return {t: round(float(v), 6) for t, v in zip(tags, values, strict=True)}


def write(model, x: np.ndarray, y: np.ndarray, tags: list[str], period_s: float,
          run_dir: Path, title: str, seed: int = 0, classes: list[str] | None = None) -> dict:
    """:func:`explain` on the validation windows, written to ``run_dir``; the summary."""
    result = explain(model, x, y, tags, seed, classes)
    of = "dy/dx" if classes is None else "dp(predicted class)/dx"
    for key, name, what in (("saliency", "explain_saliency.png", f"saliency, mean |{of}|"),
                            ("integrated_gradients", "explain_ig.png",
                             "integrated gradients, mean |IG|")):
        heatmap(result[key], tags, period_s, run_dir / name, f"{title}: {what}")
    (run_dir / "explanations.json").write_text(json.dumps(result["summary"], indent=1))
    return result["summary"]


def heatmap(values: np.ndarray, tags: list[str], period_s: float, path: Path,
            title: str) -> Path:
    """A (L, F) map as tags (rows) × window steps (columns, labelled in seconds before the
    window's end), with the per-tag total beside each tag's name."""
    from training import plots  # matplotlib (Agg) on first use only

    plt = plots.plt
    L = values.shape[0]
    totals = values.sum(axis=0)
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(tags) + 1.6))
    image = ax.imshow(values.T, aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_yticks(range(len(tags)), [f"{t} ({v:.3g})" for t, v in zip(tags, totals,
                                                                       strict=True)])
    ticks = np.unique(np.linspace(0, L - 1, min(L, 7)).round().astype(int))
    ax.set_xticks(ticks, [f"{-(L - 1 - i) * period_s:g}" for i in ticks])
    ax.set(xlabel="seconds before the window's end", title=title)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
