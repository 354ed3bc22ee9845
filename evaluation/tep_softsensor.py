"""``procedge eval tep-softsensor --root PATH``: product-quality soft sensors on the Tennessee
Eastman Process, against PLS and the last measured value.

**Labels.** The product analyzer XMEAS(37)–(41) (columns 37–41, components D–H) is sampled
every 0.25 h with a 0.25 h dead time; the data has a row every 3 min, so a new value appears
every 5 rows and the rows in between hold it. The updates are detected per run (the rows
where any of the five changes, on the 5-row cadence, its phase from the data); only those rows
are labels, never the holds. The value published at row ``t`` is the analysis of the stream
sampled up to row ``t − 5`` (accumulated over ``t − 10 … t − 5``): it is paired with the input
window ending at row ``t − 5``, so a model estimates the product *now* from the process up to
now.

**Inputs.** XMEAS(1)–(22) and XMV(1)–(11) (33 tags), never the analyzers 23–41.

**Protocol** (``bench/HISTORY.md``, fixed before any figure). Split by run: ``d00`` and 13
fault runs train, 4 validate (early stopping, PLS components, the edge mode), 4 are the test
set, chosen by a fixed seeded permutation of the fault runs; the leak check (groups = runs)
runs before any fit; inputs scaled on training-window rows, each analyzer on training labels.
One 5-output model per family. Edge rows run the converted LiteRT model (builtin ops only).

**Bias update.** Every estimate is also reported as a gateway running the lab-value
correction would publish it (the daemon's :class:`BiasFilter`): per run, label k's estimate
plus the bias after labels 0 … k − 1, α per estimate and analyzer chosen on the validation
runs.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.contract import AUTO_ORDER, MODE_NAMES
from edge_runtime.scaling import StandardScaler
from edge_runtime.soft_sensing import BiasFilter
from evaluation.results import write_results
from evaluation.tep import _load
from training.label_splits import LabelSplits, check_no_leak, covered_rows
from training.metrics import regression_metrics
from training.progress import progress

ANALYZER = tuple(range(36, 41))  # 0-based columns of XMEAS(37)–(41)
ANALYZER_NAMES = ("D", "E", "F", "G", "H")  # product-stream components
INPUTS = (*range(0, 22), *range(41, 52))  # XMEAS(1)–(22), XMV(1)–(11)
COLUMNS = 52
PERIOD_S = 180.0  # one row every 3 min
DEAD_TIME_ROWS = 5  # 0.25 h
CADENCE_ROWS = 5  # sampled every 0.25 h
PARTITION_SEED = 20  # issue 20; fixed in bench/HISTORY.md before any figure
HELD_APART = 4  # validation runs and test runs each (of 21 fault runs)
PLS_MAX_COMPONENTS = 20
EDGE_TOLERANCE = 0.02  # auto: an edge mode's validation RMSE within 2 % of Keras's
DEFAULT_FAMILIES = ("gru", "cnn1d")
BIAS_ALPHAS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)  # chosen per estimate on validation


class TepLabelError(ValueError):
    """The analyzer columns do not update on one cadence: labels cannot be placed."""


# ------------------------------------------------------------------------------- labels


def analyzer_updates(values: np.ndarray, name: str = "run",
                     cadence: int = CADENCE_ROWS) -> np.ndarray:
    """Rows where the analyzer publishes a new value. The phase is the most common row
    residue (mod ``cadence``) of the rows where any of its columns changes; the changes must
    lie on it (95 %) and fill 80 % of its slots (a slower analyzer is refused). Every row on
    that cadence from the first change on is an update, so a value that repeats the old one
    still counts. The rows before it hold a value from before the file: no labels."""
    changes = np.flatnonzero(np.any(np.diff(values, axis=0) != 0, axis=1)) + 1
    if len(changes) < 2:
        raise TepLabelError(f"{name}: XMEAS(37)-(41) change {len(changes)} time(s): no "
                            "analyzer cadence to detect")
    residues, counts = np.unique(changes % cadence, return_counts=True)
    phase = int(residues[counts.argmax()])
    on = changes % cadence == phase
    off = int((~on).sum())
    if off > 0.05 * len(changes):
        raise TepLabelError(f"{name}: {off} of {len(changes)} changes of XMEAS(37)-(41) are "
                            f"off the {cadence}-row cadence: not a sampled analyzer")
    updates = np.arange(changes[on][0], len(values), cadence)
    if on.sum() < 0.8 * len(updates):
        raise TepLabelError(f"{name}: XMEAS(37)-(41) change at {int(on.sum())} of "
                            f"{len(updates)} {cadence}-row slots: a slower analyzer")
    return updates


@dataclass
class RunLabels:
    """One run's labels: the window end (row ``t − dead time``) of each update row ``t``, the
    value published there, and the value on display at the window end (last value)."""

    ends: np.ndarray  # (n,) row index in the run
    values: np.ndarray  # (n, 5) engineering units
    last: np.ndarray  # (n, 5) the analyzer's held value at row ends


def run_labels(rows: np.ndarray, window: int, dead_time: int = DEAD_TIME_ROWS,
               name: str = "run") -> RunLabels:
    """Labels of one run whose window (``window`` rows ending at ``t − dead_time``) lies
    inside the run."""
    analyzer = rows[:, ANALYZER]
    updates = analyzer_updates(analyzer, name)
    ends = updates - dead_time
    keep = ends >= window - 1
    updates, ends = updates[keep], ends[keep]
    return RunLabels(ends, analyzer[updates], analyzer[ends])


# ------------------------------------------------------------------------------ the data


@dataclass
class TepPairs:
    """Every run's labels stacked, with their runs, and the runs' input rows stacked."""

    runs: list[str]
    rows: np.ndarray  # (R, 33) inputs of all runs, one after another
    ends: np.ndarray  # (n,) index into rows
    values: np.ndarray  # (n, 5)
    last: np.ndarray  # (n, 5)
    group: np.ndarray  # (n,) index into runs


def load_runs(root: Path) -> dict[str, np.ndarray]:
    """``dXX.dat`` files of the root (``d00`` transposed on load), by stem; never ``_te``."""
    paths = sorted(Path(root).glob("d[0-9][0-9].dat"))
    if not any(p.stem == "d00" for p in paths):
        raise FileNotFoundError(f"{root}: no d00.dat (the normal run trains every model)")
    runs = {p.stem: _load(p) for p in paths}
    for stem, rows in runs.items():
        if rows.ndim != 2 or rows.shape[1] != COLUMNS:
            raise ValueError(f"{root}/{stem}.dat: shape {rows.shape}, expected N x {COLUMNS}")
    return runs


def stack(runs: dict[str, np.ndarray], window: int) -> TepPairs:
    names = sorted(runs)
    offset, parts = 0, []
    for g, name in enumerate(names):
        lab = run_labels(runs[name], window, name=name)
        parts.append((lab.ends + offset, lab.values, lab.last, np.full(len(lab.ends), g)))
        offset += len(runs[name])
    ends, values, last, group = (np.concatenate(p) for p in zip(*parts, strict=True))
    rows = np.concatenate([runs[n][:, INPUTS] for n in names])
    return TepPairs(names, rows, ends, values, last, group)


def partition(names: list[str], seed: int = PARTITION_SEED) -> dict[str, list[str]]:
    """``d00`` always trains; the fault runs, permuted by ``seed``: the first trains, the next
    ``HELD_APART`` validate, the last ``HELD_APART`` are the test set (fewer on small roots)."""
    faults = sorted(n for n in names if n != "d00")
    k = min(HELD_APART, max(1, len(faults) // 5))
    if len(faults) < 2 * k + 1:
        raise ValueError(f"{len(faults)} fault runs: need at least {2 * k + 1} (train, "
                         "validation, test by run)")
    order = [faults[i] for i in np.random.default_rng(seed).permutation(len(faults))]
    cut = len(faults) - 2 * k
    return {"train": sorted(["d00", *order[:cut]]), "val": sorted(order[cut:cut + k]),
            "test": sorted(order[cut + k:])}


def label_splits(pairs: TepPairs, parts: dict[str, list[str]], window: int) -> LabelSplits:
    """Label indices per set by run; the leak check (runs, windows, input rows) before any
    fit."""
    run_of = np.array(pairs.runs)[pairs.group]
    splits = LabelSplits(*(np.flatnonzero(np.isin(run_of, parts[s]))
                           for s in ("train", "val", "test")))
    check_no_leak(splits, pairs.ends, window, np.arange(len(pairs.rows)) * PERIOD_S,
                  pairs.group)
    return splits


# -------------------------------------------------------------------------- references


def pls_estimates(x: dict[str, np.ndarray], y: dict[str, np.ndarray],
                  max_components: int = PLS_MAX_COMPONENTS
                  ) -> tuple[dict[str, np.ndarray], list[int]]:
    """One PLS1 per analyzer on flattened scaled windows, fitted on training labels, its
    number of components chosen on validation RMSE; returns the validation and test
    estimates and the chosen numbers."""
    from sklearn.cross_decomposition import PLSRegression

    flat = {k: v.reshape(len(v), -1) for k, v in x.items()}
    top = max(1, min(max_components, flat["train"].shape[1], len(flat["train"]) - 1))
    out = {s: np.zeros_like(y[s]) for s in ("val", "test")}
    chosen = []
    for j in range(y["train"].shape[1]):
        best = None
        for n in range(1, top + 1):
            pls = PLSRegression(n_components=n, scale=False).fit(flat["train"],
                                                                  y["train"][:, j])
            err = _rmse(y["val"][:, j], pls.predict(flat["val"]).reshape(-1))
            if best is None or err < best[0]:
                best = (err, n, pls)
        chosen.append(best[1])
        for s in out:
            out[s][:, j] = best[2].predict(flat[s]).reshape(-1)
    return out, chosen


def _rmse(t: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(t, float) - np.asarray(p, float)) ** 2)))


# ---------------------------------------------------------------------------- networks


@dataclass
class FitSettings:
    epochs: int = 80
    batch_size: int = 32
    patience: int = 10
    learning_rate: float = 1e-3
    clip_norm: float = 1.0
    seed: int = 0


def fit_network(family: str, x: dict[str, np.ndarray], y: dict[str, np.ndarray],
                s: FitSettings):
    """A fresh 5-output model of ``family``, MSE on scaled targets, early stopping on the
    validation labels (best weights). Returns (model, seconds, epochs run)."""
    import keras

    from training.budget import EpochBar
    from training.keras_compile import compile_for_fit
    from training.registry import get_family

    keras.utils.set_random_seed(s.seed)
    _, window, features = x["train"].shape
    model = get_family(family, "soft_sensor").build(window, features, y["train"].shape[1])
    compile_for_fit(model, keras.optimizers.Adam(s.learning_rate, clipnorm=s.clip_norm), "mse")
    start = time.perf_counter()
    history = model.fit(
        x["train"], y["train"], validation_data=(x["val"], y["val"]), epochs=s.epochs,
        batch_size=s.batch_size, shuffle=True, verbose=0,
        callbacks=[keras.callbacks.EarlyStopping(patience=s.patience,
                                                 restore_best_weights=True),
                   EpochBar(f"{family} fit")])
    return model, time.perf_counter() - start, len(history.history["loss"])


@dataclass
class EdgeResult:
    val: np.ndarray  # (n_val, 5) scaled estimates from the LiteRT interpreter
    test: np.ndarray  # (n_test, 5)
    mode: str
    ops: list[str]
    bytes: int
    notes: list[str]


def convert_edge(model, x: dict[str, np.ndarray], y_val: np.ndarray, keras_val: np.ndarray,
                 mode: str, workdir: Path, seed: int) -> EdgeResult:
    """Save, convert (child process, builtin ops only) and run the test windows in LiteRT.
    ``auto``: every mode; the first of ``AUTO_ORDER`` (smallest first) whose validation RMSE
    is within ``EDGE_TOLERANCE`` of the Keras model's on every output; none → the one
    closest to it (noted)."""
    from converters.tflite import ConversionError, convert_many
    from edge_runtime.interpreter import EdgeModel
    from training.calibration import save_representative

    workdir.mkdir(parents=True, exist_ok=True)
    model.save(workdir / "model.keras")
    save_representative(workdir, x["train"], seed)
    modes = AUTO_ORDER if mode == "auto" else (mode,)
    infos = convert_many(workdir / "model.keras", workdir / "candidates", modes,
                         workdir / "representative.npz")
    notes, scored = [], []
    for m in modes:
        info = infos[m]
        if "error" in info:
            notes.append(f"{m}: {info['error']}")
            continue
        edge = EdgeModel(info["path"])
        val = edge.predict(x["val"])[0]
        worst = max(_rmse(y_val[:, j], val[:, j]) / max(_rmse(y_val[:, j], keras_val[:, j]),
                                                        1e-12) for j in range(val.shape[1]))
        notes.append(f"{m}: validation RMSE up to {worst - 1:+.2%} vs Keras")
        scored.append((worst, m, edge, info, val))
        if worst <= 1 + EDGE_TOLERANCE:
            break
    if not scored:
        raise ConversionError("no edge mode converted: " + "; ".join(notes))
    within = [r for r in scored if r[0] <= 1 + EDGE_TOLERANCE]
    worst, chosen, edge, info, val = within[0] if within else min(scored, key=lambda r: r[0])
    if not within:
        notes.append(f"no mode within {EDGE_TOLERANCE:.0%}: reporting {chosen}")
    return EdgeResult(val, edge.predict(x["test"])[0], chosen, info["ops"],
                      Path(info["path"]).stat().st_size, notes)


# ---------------------------------------------------------------------------- evaluation


@dataclass
class Prepared:
    """Scaled windows and targets per set, the units' targets, and the split record."""

    x: dict[str, np.ndarray]  # (n, L, 33) float32, scaled on training-window rows
    y: dict[str, np.ndarray]  # (n, 5) float32, scaled on training labels
    truth: dict[str, np.ndarray]  # "val", "test": (n, 5) engineering units (the lab values)
    last: np.ndarray  # (n_test, 5) value on display at each test label's process time
    mean: np.ndarray
    scale: np.ndarray
    split: dict  # runs and label counts per set
    group: dict[str, np.ndarray]  # "val", "test": the run of each label, in row order

    def units(self, scaled: np.ndarray) -> np.ndarray:
        return np.asarray(scaled, np.float64) * self.scale + self.mean


