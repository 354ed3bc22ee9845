"""Task ``generative``: a conditional generator of tag windows (``cvae``, ``wgan_gp``), trained
on the training split's windows, each labelled with the class of its rows (the export's
``generative.condition_column``: operating mode or fault class; one class without it).

A workstation job: its row in ``TASKS`` says ``ships=False``, ``procedge convert`` refuses
its runs, and ``procedge generate RUN_DIR`` writes synthetic windows from them. The run
directory: ``generator.keras`` (``[z | one-hot]`` → scaled window), ``generative.json``
(family, classes, latent size, the decoder's noise), ``training.json`` (the tags, the grid
and the scaler, as every series run), ``heldout.npz`` (the test split's windows ``x`` and
class indices ``c``), ``losses.png``, ``samples.png``, ``pca.png``, ``interpolation.png``
(cvae: decoded along the latent line between two test windows) and, with
``fit.tensorboard``, the loss terms per step in ``logs/``. Metrics on the test split: MMD²
and coverage per class (:mod:`training.generative_quality`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_runtime.bundle import RunRecord
from edge_runtime.windowing import sliding_windows
from training import generative_plots as plots
from training.budget import one_pass
from training.config import TrainConfig, export_columns
from training.generative_quality import class_coverage, mmd2
from training.historian import align, import_export
from training.registry import Family
from training.series import SeriesData

CONFIG_FIELDS = ("generative",)
ALL = "all"  # the one class of a run without a condition column


def train(config: TrainConfig, family: Family, run_dir: Path) -> RunRecord:
    if config.image is not None:  # images: training.images.generative_task
        from training.images.generative_task import train as train_images

        return train_images(config, family, run_dir)
    g, L = config.generative, config.window.length
    config = config.model_copy(update={"data": _input_data(config)})
    data = SeriesData.load(config, run_dir)
    codes = _row_classes(config, data)
    values = sorted(float(v) for v in np.unique(codes[np.isfinite(codes)]))
    index = np.full(len(codes), np.nan)
    for i, v in enumerate(values):
        index[codes == v] = i
    names = [_name(v) for v in values] if g.condition_column else [ALL]
    x, c = windows(data.scaled[data.splits.train], index[data.splits.train], L, g.stride)
    test_x, test_c = windows(data.scaled[data.splits.test], index[data.splits.test], L, 1)
    if len(x) < 2:
        raise ValueError(f"only {len(x)} complete single-class training windows of "
                         f"{L} rows: lengthen the data or shorten window.length")
    model = family.build(L, len(data.grid.tags), len(names),
                         **({"latent_dim": g.latent_dim} | config.model))
    start = time.perf_counter()
    history = model.fit(x, c, g.steps, g.batch_size, config.fit.seed, g.model_dump(),
                        desc=f"{config.name}: {family.name}")
    seconds = time.perf_counter() - start
    if g.sample_hold:
        model.learn_sampling(x)
    model.save(run_dir, {"condition_column": g.condition_column, "classes": values,
                         "class_names": names, "steps": g.steps, "seed": config.fit.seed})
    np.savez_compressed(run_dir / "heldout.npz", x=test_x, c=test_c)
    fake_c = np.repeat(np.arange(len(names)), max(len(test_x) // len(names), 50))
    fake = model.sample(fake_c, seed=config.fit.seed)
    metrics = _metrics(test_x, test_c, fake, fake_c, names, history, seconds, g.steps)
    _plots(config, data, model, history, test_x, test_c, fake, fake_c, names, run_dir)
    if config.fit.tensorboard:
        _tensorboard(history, run_dir / "logs")
    return RunRecord(name=config.name, task="generative", family=config.family,
                     metrics={"keras": metrics},
                     training=one_pass(seconds, optimizer_steps=g.steps),
                     **data.record_fields(config))


def windows(rows: np.ndarray, classes: np.ndarray, length: int, stride: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Gap-free windows whose rows all hold one class, and that class's index."""
    both, _ = sliding_windows(np.column_stack([rows, classes]), length, stride)
    same = (both[:, :, -1] == both[:, :1, -1]).all(axis=1)
    return both[same, :, :-1], both[same, 0, -1].astype(np.int64)


