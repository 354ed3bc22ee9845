"""The monitors a nested selection chooses among, fitted together on one set of normal rows.

Components are fitted once and shared: PCA, dynamic PCA (:mod:`training.dynamic_pca`) and one
autoencoder per ``(family, window)``. Monitors are named views of them, each a list of score
streams that get one limit each (a row alarms if any stream does):

* ``pca_t2_spe``, ``pca_spe``, ``pca_t2`` — static PCA, the classical reference;
* ``dpca_t2_spe``, ``dpca_spe`` — PCA on rows with ``lags`` lagged copies;
* ``<family>_w<window>`` — the autoencoder's reconstruction error;
* ``fused_<family>_w<window>`` — rank fusion (:mod:`training.fusion`) of dynamic-PCA T²,
  dynamic-PCA SPE and that autoencoder's error: one stream, one limit, per-tag contributions.

``variant="edge"`` swaps every autoencoder for its converted LiteRT model (``convert``), so
the same monitors are scored as the gateway would score them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from evaluation import common
from training.dynamic_pca import DynamicPCA
from training.fusion import RankFusion
from training.pca_monitor import PCAMonitor


@dataclass(frozen=True)
class MonitorGrid:
    """What to fit: the autoencoders ``(family, window)``, dynamic-PCA lags, PCA variance."""

    autoencoders: tuple[tuple[str, int], ...] = ()
    lags: int = 2
    variance: float = 0.9
    epochs: int = 20
    seed: int = 0
    pca: tuple[str, ...] = ("pca_t2_spe", "dpca_t2_spe")  # classical monitors to offer

    def names(self) -> list[str]:
        aes = [ae_name(f, w) for f, w in self.autoencoders]
        return [*self.pca, *aes, *(f"fused_{n}" for n in aes)]


def ae_name(family: str, window: int) -> str:
    return f"{family}_w{window}"


def uses_autoencoder(name: str) -> bool:
    return not name.startswith(("pca_", "dpca_"))


@dataclass
class MonitorSet:
    """Every monitor of a :class:`MonitorGrid`, fitted on scaled normal rows."""

    grid: MonitorGrid
    pca: PCAMonitor
    dpca: DynamicPCA
    models: dict[str, object]  # ae name → Keras model
    fusions: dict[str, RankFusion] = field(default_factory=dict)
    edge: dict[str, object] = field(default_factory=dict)  # ae name → LiteRT model

    @classmethod
    def fit(cls, normal: np.ndarray, grid: MonitorGrid) -> MonitorSet:
        models = {}
        for family, window in grid.autoencoders:
            s = common.Settings(families=[family], window=window, epochs=grid.epochs,
                                seed=grid.seed, edge_mode="none")
            models[ae_name(family, window)] = common.fit_family(family, normal, s)
        out = cls(grid, PCAMonitor.fit(normal, grid.variance),
                  DynamicPCA.fit(normal, grid.lags, grid.variance), models)
        parts = out._parts(normal, "keras")
        out.fusions = {n: RankFusion.fit([parts["dpca_t2"], parts["dpca_spe"], parts[n]])
                       for n in models}
        return out

    def convert(self, converter: common.EdgeConverter, normal: np.ndarray,
                names: list[str] | None = None) -> MonitorSet:
        """A copy whose autoencoders (those ``names`` use; default all) also run in LiteRT."""
        wanted = {n.removeprefix("fused_") for n in (names or self.models)} & set(self.models)
        edge = {n: converter(self.models[n], normal, _window(n), self.grid.seed)
                for n in sorted(wanted)}
        return replace(self, edge=edge)

    def _ae(self, name: str, rows: np.ndarray, variant: str) -> common.RowScores:
        if variant == "edge":
            return common.edge_scores(self.edge[name], rows, _window(name))
        return common.keras_scores(self.models[name], rows, _window(name))

    def _parts(self, rows: np.ndarray, variant: str,
               names: list[str] | None = None) -> dict[str, np.ndarray]:
        parts = {"pca_t2": self.pca.t2(rows), "pca_spe": self.pca.spe(rows),
                 "dpca_t2": self.dpca.t2(rows), "dpca_spe": self.dpca.spe(rows)}
        for n in self.models:
            if names is None or n in names or f"fused_{n}" in names:
                parts[n] = self._ae(n, rows, variant).score
        return parts

    def streams(self, rows: np.ndarray, variant: str = "keras",
                names: list[str] | None = None) -> dict[str, list[np.ndarray]]:
        """Monitor name → its score streams (one value per row; NaN without history)."""
        p = self._parts(rows, variant, names)
        out = {"pca_t2_spe": [p["pca_t2"], p["pca_spe"]], "pca_spe": [p["pca_spe"]],
               "pca_t2": [p["pca_t2"]], "dpca_t2_spe": [p["dpca_t2"], p["dpca_spe"]],
               "dpca_spe": [p["dpca_spe"]]}
        for n, fusion in self.fusions.items():
            if n in p:
                out[n] = [p[n]]
                out[f"fused_{n}"] = [fusion.fuse([p["dpca_t2"], p["dpca_spe"], p[n]])]
        return {k: v for k, v in out.items() if names is None or k in names}

    def contributions(self, rows: np.ndarray, name: str, variant: str = "keras") -> np.ndarray:
        """(N, F) per-tag contributions of monitor ``name`` (SPE residuals for PCA)."""
        if name.startswith("pca_"):
            return self.pca.spe_contributions(rows)
        if name.startswith("dpca_"):
            return self.dpca.spe_contributions(rows)
        ae = name.removeprefix("fused_")
        scores = self._ae(ae, rows, variant)
        if not name.startswith("fused_"):
            return scores.per_tag
        stats = [self.dpca.t2(rows), self.dpca.spe(rows), scores.score]
        spe_tags = self.dpca.spe_contributions(rows)
        # T² has no unique split over tags: its part is spread like the SPE residuals
        return self.fusions[ae].contributions(stats, [spe_tags, spe_tags, scores.per_tag])


def _window(name: str) -> int:
    return int(name.rsplit("_w", 1)[1])