def prepare(runs: dict[str, np.ndarray], window: int, history: int | None = None) -> Prepared:
    """``history`` (≥ ``window``) rows must precede each label's window end, so that runs
    with different windows are scored on the same labels."""
    pairs = stack(runs, max(window, history or window))
    parts = partition(pairs.runs)
    splits = label_splits(pairs, parts, window)
    train_rows = covered_rows(pairs.ends[splits.train], window, len(pairs.rows))
    scaled = StandardScaler.fit(pairs.rows[train_rows]).transform(pairs.rows)
    mean = pairs.values[splits.train].mean(axis=0)
    scale = np.where(pairs.values[splits.train].std(axis=0) > 1e-12,
                     pairs.values[splits.train].std(axis=0), 1.0)
    x, y = {}, {}
    for name, idx in splits.sets().items():
        x[name] = np.stack([scaled[e - window + 1:e + 1] for e in pairs.ends[idx]]
                           ).astype(np.float32)
        y[name] = ((pairs.values[idx] - mean) / scale).astype(np.float32)
    split = {name: {"runs": parts[name], "labels": int(len(idx))}
             for name, idx in splits.sets().items()}
    held = {"val": splits.val, "test": splits.test}
    return Prepared(x, y, {s: pairs.values[i] for s, i in held.items()},
                    pairs.last[splits.test], mean, scale, split,
                    {s: pairs.group[i] for s, i in held.items()})


