"""Progress of long CLI work: tqdm bars on a terminal, plain lines (at most one per 30 s) in Job logs.

The decision is stderr's: a TTY gets bars that redraw in place; anything else (a pod's log, a pipe,
pytest) gets no carriage returns, only an occasional ``<what>: <done>/<total> (<pct>%) after <s> s``
line from :func:`bar`. ``tty`` forces the decision (tests). Everything goes to stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")
Say = Callable[[str], None]

PLAIN_EVERY_S = 30.0  # seconds between two plain progress lines when stderr is not a terminal
STEP_FORMAT = "{desc} |{bar:20}| step {number}/{total_fmt} [{elapsed}] {step}"


def on_terminal(stream: TextIO | None = None) -> bool:
    """True when ``stream`` (default: the current ``sys.stderr``) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # None, or a closed stream
        return False


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def meter(total: int, desc: str, unit: str = "image", *, tty: bool | None = None, **options: Any) -> tqdm:
    """A tqdm bar on stderr, drawn only on a terminal (elsewhere a silent, disabled one)."""
    shown = on_terminal() if tty is None else tty
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not shown, dynamic_ncols=True,
                **{"leave": False, **options})


def bar(
    items: Iterable[T], total: int, desc: str, unit: str = "image", *, tty: bool | None = None,
    say: Say | None = None, every: float = PLAIN_EVERY_S,
) -> Iterator[T]:
    """Iterate ``items``: a bar on a terminal, else a plain line through ``say`` (stderr) every ``every`` s."""
    shown = on_terminal() if tty is None else tty
    if shown:
        with meter(total, desc, unit, tty=True) as progress:
            for item in items:
                yield item
                progress.update()
        return
    say = say or _stderr
    started = last = time.monotonic()
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= every and done < total:
            say(f"{desc}: {done}/{total} ({100 * done // max(total, 1)}%) after {now - started:.0f} s")
            last = now


class Steps:
    """Numbered steps of a long command; on a terminal each start draws one line on stderr:
    ``<desc> <bar> step k/N [elapsed] <name>`` (a whole line: other processes may write between steps)."""

    def __init__(self, total: int, desc: str, *, tty: bool | None = None) -> None:
        self.total = total
        self.desc = desc
        self.shown = on_terminal() if tty is None else tty
        self.started = time.monotonic()

    def line(self, number: int, name: str, done: int) -> str:
        """The line of step ``number`` named ``name``, with ``done`` steps finished."""
        return tqdm.format_meter(done, self.total, time.monotonic() - self.started, prefix=self.desc,
                                 bar_format=STEP_FORMAT, number=number, step=name)

    def start(self, number: int, name: str) -> None:
        """Step ``number`` (1-based) named ``name`` begins."""
        if self.shown:
            _stderr(self.line(number, name, number - 1))

    def finish(self, name: str = "done") -> None:
        """Every step is done: the full bar and the total elapsed time."""
        if self.shown:
            _stderr(self.line(self.total, name, self.total))
