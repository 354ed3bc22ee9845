"""Per-tag occlusion contributions of a window model's estimate, cheap enough for the gateway
(numpy only): each tag in turn is replaced by its training mean over the whole window (0 once
scaled by the bundle's scaler), the F occluded windows go through the model together, and a
tag's contribution is estimate − occluded estimate, in the target's unit: how much of the
estimate's departure from "this tag at its usual value" the tag carries. For a classifier the
estimate is the probability of the class it gives (:meth:`Occluder.outputs`, that class's
column): a tag's contribution is how much of that probability it carries.

The F windows are one extra ``predict`` on an interpreter of their own (:class:`Occluder`),
so the hot path's interpreter is never re-allocated: a dynamic-batch model (the unrolled
recurrent families) runs them in one invoke at batch F, allocated once; a model with a fixed
batch of one (``procedge convert``'s default for the other families, which the converter
folds to batch-1 shapes that cannot be resized) runs F invokes of one window.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]  # (N, L, F) scaled → (N,) scaled estimate


def occluded(window: np.ndarray) -> np.ndarray:
    """(F, L, F): window ``j`` is ``window`` (scaled, (L, F)) with tag ``j`` at its training
    mean (0) over every step."""
    f = window.shape[1]
    batch = np.repeat(np.asarray(window, np.float32)[None], f, axis=0)
    batch[np.arange(f), :, np.arange(f)] = 0.0
    return batch


def contributions(predict: Predict, window: np.ndarray, estimate: float) -> np.ndarray:
    """(F,) estimate − occluded estimate per tag, in scaled target units."""
    return float(estimate) - np.asarray(predict(occluded(window)), np.float64).reshape(-1)


def ranked(values: np.ndarray, tags: list[str], units: list[str]) -> list[dict]:
    """Tags by |contribution|, largest first, each with its share of the total |contribution|
    and its unit (the anomaly payload's ``contributions`` format, plus the signed value)."""
    values = np.asarray(values, np.float64)
    total = float(np.abs(values).sum()) or 1.0
    order = np.argsort(-np.abs(values), kind="stable")
    return [{"tag": tags[j], "contribution": round(float(values[j]), 6),
             "share": round(abs(float(values[j])) / total, 4), "unit": units[j]}
            for j in order]


class Occluder:
    """The interpreter the occluded windows run on, loaded on first use (a gateway that never
    asks for contributions never loads it)."""

    def __init__(self, model_path: str | Path, threads: int = 1):
        self.model_path = Path(model_path)
        self.threads = threads
        self._model = None
        self.invokes = 0  # predict calls made (the test that nothing runs unasked reads it)

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """The model's first output for each window, flattened: (N, outputs)."""
        from edge_runtime.interpreter import EdgeModel

        if self._model is None:
            self._model = EdgeModel(self.model_path, num_threads=self.threads)
        self.invokes += 1
        return self._model.predict(x)[0].reshape(len(x), -1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The estimate of each window (the first output's first value): (N,)."""
        return self.outputs(x)[:, 0]

    @property
    def batched(self) -> bool | None:
        """Whether the F windows run in one invoke (dynamic batch); None before first use."""
        return None if self._model is None else self._model._batched