def bias_updated(raw: np.ndarray, measured: np.ndarray, group: np.ndarray,
                 alphas: list[float]) -> np.ndarray:
    """What a gateway with the bias update on publishes for each label: the estimate plus the
    bias after the run's earlier labels (the daemon's :class:`BiasFilter`, one per run and
    analyzer, starting at 0; ``alphas``: one per analyzer). Labels are in row order within
    each run."""
    out = np.empty_like(raw, dtype=np.float64)
    for j, alpha in enumerate(alphas):
        for g in np.unique(group):
            bias = BiasFilter(alpha=alpha, enabled=True)
            for i in np.flatnonzero(group == g):
                out[i, j] = raw[i, j] + bias.bias
                bias.update(float(measured[i, j]), float(raw[i, j]))
    return out


def chosen_alphas(raw: np.ndarray, measured: np.ndarray,
                  group: np.ndarray) -> tuple[list[float], list[float]]:
    """Per analyzer, the α of :data:`BIAS_ALPHAS` with the lowest bias-updated RMSE on the
    validation labels given (the test runs never inform it), and that RMSE."""
    errors = np.array([[_rmse(measured[:, j], est[:, j]) for j in range(raw.shape[1])]
                       for est in (bias_updated(raw, measured, group, [a] * raw.shape[1])
                                   for a in BIAS_ALPHAS)])
    best = errors.argmin(axis=0)
    return [BIAS_ALPHAS[k] for k in best], [float(errors[k, j]) for j, k in enumerate(best)]


