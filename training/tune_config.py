"""The ``tune:`` section of a training config: what `procedge tune` searches, and how.

Checked in two steps, both before TensorFlow loads: the schema (:class:`TuneConfig`: an
unknown key, an empty choice list, ``min >= max``, log sampling from zero) and, once the
family is known, :func:`check_tune_space` (each searched name is a keyword of the family's
builder or one of :data:`CONFIG_KEYS`, integers where the builder takes integers, windows that
hold the dead time). The builder's keywords are read from its source (``ast``), as
:func:`training.registry.declared_families` reads the families, so no Keras import is needed.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from edge_runtime.contract import Strict

# Searched names that are not builder keywords: where each goes in the training config.
CONFIG_KEYS = {"learning_rate": "fit.learning_rate", "batch_size": "fit.batch_size",
               "window": "window.length", "layers": "model.units (its length)"}
INTEGER_KEYS = {"batch_size", "window", "layers"}
POSITIONAL = ("window", "features", "outputs")  # every builder's shape arguments
TASKS = ("soft_sensor",)  # the tasks `procedge tune` searches


class SearchParam(Strict):
    """One searched hyper-parameter: ``choices`` (a list), or a range ``min``..``max``
    (``step`` optional; ``sampling: log`` for learning rates)."""

    choices: list[int | float | str | bool] | None = Field(
        default=None, min_length=1, description="The values to try (instead of a range).")
    min: int | float | None = Field(default=None, description="Range start (inclusive).")
    max: int | float | None = Field(default=None, description="Range end (inclusive).")
    step: int | float | None = Field(default=None, gt=0, description="Range step; default: "
                                     "1 for integers, continuous for floats. With sampling "
                                     "log, the factor between values (KerasTuner's rule).")
    sampling: Literal["linear", "log"] = Field(default="linear", description="'log' draws "
                                               "uniformly in log space (min > 0).")

    @model_validator(mode="after")
    def _choices_or_range(self) -> SearchParam:
        ranged = self.min is not None or self.max is not None
        if self.choices is not None:
            if ranged or self.step is not None:
                raise ValueError("give either choices or min/max, not both")
            if len({repr(c) for c in self.choices}) < len(self.choices):
                raise ValueError(f"choices repeat a value: {self.choices}")
            return self
        if self.min is None or self.max is None:
            raise ValueError("give choices, or both min and max")
        if not self.min < self.max:
            raise ValueError(f"min {self.min} must be below max {self.max}")
        if self.sampling == "log" and self.min <= 0:
            raise ValueError(f"sampling log needs min > 0, got {self.min}")
        if self.step is not None and self.sampling == "log" and self.step <= 1:
            raise ValueError(f"with sampling log, step is a factor above 1, got {self.step}")
        if self.step is not None and self.sampling == "linear" and \
                self.step > self.max - self.min:
            raise ValueError(f"step {self.step} is wider than the range {self.min}..{self.max}")
        return self

    @property
    def is_int(self) -> bool:
        """A range of integers (min, max and step all ints)."""
        return self.choices is None and all(
            isinstance(v, int) and not isinstance(v, bool)
            for v in (self.min, self.max, self.step if self.step is not None else 1))

    def values(self) -> list:
        """The choices, or the range's ends (what the value checks look at)."""
        return list(self.choices) if self.choices is not None else [self.min, self.max]


class TuneConfig(Strict):
    """`procedge tune`: a search over the family's hyper-parameters, scored on the
    validation split only (the test split's labels and rows are blanked before any trial)."""

    algorithm: Literal["random", "bayesian", "hyperband"] = Field(
        default="bayesian", description="KerasTuner oracle: random search, Bayesian "
        "optimisation (Gaussian process), or Hyperband (successive halving of epochs).")
    max_trials: int = Field(default=10, ge=1, description="Trials at most (Hyperband may "
                            "stop sooner, when its brackets are done).")
    objective: Literal["val_loss"] = Field(
        default="val_loss", description="Minimised: the best epoch's validation loss (MSE of "
        "the scaled target; the trials table gives it as val_rmse in the target's unit too; "
        "a classification soft sensor's cross-entropy, with val_accuracy at that epoch).")
    epochs: int | None = Field(default=None, ge=1, description="Epoch budget of a trial "
                               "(Hyperband: its max_epochs); default fit.epochs. Early "
                               "stopping (fit.patience) applies.")
    factor: int = Field(default=3, ge=2, description="Hyperband: reduction factor.")
    seed: int = Field(default=0, description="Seeds the oracle; every trial's weights use "
                      "fit.seed, so equal values give equal scores.")
    space: dict[str, SearchParam] = Field(
        min_length=1, description="Name → choices or range. Names: a keyword of the "
        "family's builder (units, dropout, filters, kernel, depth, …), or learning_rate, "
        "batch_size, window (window.length), layers (how many recurrent layers of `units`).")


