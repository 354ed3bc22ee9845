"""What the first K % of a simulated batch can tell about its batch-end yield, read against
the simulator's hidden truth (issue 20's goal: R² ≥ 0.9 from the first 30 %).

Each batch of ``procedge simulate --batches`` has a recipe (T_start, T_end, τ) and hidden
disturbances: pre-exponential factors a1, a2, heat-transfer fouling ua and the charge x10.
Three tables, 5-fold cross-validated over batches (batches are independent draws), with a
gradient-boosted regressor (nonlinear, little tuning) and 8-component PLS:

1. the yield from *parameters*: all seven (the oracle), and with one hidden parameter left
   out — how much of the yield each parameter decides;
2. each parameter from the *first K %* of the measured tags (T, Tj, Tj_sp, T_sp, duty_kW):
   how well the early data pin it down;
3. the yield from the first K % directly, with and without the recipe as known inputs.

Usage: ``python bench/batch_yield_ceiling.py --batches 1500 --seed 1 --percent 30``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_runtime.batch_tracker import early_rows  # noqa: E402
from training.control.batch_export import TAGS, simulate_batches  # noqa: E402

HIDDEN = ("a1", "a2", "ua", "x10")
RECIPE = ("T_start", "T_end", "tau_h")


def early_features(frame, percent: float) -> np.ndarray:
    """Per batch, the tags of the rows within the first ``percent`` of the batch, flattened."""
    tags = [t for t, _ in TAGS]
    out = []
    for _, batch in frame.groupby("batch_id", sort=True):
        rows = early_rows(percent, len(batch))  # the soft sensor's and the gateway's count
        out.append(batch[tags].to_numpy(float)[:rows].ravel())
    return np.stack(out)


def cv_r2(x: np.ndarray, y: np.ndarray, model: str, seed: int) -> float:
    """Out-of-fold R² over 5 folds (the folds shuffled with ``seed``)."""
    from sklearn.cross_decomposition import PLSRegression
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict

    est = (HistGradientBoostingRegressor(max_iter=400, learning_rate=0.05, random_state=seed)
           if model == "gbr" else PLSRegression(min(8, x.shape[1])))  # standardises x itself
    folds = KFold(5, shuffle=True, random_state=seed)
    return float(r2_score(y, np.ravel(cross_val_predict(est, x, y, cv=folds))))


def table(title: str, rows: list[tuple[str, float, float]]) -> None:
    print(f"\n{title}\n| inputs | R² boosted trees | R² PLS |\n|---|---|---|")
    for name, gbr, pls in rows:
        print(f"| {name} | {gbr:.3f} | {pls:.3f} |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=1500)
    p.add_argument("--seed", type=int, default=1, help="the simulator's seed")
    p.add_argument("--percent", type=float, nargs="+", default=[30.0, 100.0])
    args = p.parse_args(argv)
    start = time.time()
    truth: list[dict[str, float]] = []
    frame = simulate_batches(args.batches, seed=args.seed, truth=truth)
    params = {k: np.array([t[k] for t in truth]) for k in (*HIDDEN, *RECIPE)}
    y = np.array([t["yield"] for t in truth])
    print(f"{args.batches} batches (seed {args.seed}), yield mean {y.mean():.4f} "
          f"sd {y.std():.4f} mol/L; simulated in {time.time() - start:.0f} s")

    def both(x: np.ndarray, target: np.ndarray) -> tuple[float, float]:
        return cv_r2(x, target, "gbr", 0), cv_r2(x, target, "pls", 0)

    def stack(names) -> np.ndarray:
        return np.stack([params[k] for k in names], axis=1)

    rows = [("all seven (oracle)", *both(stack((*HIDDEN, *RECIPE)), y))]
    rows += [(f"all but {k}", *both(stack([n for n in (*HIDDEN, *RECIPE) if n != k]), y))
             for k in HIDDEN]
    rows += [("recipe only", *both(stack(RECIPE), y))]
    table("1. yield from the parameters", rows)
    for percent in args.percent:
        early = early_features(frame, percent)
        table(f"2. each hidden parameter from the first {percent:g} % of the tags",
              [(k, *both(early, params[k])) for k in HIDDEN])
        table(f"3. yield from the first {percent:g} % of the tags",
              [("tags", *both(early, y)),
               ("tags + recipe", *both(np.hstack([early, stack(RECIPE)]), y))])
    print(f"\n{time.time() - start:.0f} s wall")


if __name__ == "__main__":
    main()