def estimate_rows(model: str, variant: str, mode: str, p: Prepared,
                  scaled: dict[str, np.ndarray], **extra) -> list[dict]:
    """Rows of one estimate on the test runs: as it is, and bias-updated with the α each
    analyzer's validation runs chose; each row also carries its validation RMSE
    (``val_rmse``), the figure a choice between runs (a window, a family) may use."""
    raw = {s: p.units(scaled[s]) for s in ("val", "test")}
    alphas, bias_val = chosen_alphas(raw["val"], p.truth["val"], p.group["val"])
    truth = p.truth["test"]
    rows = metric_rows(model, variant, mode, truth, raw["test"], correction="none", **extra)
    for j, row in enumerate(rows):
        row["val_rmse"] = _rmse(p.truth["val"][:, j], raw["val"][:, j])
    corrected = bias_updated(raw["test"], truth, p.group["test"], alphas)
    bias_rows = metric_rows(model, variant, mode, truth, corrected, correction="bias", **extra)
    for row, alpha, val in zip(bias_rows, alphas, bias_val, strict=True):
        row |= {"val_rmse": val, "bias_alpha": alpha}
    return rows + bias_rows


def metric_rows(model: str, variant: str, mode: str, truth: np.ndarray, estimate: np.ndarray,
                **extra) -> list[dict]:
    """One row per analyzer: RMSE, MAE, R² in the data's units (mol %)."""
    rows = []
    for j, name in enumerate(ANALYZER_NAMES):
        m = regression_metrics(truth[:, j], estimate[:, j])
        rows.append({"model": model, "variant": variant, "mode": mode, "analyzer": name,
                     "tag": f"XMEAS({37 + j})", "rmse": m["rmse"], "mae": m["mae"],
                     "r2": m["r2"], "labels": int(len(truth))} | extra)
    return rows


