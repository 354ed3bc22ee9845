"""Nested selection: every setting (monitor, scaling, smoothing, limit level and margin) is
chosen on one part of the labelled data and reported on another that never informed it.

The split of labour is what makes it leak-proof. Scores and alarm flags are computed for
every candidate without reading any label (models and limits see normal rows only); then
:func:`choose` ranks candidates by a metric that the caller computes from the *choosing*
part's labels alone, and the chosen candidate is reported on the other part. A test poisons
the reported part's labels and checks that the choice does not move.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np

from edge_runtime.alarms import AlarmLogic
from edge_runtime.bundle import ThresholdSpec
from edge_runtime.commissioning import limit_on
from edge_runtime.smoothing import smooth_scores
from evaluation.common import flags_from
from training import thresholds


@dataclass(frozen=True)
class Alarm:
    """How a score stream becomes a flag: EWMA, then a limit = margin × level point of the
    filtered normal scores (``rule``: :mod:`training.thresholds`)."""

    ewma: float = 1.0
    level: float = 0.99
    margin: float = 1.0
    rule: thresholds.Rule = "quantile"

    def template(self) -> ThresholdSpec:
        """The limit rule in numbers, as a bundle records it (limits still unset)."""
        return ThresholdSpec(raise_at=0.0, clear_at=0.0, ewma_alpha=self.ewma,
                             method=self.rule, level=self.level, margin=self.margin,
                             clear_ratio=1.0,
                             rule=f"{self.level} {self.rule} of filtered normal scores x "
                                  f"{self.margin} (ewma {self.ewma})")

    def spec(self, normal_scores: np.ndarray) -> ThresholdSpec:
        """Limits by the gateway's own commissioning rule
        (:func:`edge_runtime.commissioning.limit_on`), so evaluated limits are the ones a
        plant's commissioning would set."""
        s = np.asarray(normal_scores, np.float64)
        raise_at, clear_at = limit_on(s[np.isfinite(s)], self.template())
        return self.template().model_copy(update={"raise_at": raise_at, "clear_at": clear_at})


def alarm_grid(ewmas: Iterable[float], levels: Iterable[float], margins: Iterable[float],
               rule: thresholds.Rule = "quantile") -> list[Alarm]:
    return [Alarm(e, lv, m, rule) for e in ewmas for lv in levels for m in margins]


@dataclass(frozen=True)
class Candidate:
    """One complete setting: a monitor under a scaling with an alarm rule."""

    monitor: str
    alarm: Alarm
    scale: str = "file"

    def describe(self) -> dict:
        return {"monitor": self.monitor, "scale": self.scale, **asdict(self.alarm)}


@dataclass(frozen=True)
class Criterion:
    """Best ``metric`` among candidates whose false-alarm rate is at most ``far_max`` (%);
    if none is, the best ``metric`` overall; ties go to the lower FAR, then grid order."""

    metric: str
    far_max: float

    def key(self, m: dict) -> tuple:
        return (m["far"] <= self.far_max, m[self.metric], -m["far"])


def choose(candidates: list[Candidate], metrics_on_choosing: Callable[[Candidate], dict],
           criterion: Criterion) -> tuple[Candidate, dict]:
    """The candidate ``criterion`` ranks first, by metrics from the choosing part only.

    ``metrics_on_choosing`` must read labels of the choosing part and nothing else: that is
    the whole contract, and the only place labels enter the choice."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    scored = [(c, metrics_on_choosing(c)) for c in candidates]
    best = max(range(len(scored)), key=lambda i: (criterion.key(scored[i][1]), -i))
    return scored[best]


def alarm_flags(specs: list[ThresholdSpec], streams: list[np.ndarray],
                smoothed: dict | None = None) -> np.ndarray:
    """A row alarms if any stream's filtered score passes its own limit (rows without a
    score are normal): :func:`evaluation.common.flags_from`, i.e. the gateway's replay.

    A grid scores the same stream under many limits: pass one ``smoothed`` dict per set of
    streams and each stream is filtered once per smoothing setting (the filter does not depend
    on the limit); the alarm logic then runs on the filtered scores, with the same result."""
    flags = np.zeros(len(streams[0]), dtype=bool)
    for i, (spec, st) in enumerate(zip(specs, streams, strict=True)):
        if smoothed is None:
            flags |= flags_from(spec, st)
            continue
        key = (i, spec.ewma_alpha, spec.vote_k, spec.vote_n)
        if key not in smoothed:
            smoothed[key] = filtered(spec, st)
        flags |= active(spec, smoothed[key])
    return flags


def filtered(spec: ThresholdSpec, stream: np.ndarray) -> np.ndarray:
    """The gateway's filtered score per row (NaN where the row has no score)."""
    out = np.full(len(stream), np.nan)
    ok = np.isfinite(stream)
    out[ok] = smooth_scores(spec, stream[ok])
    return out