def builder_keywords(task: str, family: str) -> dict[str, ast.expr | None]:
    """The keyword arguments of the builder registered as ``(task, family)`` → their default
    expressions, read from the built-in modules' source. Empty when not found there (a
    family registered at run time: its keywords are checked when it is built)."""
    from training.registry import BUILTIN_MODULES

    for module in BUILTIN_MODULES:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            continue
        for node in ast.walk(ast.parse(Path(spec.origin).read_text())):
            if isinstance(node, ast.FunctionDef) and _registers(node, task, family):
                args = node.args.args
                defaults = [None] * (len(args) - len(node.args.defaults)) + node.args.defaults
                return {a.arg: d for a, d in zip(args, defaults, strict=True)
                        if a.arg not in POSITIONAL}
    return {}


def _registers(node: ast.FunctionDef, task: str, family: str) -> bool:
    for deco in node.decorator_list:
        if (isinstance(deco, ast.Call) and getattr(deco.func, "id", "") == "register"
                and [getattr(a, "value", None) for a in deco.args[:2]] == [task, family]):
            return True
    return False


def units_is_list(keywords: dict[str, ast.expr | None]) -> bool:
    """The builder stacks layers: its ``units`` default is a tuple (one size per layer)."""
    return isinstance(keywords.get("units"), ast.Tuple)


def check_tune_space(config, fail) -> None:
    """What the schema cannot see, before TensorFlow loads: the task and data are ones
    `procedge tune` searches, each name of ``tune.space`` can be set, integers where
    integers go, and every window holds the dead time. ``fail(field, message)`` raises."""
    tune = config.tune
    if config.task not in TASKS:
        fail("task", f"`procedge tune` searches tasks {list(TASKS)}, not {config.task!r}")
    if config.data.batch is not None:
        fail("data.batch", "batch-end soft sensors are not tuned yet; tune without data.batch")
    keywords = builder_keywords(config.task, config.family)
    known = sorted({*keywords, *CONFIG_KEYS} - (set() if units_is_list(keywords) else {"layers"}))
    for name, param in tune.space.items():
        field = f"tune.space.{name}"
        if name not in keywords and name not in CONFIG_KEYS:
            from edge_runtime.validation import did_you_mean

            fail(field, f"{name!r} is neither a keyword of family {config.family!r} nor a "
                 f"config key{did_you_mean(name, known)} (searchable: {', '.join(known)})")
        _check_values(config, name, param, keywords, fail, field)


def _check_values(config, name: str, param: SearchParam, keywords: dict, fail,
                  field: str) -> None:
    values = param.values()
    default = keywords.get(name)
    integer = name in INTEGER_KEYS or (
        name == "units" and units_is_list(keywords)) or (
        isinstance(default, ast.Constant) and type(default.value) is int)
    if integer and not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        fail(field, f"{name} takes integers, got {values}")
    if integer and param.choices is None and not param.is_int:
        fail(field, f"{name} takes integers: min, max and step must be integers")
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if name in ("learning_rate", "dropout") and not numeric:
        fail(field, f"{name} takes numbers, got {values}")
    if name == "learning_rate" and min(values) <= 0:
        fail(field, f"learning rates are positive, got {values}")
    if name == "dropout" and not all(0 <= v < 1 for v in values):
        fail(field, f"dropout is a fraction in [0, 1), got {values}")
    if name in ("units", "layers", "batch_size", "filters", "depth", "kernel") and numeric \
            and min(values) < 1:
        fail(field, f"{name} is at least 1, got {values}")
    if name == "layers" and not units_is_list(keywords):
        fail(field, f"family {config.family!r} has no stack of recurrent layers "
             "(its units is one number); search units instead")
    if name == "window":
        _check_windows(config, values, fail, field)


def _check_windows(config, values: list, fail, field: str) -> None:
    period, dead = config.window.period_s, config.soft_sensor.dead_time_s
    for length in values:
        if length < 2:
            fail(field, f"a window is at least 2 steps, got {length}")
        if length * period < dead:
            fail(field, f"window {length} x {period:g} s = {length * period:g} s is shorter "
                 f"than soft_sensor.dead_time_s {dead:g} s: raise the smallest window")