def evaluate(runs: dict[str, np.ndarray], families: list[str], window: int, edge_mode: str,
             fit: FitSettings, workdir: Path | None = None,
             history: int | None = None) -> tuple[list[dict], dict]:
    """Rows of every reference and model (Keras, and edge unless ``edge_mode`` is none), and
    what the run did (split, PLS components, epochs, edge modes)."""
    p = prepare(runs, window, history)
    print(f"labels: train {p.split['train']['labels']} ({len(p.split['train']['runs'])} runs),"
          f" validation {p.split['val']['labels']} {p.split['val']['runs']}, test"
          f" {p.split['test']['labels']} {p.split['test']['runs']}", flush=True)
    rows = metric_rows("last_value", "numpy", "float64", p.truth["test"], p.last,
                       correction="none")
    start = time.perf_counter()
    pls, components = pls_estimates(p.x, p.y)
    rows += estimate_rows("pls", "numpy", "float64", p, pls,
                          train_s=round(time.perf_counter() - start, 1))
    print(f"PLS components per analyzer (validation): {components}", flush=True)
    meta = {"split": p.split, "pls_components": dict(zip(ANALYZER_NAMES, components,
                                                         strict=True)),
            "epochs_run": {}, "edge": {}}
    root = Path(workdir or tempfile.mkdtemp(prefix="procedge-tep-soft-"))
    try:
        for family in progress(families, "TEP soft sensors", unit="model"):
            model, seconds, epochs = fit_network(family, p.x, p.y, fit)
            meta["epochs_run"][family] = epochs
            print(f"{family}: trained {seconds:.0f} s, {epochs} epochs", flush=True)
            keras = {s: model.predict(p.x[s], verbose=0, batch_size=512)
                     for s in ("val", "test")}
            rows += estimate_rows(family, "keras", "float32", p, keras,
                                  train_s=round(seconds, 1))
            if edge_mode == "none":
                continue
            edge = convert_edge(model, p.x, p.y["val"], keras["val"], edge_mode,
                                root / family, fit.seed)
            print(f"{family}: edge {edge.mode} ({edge.bytes} B); " + "; ".join(edge.notes),
                  flush=True)
            meta["edge"][family] = {"mode": edge.mode, "bytes": edge.bytes, "ops": edge.ops,
                                    "notes": edge.notes}
            rows += estimate_rows(family, "edge", edge.mode, p,
                                  {"val": edge.val, "test": edge.test},
                                  train_s=round(seconds, 1))
    finally:
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    return rows, meta