def active(spec: ThresholdSpec, filtered_scores: np.ndarray) -> np.ndarray:
    """Alarm-active flag per row from filtered scores, by the gateway's :class:`AlarmLogic`;
    without delays or deadband that logic is exactly ``score >= raise_at``, computed at once."""
    ok = np.isfinite(filtered_scores)
    out = np.zeros(len(filtered_scores), dtype=bool)
    if spec.on_delay == spec.off_delay == 1 and spec.clear_at == spec.raise_at:
        out[ok] = filtered_scores[ok] >= spec.raise_at
        return out
    logic = AlarmLogic(spec)
    for i in np.flatnonzero(ok):
        logic.update(float(filtered_scores[i]))
        out[i] = logic.active
    return out


def limit_ratio(specs: list[ThresholdSpec], streams: list[np.ndarray]) -> np.ndarray:
    """Per row: the largest filtered score / its limit over the streams (≥ 1: past a limit),
    the one curve a plot needs to show score against limit for any monitor."""
    out = np.full(len(streams[0]), np.nan)
    for spec, st in zip(specs, streams, strict=True):
        out = np.fmax(out, filtered(spec, st) / max(spec.raise_at, 1e-300))
    return out


def add_protocol_args(p: argparse.ArgumentParser, unit: str, nested: str, aes: str,
                      epochs: int) -> None:
    """``--protocol`` and the nested grid's ``--nested-*`` flags of an anomaly benchmark;
    ``unit`` names what the development settings are applied to (file, fault), ``nested``
    how the nested protocol splits it."""
    p.add_argument("--protocol", default="development", choices=["development", "nested"],
                   help=f"development: the settings given here, on every {unit} (label-"
                        f"informed if they were chosen by looking at these {unit}s); nested:"
                        f" {nested}")
    p.add_argument("--nested-aes", default=aes, type=autoencoders,
                   help="nested: autoencoders FAMILY:WINDOW in the grid (comma list; '' none)")
    p.add_argument("--nested-epochs", type=int, default=epochs, help="nested: training epochs")


# what a nested run reads of the command line; every other setting it chooses itself
NESTED_USES = frozenset({"help", "protocol", "root", "nested_aes", "nested_epochs", "seed",
                         "edge_mode", "json", "plots", "exclude_tags"})


def refuse_development_settings(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--protocol nested`` chooses the family, window, smoothing, level … itself: a
    development setting given beside it would be silently ignored, so it is an error that
    names the flag."""
    given = [a.option_strings[0] for a in p._actions
             if a.dest not in NESTED_USES and a.option_strings
             and getattr(args, a.dest) != p.get_default(a.dest)]
    if given:
        p.error(f"{', '.join(given)}: development-protocol setting(s); --protocol nested "
                f"chooses these on the choosing part itself (use --nested-aes, "
                f"--nested-epochs, --seed, --edge-mode)")


def autoencoders(text: str) -> tuple[tuple[str, int], ...]:
    """``conv_ae:10,lstm_ae:20`` → ``(("conv_ae", 10), ("lstm_ae", 20))``."""
    pairs = [a.split(":") for a in text.split(",") if a]
    if any(len(pair) != 2 or not pair[1].isdigit() for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected FAMILY:WINDOW[,…], got {text!r}")
    return tuple((family, int(window)) for family, window in pairs)


# the leading columns of both benchmarks' nested tables
PICK_COLUMNS: list[tuple[str, Callable[[dict], object]]] = [
    ("pick", lambda r: r["pick"]),
    ("choose on → test on", lambda r: f"{r['choose_on']} → {r['test_on']}"),
    ("monitor", lambda r: r["model"]), ("variant", lambda r: r["variant"]),
    ("mode", lambda r: r["mode"])]


def print_markdown(rows: list[dict], columns: list[tuple[str, Callable[[dict], object]]]
                   ) -> None:
    """One Markdown row per result: ``columns`` are (header, cell of a row)."""
    print("| " + " | ".join(h for h, _ in columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(str(cell(r)) for _, cell in columns) + " |")
