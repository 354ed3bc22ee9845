"""What the anomaly benchmarks share: fit a family on normal rows, score every row with the
Keras model and with its converted edge model (LiteRT), the PCA reference, and JSON rows.

A row's score is the score of the window that ends at that row, so a flag at row t only uses
data up to t (as the gateway would).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime.alarms import replay
from edge_runtime.bundle import ThresholdSpec
from edge_runtime.contract import MODE_NAMES
from edge_runtime.scoring import scored_windows
from edge_runtime.windowing import sliding_windows
from evaluation.results import write_results
from training import thresholds

DEEP_FAMILIES = ("dense_ae", "denoising_ae", "conv_ae", "lstm_ae", "vae")
PCA_NAME = "pca_t2_spe"


@dataclass
class Settings:
    """Model and alarm settings shared by every file of one benchmark run."""

    families: list[str]
    window: int = 30
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    edge_mode: str = "int8"  # or "none"
    rule: thresholds.Rule = "quantile"
    level: float = 0.99
    margin: float = 1.0
    ewma_alpha: float = 1.0
    vote_k: int = 1
    vote_n: int = 1
    on_delay: int = 1
    pca_variance: float = 0.9
    score: str = "reconstruction"  # or "elbo" (VAE: negative ELBO, needs the KL output)
    model_kw: dict = field(default_factory=dict)
    edge_families: tuple[str, ...] = DEEP_FAMILIES  # convert these to the edge
    ensemble: int = 1  # K > 1: K seeds of the family, reconstructions averaged (one model)

    def spec(self, normal_scores: np.ndarray) -> ThresholdSpec:
        return thresholds.calibrate(
            normal_scores, self.rule, self.level, self.margin, on_delay=self.on_delay,
            ewma_alpha=self.ewma_alpha, vote_k=self.vote_k, vote_n=self.vote_n)


def add_settings_args(p: argparse.ArgumentParser, window: int, level: float,
                      margin: float = 1.0, ewma: float = 1.0, epochs: int = 60) -> None:
    p.add_argument("--families", default=",".join((*DEEP_FAMILIES, PCA_NAME)),
                   help=f"comma list of {DEEP_FAMILIES} and {PCA_NAME}")
    p.add_argument("--window", type=int, default=window)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--edge-mode", default="int8", choices=[*MODE_NAMES, "none"])
    p.add_argument("--edge-families", default=",".join(DEEP_FAMILIES),
                   help="families also converted and scored in LiteRT (slow: one per file)")
    p.add_argument("--rule", default="quantile", choices=["quantile", "coverage", "kde"],
                   help="limit rule: empirical quantile, rank level*(n+1), or KDE quantile")
    p.add_argument("--level", type=float, default=level, help="calibration quantile level")
    p.add_argument("--margin", type=float, default=margin, help="limit = margin x level point")
    p.add_argument("--ewma", type=float, default=ewma, help="EWMA alpha (1 = off)")
    p.add_argument("--vote", type=int, nargs=2, default=(1, 1), metavar=("K", "N"))
    p.add_argument("--on-delay", type=int, default=1)
    p.add_argument("--pca-variance", type=float, default=0.9)
    p.add_argument("--score", default="reconstruction", choices=["reconstruction", "elbo"],
                   help="window score; elbo = negative ELBO of the vae (other families: error)")
    p.add_argument("--model-kw", default="{}", help="JSON keyword arguments of the family")
    p.add_argument("--ensemble", type=int, default=1, metavar="K",
                   help="train each deep family K times (seeds from --seed) and ship one model"
                        " averaging their reconstructions (training/ensemble.py)")
    p.add_argument("--json", type=Path, help="write {'results': [...]} here")
    p.add_argument("--plots", type=Path, help="directory for PNG plots")


def settings_from_args(args) -> Settings:
    return Settings(
        families=[f for f in args.families.split(",") if f], window=args.window,
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
        edge_mode=args.edge_mode, rule=args.rule, level=args.level, margin=args.margin,
        ewma_alpha=args.ewma, vote_k=args.vote[0], vote_n=args.vote[1],
        on_delay=args.on_delay, pca_variance=args.pca_variance, score=args.score,
        model_kw=json.loads(args.model_kw),
        edge_families=tuple(f for f in args.edge_families.split(",") if f),
        ensemble=args.ensemble)


def fit_family(name: str, train_rows: np.ndarray, s: Settings):
    """A fresh model of family ``name`` fitted on windows of scaled normal rows; with
    ``s.ensemble`` = K > 1, one model averaging K of them (:mod:`training.ensemble`)."""
    if s.ensemble > 1:
        from dataclasses import replace

        from training.ensemble import fit_ensemble

        if s.score != "reconstruction":
            raise ValueError("--ensemble averages reconstructions: use --score reconstruction")
        return fit_ensemble(lambda seed: fit_family(
            name, train_rows, replace(s, seed=seed, ensemble=1)), s.seed, s.ensemble)
    import keras

    from training.budget import EpochBar
    from training.keras_compile import compile_for_fit
    from training.registry import get_family

    keras.utils.set_random_seed(s.seed)
    x, _ = sliding_windows(train_rows, s.window)
    model = get_family(name, "anomaly").build(s.window, train_rows.shape[1], **s.model_kw)
    compile_for_fit(model, keras.optimizers.Adam(s.learning_rate), "mse")
    model.fit(x, x, epochs=s.epochs, batch_size=s.batch_size, shuffle=True, verbose=0,
              callbacks=[keras.callbacks.EarlyStopping("loss", patience=8,
                                                       restore_best_weights=True),
                         EpochBar(f"{name} fit")])
    return model


@dataclass
class RowScores:
    """Score and per-tag error of the window ending at each row (NaN before the first)."""

    score: np.ndarray  # (N,)
    per_tag: np.ndarray  # (N, F)


def _row_scores(rows: np.ndarray, windows: np.ndarray, ends: np.ndarray,
                outputs: list[np.ndarray], score: str) -> RowScores:
    """Scores and per-tag errors from :func:`scored_windows` (the edge's code), so a
    negative-ELBO score adds the KL output to the reconstruction error."""
    per_tag = np.full(rows.shape, np.nan)
    out = np.full(len(rows), np.nan)
    out[ends], per_tag[ends] = scored_windows(windows, outputs, score)
    return RowScores(out, per_tag)


def family_score(model, score: str) -> str:
    """The score a model is evaluated with: ``elbo`` applies to VAEs only."""
    from training.autoencoders import KLSampling

    is_vae = any(isinstance(layer, KLSampling) for layer in model.layers)
    return score if is_vae else "reconstruction"


def keras_scores(model, rows: np.ndarray, window: int,
                 score: str = "reconstruction") -> RowScores:
    from training.autoencoders import edge_model

    windows, ends = sliding_windows(rows, window)
    score = family_score(model, score)
    graph = edge_model(model, score) if score != "reconstruction" else model
    outputs = graph.predict(windows, verbose=0, batch_size=512)
    return _row_scores(rows, windows, ends, outputs if isinstance(outputs, list)
                       else [outputs], score)


class EdgeConverter:
    """Save the shipped graph, convert it (child process, builtin ops) and load it in LiteRT."""

    def __init__(self, mode: str, workdir: Path | None = None):
        self.mode = mode
        self.root = Path(workdir or tempfile.mkdtemp(prefix="procedge-eval-"))
        self.count = 0

    def __call__(self, model, train_rows: np.ndarray, window: int, seed: int,
                 score: str = "reconstruction"):
        from converters.tflite import convert
        from edge_runtime.interpreter import EdgeModel
        from training.autoencoders import edge_model
        from training.calibration import save_representative

        self.count += 1
        run = self.root / f"m{self.count}"
        run.mkdir(parents=True, exist_ok=True)
        edge_model(model, family_score(model, score)).save(run / "model.keras")
        x, _ = sliding_windows(train_rows, window)
        save_representative(run, x, seed)  # same int8 calibration recipe as the trainer
        convert(run / "model.keras", run / "model.tflite", self.mode,
                representative=run / "representative.npz")
        return EdgeModel(run / "model.tflite")


    def close(self) -> None:
        """Remove the converted models (they are rebuilt on every run)."""
        shutil.rmtree(self.root, ignore_errors=True)


def edge_scores(edge, rows: np.ndarray, window: int,
                score: str = "reconstruction") -> RowScores:
    """Scores of a converted model (LiteRT); ``elbo`` only if it has the KL output."""
    windows, ends = sliding_windows(rows, window)
    outputs = edge.predict(windows)
    score = score if len(outputs) > 1 else "reconstruction"
    return _row_scores(rows, windows, ends, outputs, score)


def flags_from(spec: ThresholdSpec, scores: np.ndarray) -> np.ndarray:
    """Alarm flag per row; rows without a score (first window-1) are normal."""
    valid = np.isfinite(scores)
    out = np.zeros(len(scores), dtype=bool)
    out[valid] = replay(spec, scores[valid])
    return out


def write_json(path: Path | None, rows: list[dict], meta: dict) -> None:
    """``{"results": rows, "settings": meta}``, checked (:mod:`evaluation.results`)."""
    write_results(path, rows, meta)


def print_table(rows: list[dict], keys: list[str]) -> None:
    head = ["model", "variant", "mode", *keys]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [str(r[k]) if not isinstance(r[k], float) else f"{r[k]:.3f}" for k in head]
        print("| " + " | ".join(cells) + " |")
