"""PNG plots a process engineer would rather look at than read (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from edge_runtime.bundle import ThresholdSpec  # noqa: E402


def learning_curve(history: dict[str, list[float]], path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ("loss", "val_loss"):
        if key in history:
            ax.plot(np.arange(1, len(history[key]) + 1), history[key], label=key)
    ax.set(xlabel="epoch", ylabel="loss (MSE, scaled)", yscale="log", title=f"{title}: learning")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def forecast_vs_actual(y_true: np.ndarray, y_pred: np.ndarray, targets: list[str], path: Path,
                       step: int = 0, band: tuple[np.ndarray, np.ndarray] | None = None,
                       band_label: str = "") -> Path:
    """One panel per target: actual vs forecast at horizon step ``step`` over the test set;
    ``band`` = (lower, upper) quantiles, shaded."""
    fig, axes = plt.subplots(len(targets), 1, figsize=(8, 2.2 * len(targets)), squeeze=False)
    for i, (ax, tag) in enumerate(zip(axes[:, 0], targets, strict=True)):
        if band is not None:
            ax.fill_between(np.arange(len(y_true)), band[0][:, step, i], band[1][:, step, i],
                            alpha=0.25, color="tab:orange", lw=0, label=band_label)
        ax.plot(y_true[:, step, i], label="actual", lw=1)
        ax.plot(y_pred[:, step, i], label=f"forecast (t+{step + 1})", lw=1)
        ax.set_ylabel(f"{tag}\n(scaled)")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right")
    axes[-1, 0].set_xlabel("test window")
    return _save(fig, path)


def soft_sensor_vs_lab(measured: np.ndarray, estimates: dict[str, np.ndarray], target: str,
                      unit: str, path: Path) -> Path:
    """The test lab values (points) and each estimate of them (lines), in label order."""
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot(measured, "o", ms=3, color="k", label="lab value")
    for name, values in estimates.items():
        ax.plot(values, lw=1, label=name)
    ax.set_ylabel(f"{target} ({unit})" if unit else target)
    ax.set_xlabel("test lab value")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    return _save(fig, path)


def score_vs_threshold(scores: np.ndarray, labels: np.ndarray, spec: ThresholdSpec,
                       path: Path, filtered: np.ndarray | None = None) -> Path:
    """Anomaly score over time, alarm limits, labelled anomalies shaded; ``filtered`` is the
    EWMA/k-of-n score the limits apply to, when smoothing is on."""
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot(scores, lw=1, label="score", alpha=0.5 if filtered is not None else 1.0)
    if filtered is not None:
        ax.plot(filtered, lw=1.2, color="k", label="filtered score")
    ax.axhline(spec.raise_at, color="r", ls="--", label="raise")
    ax.axhline(spec.clear_at, color="orange", ls=":", label="clear")
    ax.fill_between(np.arange(len(scores)), 0, 1, where=np.asarray(labels, bool), alpha=0.15,
                    color="red", transform=ax.get_xaxis_transform(), label="labelled anomaly")
    ax.set(yscale="log", xlabel="window", ylabel="reconstruction MSE")
    ax.legend(loc="upper left")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def attention_heatmap(weights: np.ndarray, path: Path, title: str,
                      rows: str = "forecast step") -> Path:
    """Attention of each row (forecast step, or input step for self-attention) over the
    input window (columns), one window."""
    return attention_panels([(title, rows, weights)], path, title)


def attention_panels(maps, path: Path, title: str) -> Path:
    """One heat-map panel per ``(panel title, row label, (rows, L) weights)``."""
    fig, axes = plt.subplots(len(maps), 1, figsize=(7, 3.5 * len(maps)), squeeze=False)
    for ax, (panel, rows, weights) in zip(axes[:, 0], maps, strict=True):
        image = ax.imshow(weights, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set(xlabel="input step (oldest → newest)", ylabel=rows,
               title=f"{title}: attention ({panel})" if panel != title else f"{title}: attention")
        fig.colorbar(image, ax=ax)
    return _save(fig, path)


def contribution_bar(per_tag_error: np.ndarray, tags: list[str], path: Path,
                     title: str) -> Path:
    """Share of one window's reconstruction error per tag, largest first (the alarm's hint)."""
    err = np.asarray(per_tag_error, np.float64)
    order = np.argsort(err)[::-1]
    share = err[order] / (err.sum() or 1.0)
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(tags) + 1.2))
    ax.barh([tags[i] for i in order][::-1], share[::-1] * 100)
    ax.set(xlabel="share of reconstruction error (%)", title=title)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def data_quality(report: dict, grid_s: np.ndarray, rows: np.ndarray, tags: list[str],
                 path: Path) -> Path:
    """Where each tag has data on the grid (gaps blank), and its counts from the report."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 2.2 + 0.5 * len(tags)),
                                      gridspec_kw={"height_ratios": [1.2, 1]})
    hours = (grid_s - grid_s[0]) / 3600 if len(grid_s) else grid_s
    valid = np.isfinite(rows).T.astype(float)
    top.imshow(valid, aspect="auto", interpolation="nearest", cmap="Greens", vmin=0, vmax=1,
               extent=(0, float(hours[-1]) if len(hours) else 1, len(tags) - 0.5, -0.5))
    top.set_yticks(range(len(tags)), tags)
    top.set_xlabel("hours from start (green: a valid value on the grid)")
    top.set_title(f"{Path(report['source']).name}: {report['rows']} rows, "
                  f"{report['unsorted_rows']} out of order, {report['duplicate_timestamps']} "
                  f"duplicate stamps, zone {report['timezone']}"
                  + (" (assumed)" if report["timezone_assumed"] else ""), fontsize=9)
    t = report["tags"]
    kinds = [("bad_values", "bad values"), ("unreadable", "unreadable"), ("gaps", "gaps")]
    y = np.arange(len(tags))
    for k, (key, label) in enumerate(kinds):
        bottom.barh(y + (k - 1) * 0.27, [t[tag][key] for tag in tags], height=0.27,
                    label=label)
    bottom.set_yticks(y, [f"{tag} (flat)" if t[tag].get("flat") else tag for tag in tags])
    bottom.invert_yaxis()
    bottom.set(xlabel="count")
    bottom.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def score_over_limit(ratio: np.ndarray, labels: np.ndarray, flags: np.ndarray, path: Path,
                     title: str, commissioning: int = 0) -> Path:
    """Filtered score / alarm limit per row (1 = the limit; for a monitor with several
    statistics, the largest ratio), the labelled segment shaded, so a miss is seen: a shaded
    stretch where the curve stays under the line. ``commissioning`` rows (fit and limit) are
    greyed; the title's rates are those of the alarm ``flags``."""
    fig, ax = plt.subplots(figsize=(9, 3))
    x = np.arange(len(ratio))
    ax.plot(x, np.clip(ratio, 1e-3, None), lw=1, color="k", label="filtered score / limit")
    ax.axhline(1.0, color="r", ls="--", label="limit")
    labels = np.asarray(labels, bool)
    ax.fill_between(x, 0, 1, where=labels, alpha=0.2, color="red",
                    transform=ax.get_xaxis_transform(), label="labelled anomaly / fault")
    if commissioning:
        ax.axvspan(0, commissioning, color="grey", alpha=0.15, label="commissioning rows")
    flagged = np.asarray(flags, bool)
    hit = 100.0 * float(flagged[labels].mean()) if labels.any() else float("nan")
    normal = ~labels & (x >= commissioning)
    far = 100.0 * float(flagged[normal].mean()) if normal.any() else float("nan")
    ax.set(yscale="log", xlabel="row", ylabel="score / limit",
           title=f"{title}: {hit:.0f} % of labelled rows flagged, {far:.1f} % of normal rows")
    ax.legend(loc="upper left", fontsize=7)
    return _save(fig, path)


def variable_importance(weights: np.ndarray, tags: list[str], path: Path, title: str) -> Path:
    """Mean variable-selection weight per input tag (sums to 1), largest on top."""
    w = np.asarray(weights, np.float64)
    order = np.argsort(w)[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(tags) + 1.2))
    ax.barh([tags[i] for i in order][::-1], w[order][::-1] * 100)
    ax.set(xlabel="mean selection weight (%)", title=title)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)
