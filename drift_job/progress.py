"""Progress of long drift work: a tqdm bar on a terminal, nothing in Job logs (stderr not a TTY)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def bar(items: Iterable[T], total: int, desc: str, unit: str = "image") -> Iterator[T]:
    """Iterate ``items`` with a progress bar on stderr when stderr is a terminal (``disable=None``)."""
    yield from tqdm(items, total=total, desc=desc, unit=unit, disable=None, leave=False, dynamic_ncols=True)
