"""What every fit shares: a budget in epochs (a wall-clock limit only when asked for, and
then the run says it was truncated), checkpoints to resume an interrupted fit, a progress
line per epoch with its ETA, and the hardware it ran on.

A fit gives the same model on a quiet and on a loaded machine: early stopping and the
learning-rate schedules count epochs, never seconds. ``Checkpoint`` is Keras's
``BackupAndRestore`` (weights, optimizer state and epoch, written after every epoch into
``<run>/backup``) plus the state of the callbacks that remember earlier epochs (early
stopping's best score and best weights, the plateau schedule's counters) and the history, so
a resumed fit continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np

from edge_runtime.bundle import TrainingInfo

log = logging.getLogger(__name__)
BACKUP_DIR = "backup"
# attributes of the stateful Keras callbacks that a resumed fit must get back
_STATE = {
    "EarlyStopping": ("wait", "best", "best_epoch", "stopped_epoch"),
    "ReduceLROnPlateau": ("wait", "cooldown_counter", "best"),
}


def device() -> str:
    """Where TensorFlow computes: the first GPU it sees, else the CPU and its cores."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(
            tf.config.list_physical_devices("GPU")[0])
        name = details.get("device_name", "")
        return f"{gpus[0].name.removeprefix('/device:')}" + (f" ({name})" if name else "") + (
            f" +{len(gpus) - 1} more" if len(gpus) > 1 else "")
    return f"CPU ({os.cpu_count()} cores)"


def start_epoch(backup_dir: Path, resume: bool) -> int:
    """The epoch a fit starts at: the checkpoint's with ``resume``, else 0 (and a checkpoint
    left by an earlier interrupted fit is removed, so it is not picked up by accident)."""
    backup_dir = Path(backup_dir)
    if not resume:
        shutil.rmtree(backup_dir, ignore_errors=True)
        return 0
    meta = backup_dir / "training_metadata.json"
    if not meta.is_file():
        log.warning("--resume: no checkpoint in %s, training from the first epoch", backup_dir)
        return 0
    return int(json.loads(meta.read_text())["epoch"])


class WallClock(keras.callbacks.Callback):
    """The explicit wall-clock limit: stops after the epoch that ends past ``minutes`` and
    marks the fit ``truncated``."""

    def __init__(self, minutes: float):
        super().__init__()
        self.minutes, self.truncated = minutes, False

    def on_train_begin(self, logs=None):
        self.deadline = time.monotonic() + 60 * self.minutes

    def on_epoch_end(self, epoch, logs=None):
        if time.monotonic() > self.deadline and epoch + 1 < self.params.get("epochs", 0):
            log.warning("wall-clock limit of %g min reached after epoch %d of %d: the fit is "
                        "truncated", self.minutes, epoch + 1, self.params["epochs"])
            self.truncated = True
            self.model.stop_training = True


class Progress(keras.callbacks.Callback):
    """One line per epoch with the pace and the ETA of the rest of the budget: on stderr when
    it is a terminal, in the log (INFO) always; the caller prints the summary at the end."""

    def __init__(self, name: str, stream=None):
        super().__init__()
        self.name, self.stream = name, stream or sys.stderr
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.began = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.monotonic() - self.began)
        pace = float(np.mean(self.seconds))
        left = pace * max(self.params.get("epochs", epoch + 1) - epoch - 1, 0)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in (logs or {}).items()
                          if k in ("loss", "val_loss", "val_score"))
        line = (f"{self.name} epoch {epoch + 1}/{self.params.get('epochs')}  {shown}  "
                f"{self.seconds[-1]:.1f} s  ETA {_clock(left)} (budget; early stopping may end "
                "it sooner)")
        log.info(line)
        if getattr(self.stream, "isatty", lambda: False)():
            print(line, file=self.stream, flush=True)


