"""Known-future inputs and the static covariate of a forecaster (``tft``), on the
workstation: the config keys checked before TensorFlow loads, the static tag checked on the
data before training, and the windows cut with the calendar features the gateway will compute
(``edge_runtime/calendar.py``, the same functions).

``model.known_future``: calendar features (``hour_of_day``, ``day_of_week``, …) the model
takes for its L past steps and its H forecast steps. ``model.static``: one input tag that is
constant per series (a unit or asset number); it feeds the variable selections and the LSTM's
initial state, not the past inputs.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.calendar import check_known_future, with_known_future
from edge_runtime.windowing import forecast_pairs, sliding_windows

COVARIATE_FAMILIES = ("tft",)  # the families built to take them


def check_covariates(family: str, model: dict, targets: list[str]) -> None:
    """``model.known_future`` and ``model.static``, without Keras or data: a ``ValueError``
    naming the field."""
    known, static = model.get("known_future"), model.get("static")
    if known is None and static is None:
        return
    field = "model.known_future" if known is not None else "model.static"
    if family not in COVARIATE_FAMILIES:
        raise ValueError(f"{field}: family {family!r} takes no covariates (only "
                         f"{list(COVARIATE_FAMILIES)})")
    if known is not None:
        if not isinstance(known, list) or not known:
            raise ValueError(f"model.known_future must be a non-empty list of calendar "
                             f"features, not {known!r}")
        check_known_future(known)
    if static is not None:
        if not isinstance(static, str) or not static:
            raise ValueError(f"model.static must be the name of one input tag, not {static!r}")
        if static in targets:
            raise ValueError(f"model.static: {static!r} is a forecast target; a static "
                             "covariate is an input that never changes")
    if (model.get("norm") or "none") != "none":
        raise ValueError(f"model.norm {model['norm']!r} with {field}: instance normalisation "
                         "of a window with covariates is not supported; set model.norm: none")


def model_kwargs(model: dict, tags: list[str], rows: np.ndarray) -> dict:
    """The builder's keyword arguments: ``model.static`` (a tag name) becomes the column
    ``static_column``, after checking that the tag is an input and constant over ``rows``."""
    kw = dict(model)
    static = kw.pop("static", None)
    if static is None:
        return kw
    if static not in tags:
        raise ValueError(f"model.static: {static!r} is not an input tag (tags: {tags})")
    column = np.asarray(rows, np.float64)[:, tags.index(static)]
    low, high = np.nanmin(column), np.nanmax(column)
    if high - low > 1e-9 * max(1.0, abs(low)):
        raise ValueError(f"model.static: tag {static!r} varies over time ({low:g} … {high:g}); "
                         "a static covariate is constant per series (a unit or asset number)")
    return kw | {"static_column": tags.index(static)}


def covariate_windows(scaled: np.ndarray, grid_s: np.ndarray, window: int, horizon: int,
                      cols: list[int], known: list[str], period_s: float
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows (M, L, F), the model's input (M, L + H, F + K) with the calendar features of
    every step (the windows themselves without ``known``) and targets (M, H, T); pairs
    touching a gap are dropped, as :func:`forecast_pairs` drops them."""
    x, y = forecast_pairs(scaled, window, horizon, cols)
    if not known:
        return x, x, y
    _, ends = sliding_windows(scaled, window + horizon)
    last_past = np.asarray(grid_s, np.float64)[ends - horizon]  # each window's own grid time
    return x, with_known_future(x, last_past, period_s, horizon, known), y
