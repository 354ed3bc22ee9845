"""Known-future inputs: calendar features of a timestamp, in numpy, and the one model input
that carries them beside the past window.

A forecaster with known-future inputs (``tft`` with ``model.known_future``) needs, for each
window, the calendar features of its L past steps *and* of the H steps it forecasts. The
gateway knows those from the window's grid time alone, so nothing is configured at the edge
beyond the names the bundle carries (``input.known_future``); training calls the same
functions on the historian's grid times, so both sides compute the same values.

The features are Informer's time features (``timefeatures.py`` of its repository), each a
scalar in [-0.5, 0.5], computed from UTC epoch seconds (the grid's clock). A planned tag (a
set-point schedule) is not a known-future input: its future values are not in the MQTT
stream the daemon reads.

The model takes one tensor (N, L + H, F + K): rows 0…L-1 hold the scaled window and the
calendar features of its steps, rows L…L+H-1 zeros in the F tag columns and the calendar
features of the forecast steps. One input keeps the converter, the parity gate and the
interpreter as they are for every other family.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_DAY_S = 86400


def _days(t: np.ndarray) -> np.ndarray:
    return np.floor(t / _DAY_S).astype("int64").astype("datetime64[D]")


def _minute_of_hour(t: np.ndarray) -> np.ndarray:
    return (np.floor(t / 60) % 60) / 59.0 - 0.5


def _hour_of_day(t: np.ndarray) -> np.ndarray:
    return (np.floor(t / 3600) % 24) / 23.0 - 0.5


def _day_of_week(t: np.ndarray) -> np.ndarray:  # Monday = 0; 1970-01-01 was a Thursday
    return ((np.floor(t / _DAY_S) + 3) % 7) / 6.0 - 0.5


def _day_of_month(t: np.ndarray) -> np.ndarray:
    days = _days(t)
    return (days - days.astype("datetime64[M]")).astype(np.float64) / 30.0 - 0.5


def _day_of_year(t: np.ndarray) -> np.ndarray:
    days = _days(t)
    return (days - days.astype("datetime64[Y]")).astype(np.float64) / 365.0 - 0.5


def _month_of_year(t: np.ndarray) -> np.ndarray:
    months = _days(t).astype("datetime64[M]")
    return (months - months.astype("datetime64[Y]")).astype(np.float64) / 11.0 - 0.5


CALENDAR_FEATURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "minute_of_hour": _minute_of_hour,
    "hour_of_day": _hour_of_day,
    "day_of_week": _day_of_week,
    "day_of_month": _day_of_month,
    "day_of_year": _day_of_year,
    "month_of_year": _month_of_year,
}


def check_known_future(names: list[str], field: str = "model.known_future") -> list[str]:
    """The names, each a calendar feature, none twice; a ``ValueError`` naming the field."""
    for name in names:
        if name not in CALENDAR_FEATURES:
            raise ValueError(f"{field}: {name!r} is not a calendar feature; known: "
                             f"{list(CALENDAR_FEATURES)} (a planned tag cannot be a known-"
                             "future input: the gateway does not receive its future values)")
    if len(set(names)) != len(names):
        raise ValueError(f"{field}: {names} names a feature twice")
    return list(names)


def calendar_features(times: np.ndarray, names: list[str]) -> np.ndarray:
    """(…,) UTC epoch seconds → (…, K) features in the order of ``names``."""
    t = np.asarray(times, np.float64)
    return np.stack([CALENDAR_FEATURES[n](t) for n in names], axis=-1).astype(np.float32)


def step_times(grid_t: np.ndarray, period_s: float, window: int, horizon: int) -> np.ndarray:
    """(N,) grid times of the windows' last rows → (N, L + H) times of every past and
    forecast step."""
    offsets = (np.arange(window + horizon) - (window - 1)) * float(period_s)
    return np.asarray(grid_t, np.float64)[:, None] + offsets[None, :]


def with_known_future(x: np.ndarray, grid_t: np.ndarray, period_s: float, horizon: int,
                      names: list[str]) -> np.ndarray:
    """Scaled windows (N, L, F) and their grid times (N,) → the model input (N, L + H, F + K)
    described in the module docstring."""
    x = np.asarray(x, np.float32)
    n, window, features = x.shape
    past_and_future = np.concatenate([x, np.zeros((n, horizon, features), np.float32)], axis=1)
    calendar = calendar_features(step_times(grid_t, period_s, window, horizon), names)
    return np.concatenate([past_and_future, calendar], axis=2)


def selection_names(tags: list[str], known_future: list[str], static: str = "") -> list[str]:
    """The past variables a ``tft`` selects among, in the order of its selection weights: the
    tags less the static covariate, then the calendar features."""
    return [t for t in tags if t != static] + list(known_future)
