"""Where an alarm's window points: the tags and the time steps behind its score, from the
model's own outputs, in numpy (the gateway has no TensorFlow).

Two rankings of the tags, top ``k`` each with its unit:

- ``by_error``: each tag's share of the window's squared reconstruction error (what
  ``contributions`` ranks, cut to the top ``k``);
- ``by_attention`` (a ``transformer_ae`` bundle, whose second output is the attention each
  time step received, (N, L)): each tag's error weighted, step by step, by that attention —
  the tags that are wrong *where the model looked* — as shares.

And the time steps: ``steps_by_error`` (the steps of the largest error, all tags) and, with
attention, ``steps_by_attention`` (the steps that received most attention), each with its
time stamp and both its attention and its error share, so a reader sees whether they agree.
The attention is over time steps, not tags: a tag ranking by attention alone does not exist
in this model, hence the weighting.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.payloads import iso_ms

TOP = 3  # tags and steps named per alarm


def step_attention(outputs: list[np.ndarray], x_shape: tuple[int, ...]) -> np.ndarray | None:
    """The (N, L) attention output of a bundle that has one, else None (told apart by shape:
    the reconstruction is (N, L, F), a VAE's KL term (N, 1))."""
    n, window = x_shape[0], x_shape[1]
    found = [o for o in outputs if np.ndim(o) == 2 and np.shape(o) == (n, window) and window > 1]
    return np.asarray(found[0], np.float64) if found else None


def attribution(x: np.ndarray, recon: np.ndarray, attention: np.ndarray | None,
                tags: list[str], units: dict[str, str], grid_t: float, period_s: float,
                k: int = TOP) -> dict:
    """One window's attribution: scaled window ``x`` (L, F), its reconstruction (L, F), the
    attention its steps received (L,) or None, the window's grid time (its last step)."""
    err = (np.asarray(x, np.float64) - np.asarray(recon, np.float64)) ** 2  # (L, F)
    window = err.shape[0]
    step_ts = [grid_t - period_s * (window - 1 - i) for i in range(window)]
    step_err = _shares(err.sum(axis=1))

    def tag_rank(weights: np.ndarray) -> list[dict]:
        shares = _shares(weights)
        return [{"tag": tags[j], "share": round(float(shares[j]), 4),
                 "unit": units.get(tags[j], "")} for j in np.argsort(-shares, kind="stable")[:k]]

    def step_rank(values: np.ndarray, att: np.ndarray | None) -> list[dict]:
        rows = []
        for i in np.argsort(-values, kind="stable")[:k]:
            row = {"ts": iso_ms(step_ts[i]), "step": int(i - (window - 1)),
                   "error_share": round(float(step_err[i]), 4)}
            if att is not None:
                row["attention"] = round(float(att[i]), 4)
            rows.append(row)
        return rows

    out = {"by_error": tag_rank(err.sum(axis=0)), "steps_by_error": step_rank(step_err, attention)}
    if attention is not None:
        att = np.asarray(attention, np.float64)
        out["by_attention"] = tag_rank(att @ err)
        out["steps_by_attention"] = step_rank(att, att)
    return out


def _shares(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, np.float64)
    total = values.sum()
    return values / total if total > 0 else np.zeros_like(values)
