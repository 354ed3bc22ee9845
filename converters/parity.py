"""Does the edge model still agree with the Keras model? Measured on held-out samples through
the LiteRT interpreter, with the task's own metric (``training/tasks/<task>.py``: ``parity``)
and budget (its row in ``edge_runtime.contract.TASKS``), before anything is shipped.

Held-out data (``heldout.npz`` of a run): ``x`` always; forecasts ``y``; anomaly ``labels``
(per window, may be all False); image classifiers ``labels`` (class index per image, model
outputs class scores (N, C)); segmentation ``masks`` (N, H, W, 1) of 0/1, model outputs
(N, H, W, 1) probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_runtime.bundle import RunRecord
from edge_runtime.contract import SHIPPED_TASKS, task_spec
from edge_runtime.interpreter import EdgeModel
from training.tasks import training_task


class Budgets(dict):
    """How much worse than float an edge model may be, per task (keyed by each task's
    ``budget_key``; points as fractions: 0.01 = 1 point). Defaults: the ``TASKS`` table."""

    def __init__(self, **overrides: float):
        known = {t.budget_key for t in SHIPPED_TASKS}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown budget(s) {sorted(unknown)}; known: {sorted(known)}")
        super().__init__({t.budget_key: t.budget for t in SHIPPED_TASKS} | overrides)

    def for_task(self, task: str, value: float | None = None) -> float:
        """The budget of ``task``'s own metric; ``value`` (the CLI's ``--budget``) wins."""
        return self[task_spec(task).budget_key] if value is None else value

    def with_task_budget(self, task: str, value: float | None) -> Budgets:
        """These budgets with ``task``'s replaced by ``value`` (when given)."""
        if value is None:
            return self
        return Budgets(**(dict(self) | {task_spec(task).budget_key: value}))


@dataclass
class ParityReport:
    passed: bool
    keras: dict[str, float]
    edge: dict[str, float]
    output_max_abs_error: float
    output_mean_abs_error: float
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def keras_reference(keras_model, heldout: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Float outputs on the held-out samples (computed once, shared by every candidate);
    a list, as a VAE shipped with score 'elbo' has two outputs (reconstruction and KL)."""
    x = heldout["x"].astype(np.float32)
    out = keras_model.predict(x, verbose=0, batch_size=256)
    return [np.asarray(o) for o in out] if isinstance(out, list | tuple) else [np.asarray(out)]


def _in_keras_order(refs: list[np.ndarray], gots: list[np.ndarray]) -> list[np.ndarray]:
    """LiteRT may order several outputs differently from Keras: match them by shape."""
    if len(gots) == 1:
        return gots
    remaining = list(gots)
    ordered = []
    for ref in refs:
        match = next(i for i, g in enumerate(remaining) if g.shape == ref.shape)
        ordered.append(remaining.pop(match))
    return ordered


def check_parity(keras_model, tflite_path, heldout: dict[str, np.ndarray], record: RunRecord,
                 budget: float | None = None, budgets: Budgets | None = None,
                 reference: list[np.ndarray] | None = None) -> ParityReport:
    """The task's parity metric, float against the edge model at ``tflite_path``."""
    x = heldout["x"].astype(np.float32)
    refs = keras_reference(keras_model, heldout) if reference is None else reference
    gots = _in_keras_order(refs, EdgeModel(tflite_path).predict(x))
    main = next((i for i, r in enumerate(refs) if r.shape == x.shape), 0)  # an AE's output
    err = np.abs(refs[main] - gots[main])
    limit = (budgets or Budgets()).for_task(record.task, budget)
    keras_m, edge_m, reasons = training_task(record.task).parity(refs, gots, heldout, record,
                                                                 limit)
    return ParityReport(not reasons, keras_m, edge_m, float(err.max()), float(err.mean()),
                        reasons)