def goals(rows: list[dict]) -> dict:
    """Per correction (``none``: the models as they are, the issue's goal; ``bias``: edge and
    PLS both bias-updated), per edge model and analyzer: RMSE / PLS (goal ≤ 0.8), / last
    value (goal < 1), / its Keras model (goal ≤ 1.02); ``met_by``: the edge models meeting
    all three everywhere."""
    rmse = {(r["model"], r["variant"], r["correction"], r["analyzer"]): r["rmse"] for r in rows}
    out: dict = {}
    for c in ("none", "bias"):
        part: dict = {"per_model": {}, "met_by": []}
        for model in sorted({r["model"] for r in rows if r["variant"] == "edge"}):
            edge = {a: rmse[model, "edge", c, a] for a in ANALYZER_NAMES}
            ratios = {a: {"vs_pls": edge[a] / rmse["pls", "numpy", c, a],
                          "vs_last_value": edge[a] / rmse["last_value", "numpy", "none", a],
                          "vs_keras": edge[a] / rmse[model, "keras", c, a]}
                      for a in ANALYZER_NAMES}
            part["per_model"][model] = ratios
            if all(r["vs_pls"] <= 0.8 and r["vs_last_value"] < 1
                   and r["vs_keras"] <= 1 + EDGE_TOLERANCE for r in ratios.values()):
                part["met_by"].append(model)
        out[c] = part
    return out


