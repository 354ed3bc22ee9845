"""Task ``forecast``: windows of every tag → the next ``horizon`` steps of ``targets`` (all tags
by default). Loss: MSE, or the pinball loss of P10/P50/P90 heads (``model.quantiles``).
Metrics: MSE/MAE per step on the chronological test split, beside persistence. Parity: the
edge MSE (of P50) may exceed the float one by the budget (relative), and edge quantiles must
not cross."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.bundle import RunRecord
from edge_runtime.calendar import selection_names
from training import plots
from training.calibration import save_representative
from training.config import TrainConfig
from training.conformal import calibrated_metrics, fit_offsets
from training.covariates import covariate_windows, model_kwargs
from training.drift import drift_spec
from training.metrics import forecast_metrics, regression_metrics
from training.registry import Family
from training.series import SeriesData, fit_model, output_spec, quantile_levels

CONFIG_FIELDS = ("horizon", "targets")


def train(config: TrainConfig, family: Family, run_dir: Path) -> RunRecord:
    data = SeriesData.load(config, run_dir)
    targets = config.targets or data.grid.tags
    cols = [data.grid.tags.index(t) for t in targets]
    L, H = config.window.length, config.horizon
    levels = quantile_levels(config)
    s = data.splits
    known = list(config.model.get("known_future") or [])
    kw = model_kwargs(config.model, data.grid.tags, data.grid.rows)  # checks model.static

    def windows(part: slice):  # (M, L, F) windows, the model's input, (M, H, T) targets
        return covariate_windows(data.scaled[part], data.grid.grid_s[part], L, H, cols, known,
                                 config.window.period_s)

    _, x, y = windows(s.train)
    _, val_x, val_y = windows(s.val)
    past_x, test_x, test_y = windows(s.test)
    features = len(data.grid.tags)
    model, info = fit_model(lambda: family.build(L, features, H, len(cols), target_columns=cols,
                                           **kw), config, x, y, val_x, val_y, run_dir)
    pred = model.predict(test_x, verbose=0)
    persistence = np.repeat(past_x[:, -1:, cols], H, axis=1)
    metrics = forecast_metrics(test_y, pred, levels)
    output = output_spec(config, targets)
    if levels:  # split-conformal offsets from the validation windows, scored on test
        offsets = fit_offsets(val_y, model.predict(val_x, verbose=0), levels)
        metrics |= calibrated_metrics(test_y, pred, levels, offsets)
        output.conformal = offsets.tolist()
    metrics["persistence_mse"] = regression_metrics(test_y, persistence)["mse"]
    np.savez_compressed(run_dir / "heldout.npz", x=test_x, y=test_y)
    save_representative(run_dir, x, config.fit.seed)
    fields = data.record_fields(config)
    fields["input"] = fields["input"].model_copy(
        update={"known_future": known, "static": config.model.get("static") or ""})
    forecast_plots(run_dir, model, config.name, test_x, test_y, pred, targets, levels,
                   tags=selection_names(data.grid.tags, known, fields["input"].static),
                   static=fields["input"].static)
    drift = drift_spec(config, data.grid.rows[s.train], data.grid.tags,
                       _one_step_residuals(model, val_x, val_y, levels), targets)
    return RunRecord(name=config.name, task="forecast", family=config.family,
                     output=output, metrics={"keras": metrics},
                     training=info, drift=drift, **fields)


def _one_step_residuals(model, val_x, val_y, levels: list[float]) -> np.ndarray:
    """Realised - forecast of the first horizon step (P50), scaled units: (N, T), what the
    edge's residual monitor sees when each realised value arrives."""
    pred = model.predict(val_x, verbose=0)[:, 0]
    if levels:
        pred = pred[..., levels.index(0.5)]
    return val_y[:, 0] - pred


def forecast_plots(run_dir: Path, model, title: str, x, y, pred, targets: list[str],
                   levels: list[float], tags: list[str] | None = None,
                   static: str = "") -> None:
    """forecast_vs_actual.png (P50 with the outer quantiles shaded, for a quantile model) and,
    for attention families, attention.png of the first window; a ``tft`` given its input
    ``tags`` draws its selection weights (variable_importance.png, decoder_selection.png,
    static_selection.png) and attention.png averaged over the windows ``x``."""
    from training.forecasters import attention_maps
    from training.tft import interpretation_plots

    band = None
    if levels:
        band, pred = (pred[..., 0], pred[..., -1]), pred[..., levels.index(0.5)]
    plots.forecast_vs_actual(y, pred, targets, run_dir / "forecast_vs_actual.png", band=band,
                             band_label=f"P{levels[0] * 100:g}–P{levels[-1] * 100:g}"
                             if levels else "")
    if tags is not None and interpretation_plots(run_dir, model, x, tags, title, static):
        return
    maps = attention_maps(model, x[0])
    if maps:
        plots.attention_panels(maps, run_dir / "attention.png", title)


def parity(refs: list[np.ndarray], gots: list[np.ndarray], heldout: dict[str, np.ndarray],
           record: RunRecord, budget: float):
    quantiles = record.output.quantiles
    ref, got, y = refs[0], gots[0], heldout["y"]
    keras_m, edge_m = forecast_metrics(y, ref, quantiles), forecast_metrics(y, got, quantiles)
    limit = keras_m["mse"] * (1 + budget)
    point = "P50 MSE" if quantiles else "MSE"
    reasons = [] if edge_m["mse"] <= limit else [
        f"edge {point} {edge_m['mse']:.5f} > budget {limit:.5f} (float {keras_m['mse']:.5f} "
        f"+{budget:.0%})"]
    if quantiles and record.output.conformal:  # reported beside the gate, not gated
        edge_m |= calibrated_metrics(y, got, quantiles, record.output.conformal)
    if edge_m.get("crossing_share", 0.0) > 0:
        reasons.append(f"edge quantiles cross in {edge_m['crossing_share']:.2%} of outputs")
    return keras_m, edge_m, reasons