class EpochBar(keras.callbacks.Callback):
    """A tqdm bar over a fit's epochs, silent when stderr is not a terminal: for the many
    short fits of a benchmark, where a line per epoch (:class:`Progress`) would flood it."""

    def __init__(self, desc: str):
        super().__init__()
        self.desc = desc
        self.bar = None

    def on_train_begin(self, logs=None):
        from tqdm import tqdm

        self.bar = tqdm(total=self.params.get("epochs"), desc=self.desc, unit="epoch",
                        disable=None, leave=False, dynamic_ncols=True)

    def on_epoch_end(self, epoch, logs=None):
        if "loss" in (logs or {}):
            self.bar.set_postfix(loss=f"{logs['loss']:.4g}", refresh=False)
        self.bar.update(1)

    def on_train_end(self, logs=None):
        self.bar.close()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Checkpoint(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` into ``backup_dir`` plus the state of ``stateful`` callbacks
    (early stopping, plateau schedule) and the history of every epoch so far. Put it last:
    it saves after the others have updated their state, and restores after they reset it.
    The checkpoint is removed when the fit ends normally."""

    def __init__(self, backup_dir: Path, stateful: list[keras.callbacks.Callback]):
        super().__init__(backup_dir=str(backup_dir))
        self.dir, self.stateful = Path(backup_dir), stateful
        self.history: dict[str, list[float]] = {}
        self.resumed_from = 0

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        state_path = self.dir / "state.json"
        self.resumed_from = getattr(self.model, "_initial_epoch", None) or 0
        if not self.resumed_from or not state_path.is_file():
            return
        state = json.loads(state_path.read_text())
        if state["epoch"] != self.resumed_from:
            log.warning("%s is from epoch %d, the weights from epoch %d: callback state not "
                        "restored", state_path, state["epoch"], self.resumed_from)
            return
        self.history = state["history"]
        best = np.load(self.dir / "best.npz") if (self.dir / "best.npz").is_file() else None
        for callback, saved in zip(self.stateful, state["callbacks"], strict=True):
            for key, value in saved.items():
                setattr(callback, key, value)
            if best is not None and getattr(callback, "restore_best_weights", False):
                callback.best_weights = [best[f"w{i}"] for i in range(len(best.files))]
        log.info("resumed from the checkpoint after epoch %d in %s", self.resumed_from, self.dir)

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        super().on_epoch_end(epoch, logs)  # weights, optimizer and the epoch count
        callbacks = [{k: _plain(getattr(c, k)) for k in _STATE.get(type(c).__name__, ())
                      if hasattr(c, k)} for c in self.stateful]
        for c in self.stateful:
            if getattr(c, "restore_best_weights", False) and c.best_weights is not None:
                np.savez(self.dir / "best.npz", **{f"w{i}": w
                                                    for i, w in enumerate(c.best_weights)})
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps({"epoch": epoch + 1, "callbacks": callbacks,
                                   "history": self.history}))
        tmp.replace(self.dir / "state.json")


def _plain(value):
    """A callback attribute as JSON (numpy and backend scalars become floats/ints)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tolist()


class EpochLog(keras.callbacks.Callback):
    """The history of every epoch, for a fit without a checkpoint (several workers)."""

    resumed_from = 0

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[float]] = {}

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))


def fit_callbacks(name: str, run_dir: Path, stateful: list, max_minutes: float | None,
                  backup: bool = True
                  ) -> tuple[list, Checkpoint | EpochLog, Progress, WallClock | None]:
    """The shared callbacks, to append after the fit's own: the wall-clock limit (only if
    set), progress, and the checkpoint (last; without ``backup`` only the epochs' log)."""
    clock = WallClock(max_minutes) if max_minutes else None
    progress = Progress(name)
    checkpoint = Checkpoint(Path(run_dir) / BACKUP_DIR, stateful) if backup else EpochLog()
    return [c for c in (clock, progress, checkpoint) if c is not None], checkpoint, progress, clock


def training_info(checkpoint: Checkpoint | EpochLog, progress: Progress, clock: WallClock | None,
                  budget: int, stateful: list) -> TrainingInfo:
    """The run record's ``training`` section once ``fit`` has returned."""
    epochs = len(next(iter(checkpoint.history.values()), []))
    stopper = next((c for c in stateful if isinstance(c, keras.callbacks.EarlyStopping)), None)
    early = bool(stopper and stopper.stopped_epoch > 0 and epochs < budget)
    best = stopper.best_epoch + 1 if stopper is not None and stopper.best is not None else None
    truncated = bool(clock and clock.truncated)
    pace = float(np.mean(progress.seconds)) if progress.seconds else 0.0
    return TrainingInfo(epochs=epochs, epochs_budget=budget, best_epoch=best,
                        early_stopped=early and not truncated, truncated=truncated,
                        max_minutes=clock.minutes if clock else None,
                        resumed_from=checkpoint.resumed_from, device=device(),
                        seconds_per_epoch=round(pace, 3))


def one_pass(seconds: float, **steps: int) -> TrainingInfo:
    """The ``training`` section of a fit run in one pass of a fixed number of steps (an agent's
    ``env_steps``, a generator's ``optimizer_steps``): epochs 1 of 1, on this machine's device."""
    return TrainingInfo(epochs=1, epochs_budget=1, device=device(), seconds_per_epoch=seconds,
                        **steps)


def summary(name: str, info: TrainingInfo | None) -> str:
    """The line the CLI prints at the end of a fit."""
    return info.summary(name) if info is not None else f"{name}: no training record"


def steps(n: int, batch_size: int) -> int:
    return max(math.ceil(n / batch_size), 1)