def _name(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _input_data(config: TrainConfig):
    """``data`` with its tags: ``data.tags``, or every column but the timestamp and the
    condition column."""
    data, column = config.data, config.generative.condition_column
    if data.tags or data.source == "simulator" or column is None:
        return data
    columns = export_columns(data.path, _fail)
    skip = {data.timestamp_column, column}
    return data.model_copy(update={"tags": [c for c in columns if c not in skip]})


def _fail(message: str) -> None:
    raise ValueError(message)


def _row_classes(config: TrainConfig, data: SeriesData) -> np.ndarray:
    """The condition of every grid row (held as the tags are; NaN where missing), or 0."""
    column = config.generative.condition_column
    if column is None:
        return np.zeros(len(data.grid.rows))
    d = config.data
    export = import_export(d.path, d.timestamp_column, [column], sep=d.sep, decimal=d.decimal,
                           timestamp_format=d.timestamp_format, timezone=d.timezone,
                           bad_values=d.bad_values)
    grid, rows = align(export.frame, d.timestamp_column, [column], config.window)
    if len(grid) != len(data.grid.grid_s) or not np.allclose(grid, data.grid.grid_s):
        raise ValueError(f"generative.condition_column {column!r}: its grid differs from the "
                         "tags' grid")
    return rows[:, 0]


def _metrics(test_x, test_c, fake, fake_c, names, history, seconds, steps) -> dict:
    metrics = {"steps": float(steps), "seconds": seconds,
               "test_windows": float(len(test_x))}
    metrics |= {f"final_{k}": float(np.mean(v[-max(len(v) // 20, 1):]))
                for k, v in history.items()}
    if len(test_x) > 5:
        metrics["mmd2"] = mmd2(test_x, fake)
        step = test_x.shape[1]  # non-overlapping real windows: a window's shifted copies
        # would be its nearest neighbours and shrink every k-NN radius to nothing
        for c, cov in class_coverage(test_x[::step], test_c[::step], fake, fake_c).items():
            if np.isfinite(cov):
                metrics[f"coverage_{names[c]}"] = cov
    return metrics


def _plots(config, data, model, history, test_x, test_c, fake, fake_c, names, run_dir):
    scaler = data.scaler
    plots.loss_curves(history, run_dir / "losses.png", f"{config.name} ({model.family})")
    if len(test_x) == 0:
        return
    real_u = scaler.inverse(test_x.reshape(-1, test_x.shape[2])).reshape(test_x.shape)
    fake_u = scaler.inverse(fake.reshape(-1, fake.shape[2])).reshape(fake.shape)
    plots.sample_grid(real_u, test_c, fake_u, fake_c, data.grid.tags, names,
                      run_dir / "samples.png")
    if len(test_x) > 2:
        plots.pca_plot(test_x, test_c, fake, fake_c, names, run_dir / "pca.png",
                       f"{config.name}: test windows vs generated")
    same = np.flatnonzero(test_c == test_c[0])
    if hasattr(model, "interpolate") and len(same) > 1:  # the first and last of one class
        a, b = test_x[same[0]], test_x[same[-1]]
        line = model.interpolate(a, b, int(test_c[0]))
        unscale = lambda w: scaler.inverse(w)  # noqa: E731
        plots.interpolation_strip(unscale(a), unscale(b), unscale(line), data.grid.tags,
                                  run_dir / "interpolation.png",
                                  f"{config.name}: latent line between two test windows "
                                  f"of class {names[int(test_c[0])]}")


def _tensorboard(history: dict[str, list[float]], log_dir: Path) -> None:
    """The loss terms per step as TensorBoard scalars (written after the fit: the loop
    stays free of summary ops)."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        for key, values in history.items():
            for step, value in enumerate(values):
                tf.summary.scalar(key, value, step=step)
    writer.close()


def parity(refs, gots, heldout, record: RunRecord, budget: float):
    """Nothing ships, so nothing is compared (``procedge convert`` refuses the run first)."""
    raise ValueError(f"{record.name}: a generative run has no edge model to compare")
