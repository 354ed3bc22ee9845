"""Progress bars for the long loops outside a fit (conversion candidates, benchmark files and
families, a historian replay): tqdm on stderr when stderr is a terminal, nothing at all
otherwise (a log file, CI, a pipe, ``--json`` consumers), so captured output stays clean.
A fit's epochs have their own line with an ETA (:class:`training.budget.Progress`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it",
             stream=None) -> Iterator[T]:
    """``items`` with a bar named ``desc``; ``disable=None`` is tqdm's own "only on a TTY"
    (it asks ``stream.isatty()``, stderr by default). The bar is removed when done: the
    caller prints its own summary."""
    return iter(tqdm(items, desc=desc, total=total, unit=unit, file=stream, disable=None,
                     leave=False, dynamic_ncols=True, mininterval=0.5))
