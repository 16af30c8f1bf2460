"""The one error type of the data layer, and how its message is shown."""

from __future__ import annotations


class DataError(ValueError):
    """Input data that cannot be used as given: the message names the offending path or product."""


def one_line(message: str) -> str:
    """``message`` as one line: line breaks and other unprintable characters escaped as ``repr`` does."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)
