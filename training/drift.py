"""The bundle's ``drift`` section: reference statistics of the edge drift monitor, fitted with
the gateway's own code (:mod:`edge_runtime.drift`) on the training rows only (input PSI bins
and limits) and, for forecasts, on the one-step residuals of the validation split (CUSUM)."""

from __future__ import annotations

import numpy as np

from edge_runtime.bundle import DriftSpec
from edge_runtime.drift import fit_residual_references, fit_tag_references
from training.config import TrainConfig


def drift_spec(config: TrainConfig, train_rows: np.ndarray, tags: list[str],
               residuals: np.ndarray | None = None,
               targets: list[str] | None = None) -> DriftSpec | None:
    """``train_rows`` (N, F) engineering units; ``residuals`` (M, T) one-step validation
    residuals (realised - forecast, scaled units) of ``targets``. None when disabled."""
    d = config.drift
    if not d.enabled:
        return None
    refs, rule = fit_tag_references(train_rows, tags, d.window, d.bins, d.margin, d.floor)
    res_refs = []
    if residuals is not None and targets:
        res_refs = fit_residual_references(residuals, targets, d.residual_k, d.residual_margin,
                                           d.residual_floor)
        rule += (f"; residual CUSUM k={d.residual_k:g}, limit = max({d.residual_floor:g}, "
                 f"{d.residual_margin:g} x its largest value over {len(residuals)} validation "
                 "one-step residuals)")
    return DriftSpec(window=d.window, rows=int(len(train_rows)), rule=rule, tags=refs,
                     residuals=res_refs)