def print_tables(rows: list[dict], goal: dict) -> None:
    print("\n| model | variant | mode | correction (α) | analyzer | RMSE | MAE | R² | train s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        correction = r["correction"] + (f" ({r['bias_alpha']})" if "bias_alpha" in r else "")
        print(f"| {r['model']} | {r['variant']} | {r['mode']} | {correction} | {r['tag']} "
              f"{r['analyzer']} | {r['rmse']:.4f} | {r['mae']:.4f} | {r['r2']:.3f} | "
              f"{r.get('train_s', '')} |")
    for c, title in (("none", "as they are"), ("bias", "bias-updated, against bias-updated "
                                                      "PLS")):
        part = goal[c]
        if not part["per_model"]:
            continue
        print(f"\nedge RMSE ratios, {title} (goal: vs PLS <= 0.8, vs last value < 1, vs Keras "
              "<= 1.02):")
        print("| edge model | analyzer | vs PLS | vs last value | vs Keras |")
        print("|---|---|---|---|---|")
        for model, ratios in part["per_model"].items():
            for a, r in ratios.items():
                print(f"| {model} | {a} | {r['vs_pls']:.3f} | {r['vs_last_value']:.3f} | "
                      f"{r['vs_keras']:.3f} |")
        print(f"goal met by: {', '.join(part['met_by']) or 'no edge model'}")


def build_parser() -> argparse.ArgumentParser:
    import os

    p = argparse.ArgumentParser(prog="procedge eval tep-softsensor",
                                description=__doc__.splitlines()[0])
    default = Path(os.environ.get("PROCEDGE_DATA", "")) / "tep"
    p.add_argument("--root", type=Path, default=default,
                   help="folder with d00.dat … d21.dat (default $PROCEDGE_DATA/tep)")
    p.add_argument("--families", default=",".join(DEFAULT_FAMILIES),
                   help="comma list of soft-sensor families (simple_rnn, lstm, gru, cnn1d, "
                        "attention_rnn); empty = references only")
    p.add_argument("--window", type=int, default=20, help="input rows (3 min each)")
    p.add_argument("--history", type=int,
                   help="label only where this many rows precede the window end (default: "
                        "the window); the same value for runs with different --window scores "
                        "them on the same labels")
    p.add_argument("--epochs", type=int, default=80)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="model seed (the split is fixed)")
    p.add_argument("--edge-mode", default="auto", choices=["auto", *MODE_NAMES, "none"],
                   help="auto: the smallest mode within 2 %% of Keras on validation")
    p.add_argument("--workdir", type=Path, help="keep the converted models here")
    p.add_argument("--json", type=Path, help='write {"results": [...], "settings": {...}}')
    return p


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    if args.window < 1:
        raise ValueError(f"--window must be at least 1, not {args.window}")
    if args.history is not None and args.history < args.window:
        raise ValueError(f"--history {args.history} must be at least --window {args.window}")
    families = [f for f in args.families.split(",") if f]
    fit = FitSettings(epochs=args.epochs, batch_size=args.batch_size, patience=args.patience,
                      seed=args.seed)
    start = time.time()
    runs = load_runs(args.root)
    print(f"TEP soft sensors: {len(runs)} runs under {args.root}; inputs XMEAS(1)-(22) +"
          f" XMV(1)-(11); labels at analyzer updates, dead time {DEAD_TIME_ROWS} rows;"
          f" window {args.window}", flush=True)
    rows, meta = evaluate(runs, families, args.window, args.edge_mode, fit, args.workdir,
                          args.history)
    goal = goals(rows)
    print_tables(rows, goal)
    wall = time.time() - start
    print(f"\nwall {wall:.0f} s")
    write_results(args.json, rows, meta | {
        "root": str(args.root), "families": families, "window": args.window,
        "history": args.history or args.window,
        "dead_time_rows": DEAD_TIME_ROWS, "period_s": PERIOD_S, "fit": vars(fit),
        "edge_mode": args.edge_mode, "partition_seed": PARTITION_SEED, "goals": goal,
        "wall_s": round(wall, 1), "protocol": "development runs only (dXX.dat)"})
    return rows
