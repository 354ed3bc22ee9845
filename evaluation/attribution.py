"""``procedge eval attribution --dataset tep|skab --root PATH``: on the windows a
``transformer_ae`` alarms on in faulted data, do its two tag rankings agree — by reconstruction
error and by attention-weighted error, exactly as the gateway ranks them
(:func:`edge_runtime.attribution.attribution`) — and, on TEP faults whose disturbed variable
is documented, which ranking names one in its top 3 more often.

Splits as ``procedge eval tep`` and ``procedge eval skab`` do (their loaders):

* TEP: fit scaler and model on the normal rows (``d00.dat`` rows 0–299 in development, all of
  it with the published test files), the alarm limit on held-apart normal rows (rows 300–399 /
  ``d00_te.dat``); alarmed windows = windows flagged by that limit whose last row is faulty.
* SKAB: per file, scaler, model and limit on its first 400 rows (the published rule);
  alarmed windows = flagged test windows whose last row is labelled ``anomaly``. The valve
  experiments do not name a faulted tag per file: agreement only.

Agreement per alarmed window, averaged: top-1 equal, top-3 overlap (shared tags / 3), and the
rank correlations of the two full rankings of all tags (Spearman, Kendall τ). Beside them,
``attention_peak``: the largest attention a window's step received × L, averaged (1 = uniform,
where attention-weighted error ranks the tags exactly as error does; L = one step).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.attribution import attribution, step_attention
from edge_runtime.scaling import StandardScaler
from edge_runtime.scoring import window_scores
from edge_runtime.windowing import sliding_windows
from evaluation import common
from training.progress import progress

FAMILY = "transformer_ae"
TOP = 3
TEP_TAGS = [f"XMEAS({i})" for i in range(1, 42)] + [f"XMV({j})" for j in range(1, 12)]
# The variable each fault disturbs first, from the fault's definition (Downs & Vogel 1993,
# Table 8) and the process's control structure, as the TEP diagnosis literature reads it
# (Chiang, Russell & Braatz 2000/2001). See docs/anomaly.md for the reasoning per fault.
DOCUMENTED: dict[int, tuple[str, ...]] = {
    1: ("XMEAS(1)", "XMEAS(4)", "XMV(3)", "XMV(4)"),  # A/C feed ratio, B comp. const (stream 4)
    4: ("XMEAS(9)", "XMEAS(21)", "XMV(10)"),  # reactor cooling water inlet temperature
    5: ("XMEAS(22)", "XMV(11)"),  # condenser cooling water inlet temperature
    6: ("XMEAS(1)", "XMV(3)"),  # A feed loss (stream 1)
    7: ("XMEAS(4)", "XMV(4)"),  # C header pressure loss, reduced availability (stream 4)
}
DEFAULTS = {  # each data set's own eval defaults (evaluation/tep.py, evaluation/skab.py)
    "tep": {"window": 10, "level": 0.95, "margin": 1.0, "ewma": 1.0, "epochs": 60},
    "skab": {"window": 30, "level": 0.99, "margin": 2.0, "ewma": 0.05, "epochs": 40},
}
Predict = Callable[[np.ndarray], list[np.ndarray]]  # windows → [reconstruction, attention]


@dataclass
class Orders:
    """Tag indices of alarmed windows, best first, by error and by attention: (W, F) each;
    and each window's largest step attention × L (W,): 1 = uniform attention, for which the
    two rankings are the same by construction; L = all attention on one step."""

    by_error: np.ndarray
    by_attention: np.ndarray
    peak: np.ndarray

    @staticmethod
    def concat(parts: list[Orders], features: int) -> Orders:
        empty = np.empty((0, features), np.int64)
        return Orders(np.concatenate([empty, *(p.by_error for p in parts)]),
                      np.concatenate([empty, *(p.by_attention for p in parts)]),
                      np.concatenate([np.empty(0), *(p.peak for p in parts)]))


def tag_orders(x: np.ndarray, recon: np.ndarray, attention: np.ndarray,
               tags: list[str]) -> Orders:
    """Both full rankings of every window, through the gateway's own
    :func:`~edge_runtime.attribution.attribution` (``k`` = all tags)."""
    index = {t: i for i, t in enumerate(tags)}
    err, att = [], []
    for i in range(len(x)):
        got = attribution(x[i], recon[i], attention[i], tags, {}, 0.0, 1.0, k=len(tags))
        err.append([index[r["tag"]] for r in got["by_error"]])
        att.append([index[r["tag"]] for r in got["by_attention"]])
    f, peak = len(tags), np.asarray(attention, np.float64).reshape(len(x), x.shape[1])
    return Orders(np.asarray(err, np.int64).reshape(-1, f),
                  np.asarray(att, np.int64).reshape(-1, f), peak.max(axis=1, initial=0.0)
                  * x.shape[1])


def _ranks(order: np.ndarray) -> np.ndarray:
    """Rank of each tag (0 = first) from orders (W, F)."""
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(order.shape[1])[None], axis=1)
    return ranks


def agreement(o: Orders, k: int = TOP) -> dict:
    """Mean over windows of top-1 equal, top-k overlap, Spearman ρ and Kendall τ (rankings
    are permutations: no ties)."""
    n, f = o.by_error.shape
    if n == 0:
        return {"windows": 0}
    ra, rb = _ranks(o.by_error).astype(np.float64), _ranks(o.by_attention).astype(np.float64)
    spearman = 1.0 - 6.0 * ((ra - rb) ** 2).sum(axis=1) / (f * (f * f - 1))
    iu = np.triu_indices(f, 1)
    kendall = np.array([np.mean(np.sign(np.subtract.outer(a, a)[iu])
                                * np.sign(np.subtract.outer(b, b)[iu]))
                        for a, b in zip(ra, rb, strict=True)])
    overlap = [len(set(a[:k]) & set(b[:k])) / k
               for a, b in zip(o.by_error, o.by_attention, strict=True)]
    top1 = float(np.mean(o.by_error[:, 0] == o.by_attention[:, 0]))
    return {"windows": int(n), "top1_agree": top1,
            f"top{k}_overlap": float(np.mean(overlap)), "spearman": float(spearman.mean()),
            "kendall": float(kendall.mean()), "attention_peak": float(o.peak.mean())}


def hit_rates(o: Orders, targets: list[int], k: int = TOP) -> dict:
    """Share of windows whose top ``k`` holds one of ``targets`` (and whose top 1 is one)."""
    if not len(o.by_error):
        return {}
    out = {}
    for key, order in (("error", o.by_error), ("attention", o.by_attention)):
        out[f"top{k}_documented_{key}"] = float(np.isin(order[:, :k], targets).any(axis=1).mean())
        out[f"top1_documented_{key}"] = float(np.isin(order[:, 0], targets).mean())
    return out


def most_named(o: Orders, tags: list[str], n: int = 3) -> dict:
    """The tags most often ranked first, per ranking, with their share of windows."""
    if not len(o.by_error):
        return {}
    out = {}
    for key, order in (("error", o.by_error), ("attention", o.by_attention)):
        counts = Counter(order[:, 0].tolist()).most_common(n)
        out[f"first_by_{key}"] = {tags[i]: round(c / len(order), 3) for i, c in counts}
    return out


@dataclass
class Variant:
    """One way to run the model (Keras float or the converted edge model)."""

    variant: str
    mode: str
    predict: Predict


def window_scores_of(predict: Predict, rows: np.ndarray, window: int) -> np.ndarray:
    windows, _ = sliding_windows(rows, window)
    return window_scores(windows, predict(windows))


def alarmed_orders(predict: Predict, rows: np.ndarray, window: int, spec, faulty: np.ndarray,
                   tags: list[str]) -> Orders:
    """Rankings of the windows over ``rows`` (scaled) that the alarm logic flags under
    ``spec`` and whose last row is ``faulty``."""
    windows, ends = sliding_windows(rows, window)
    outputs = predict(windows)
    recon = next(o for o in outputs if np.shape(o) == windows.shape)
    attention = step_attention(outputs, windows.shape)
    if attention is None:
        raise ValueError(f"the model has no attention output: attribution needs a {FAMILY}")
    scores = np.full(len(rows), np.nan)
    scores[ends] = window_scores(windows, outputs)
    flags = common.flags_from(spec, scores)[ends] & faulty[ends]
    return tag_orders(windows[flags], recon[flags], attention[flags], tags)


def variants(fit_rows: np.ndarray, s: common.Settings, edge) -> list[Variant]:
    """A ``transformer_ae`` fitted on ``fit_rows`` (scaled), shipped with its attention
    output, as Keras and (``s.edge_mode``) as the converted LiteRT model."""
    from training.transformer_ae import with_attention_output

    shipped = with_attention_output(common.fit_family(FAMILY, fit_rows, s))
    out = [Variant("keras", "float32", lambda w: _as_list(
        shipped.predict(w, verbose=0, batch_size=512)))]
    if s.edge_mode != "none":
        model = edge(shipped, fit_rows, s.window, s.seed)
        out.append(Variant("edge", s.edge_mode, model.predict))
    return out


def _as_list(outputs) -> list[np.ndarray]:
    return [np.asarray(o) for o in outputs] if isinstance(outputs, list) else [outputs]


def run_tep(root: Path, s: common.Settings) -> list[dict]:
    """One row per variant and fault with alarmed windows, and one over all faults."""
    from evaluation.tep import load_tep

    data = load_tep(root, s.window)
    scaler = StandardScaler.fit(data.fit)
    calib = scaler.transform(data.folds[0][0])
    edge = common.EdgeConverter(s.edge_mode)
    rows = []
    for v in variants(scaler.transform(data.fit), s, edge):
        spec = s.spec(window_scores_of(v.predict, calib, s.window))  # lead rows: no window
        per_fault = {}
        for k, fault_rows in progress(data.faults.items(), f"TEP faults ({v.variant})",
                                      len(data.faults), unit="fault"):
            faulty = np.arange(len(fault_rows)) >= data.onset[k]
            per_fault[k] = alarmed_orders(v.predict, scaler.transform(fault_rows), s.window,
                                          spec, faulty, TEP_TAGS)
        base = {"model": FAMILY, "variant": v.variant, "mode": v.mode}
        for k, o in per_fault.items():
            documented = [TEP_TAGS.index(t) for t in DOCUMENTED.get(k, ())]
            rows.append(base | {"fault": f"{k:02d}", **agreement(o),
                                **(hit_rates(o, documented) if documented else {}),
                                **most_named(o, TEP_TAGS)})
        rows.append(base | {"fault": "all", **agreement(Orders.concat(
            list(per_fault.values()), len(TEP_TAGS)))})
    edge.close()
    return rows


def run_skab(root: Path, s: common.Settings) -> list[dict]:
    """Per variant: one row per folder (valve1, valve2, …) and one over all files."""
    from evaluation.skab import TRAIN_ROWS, load_skab

    files = load_skab(root)
    edge = common.EdgeConverter(s.edge_mode)
    pooled: dict[tuple[str, str], dict[str, list[Orders]]] = {}
    for f in progress(files, "SKAB files", len(files), unit="file"):
        scaler = StandardScaler.fit(f.rows[:TRAIN_ROWS])
        rows = scaler.transform(f.rows)
        faulty = f.anomaly & (np.arange(len(rows)) >= TRAIN_ROWS)
        for v in variants(rows[:TRAIN_ROWS], s, edge):
            spec = s.spec(window_scores_of(v.predict, rows[:TRAIN_ROWS], s.window))
            o = alarmed_orders(v.predict, rows, s.window, spec, faulty, f.tags)
            pooled.setdefault((v.variant, v.mode), {}).setdefault(f.path.parent.name, []).append(o)
    edge.close()
    out, tags = [], files[0].tags
    for (variant, mode), folders in pooled.items():
        base = {"model": FAMILY, "variant": variant, "mode": mode}
        for name, parts in [*folders.items(), ("all", sum(folders.values(), []))]:
            o = Orders.concat(parts, len(tags))
            out.append(base | {"folder": name, **agreement(o), **most_named(o, tags)})
    return out


def parse(argv: list[str]) -> argparse.Namespace:
    """Options; the model and alarm options not given take the data set's ``DEFAULTS``."""
    p = argparse.ArgumentParser(prog="procedge eval attribution",
                                description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=sorted(DEFAULTS), required=True)
    p.add_argument("--root", type=Path, required=True, help="the data set's folder")

    def per_set(key: str) -> str:
        return "default: " + ", ".join(f"{v[key]} ({k})" for k, v in DEFAULTS.items())

    p.add_argument("--window", type=int, help=per_set("window"))
    p.add_argument("--epochs", type=int, help=per_set("epochs"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--edge-mode", default="int8", choices=["int8", "int16x8", "fp32", "none"],
                   help="also rank with the converted model (LiteRT), as the gateway does")
    p.add_argument("--rule", default="quantile", choices=["quantile", "coverage", "kde"])
    p.add_argument("--level", type=float, help=per_set("level"))
    p.add_argument("--margin", type=float, help=per_set("margin"))
    p.add_argument("--ewma", type=float, help="EWMA alpha (1 = off); " + per_set("ewma"))
    p.add_argument("--model-kw", default="{}", help="JSON keyword arguments of transformer_ae")
    p.add_argument("--json", type=Path, help="write {'results': [...]} here")
    args = p.parse_args(argv)
    for key, value in DEFAULTS[args.dataset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str]) -> None:
    args = parse(argv)
    s = common.Settings(families=[FAMILY], window=args.window, epochs=args.epochs,
                        batch_size=args.batch_size, seed=args.seed, edge_mode=args.edge_mode,
                        rule=args.rule, level=args.level, margin=args.margin,
                        ewma_alpha=args.ewma, model_kw=json.loads(args.model_kw))
    start = time.time()
    rows = (run_tep if args.dataset == "tep" else run_skab)(args.root, s)
    print(f"attribution on {args.dataset} under {args.root}: {time.time() - start:.0f} s")
    keys = ["fault" if args.dataset == "tep" else "folder", "windows", "top1_agree",
            f"top{TOP}_overlap", "spearman", "kendall", "attention_peak"]
    common.print_table([{k: r.get(k, "") for k in ["model", "variant", "mode", *keys]}
                        for r in rows], keys)
    documented = [r for r in rows if f"top{TOP}_documented_error" in r]
    if documented:
        print(f"\ndocumented variable in the top {TOP} (top 1), share of alarmed windows:")
        print("| variant | fault | variables | by error | by attention |\n|---|---|---|---|---|")
        for r in documented:
            print(f"| {r['variant']} | {r['fault']} | {', '.join(DOCUMENTED[int(r['fault'])])}"
                  f" | {r[f'top{TOP}_documented_error']:.2f} ({r['top1_documented_error']:.2f})"
                  f" | {r[f'top{TOP}_documented_attention']:.2f}"
                  f" ({r['top1_documented_attention']:.2f}) |")
    print("\ntags ranked first most often (share of alarmed windows):")
    for r in rows:
        if "first_by_error" in r and (args.dataset != "tep" or r in documented):
            where = r.get("fault", r.get("folder"))
            print(f"{r['variant']} {where}: by error {r['first_by_error']};"
                  f" by attention {r['first_by_attention']}")
    common.write_json(args.json, rows, vars(s) | {"dataset": args.dataset, "root": args.root,
                                                  "documented": DOCUMENTED, "top": TOP})
