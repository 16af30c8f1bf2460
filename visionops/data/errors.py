"""The one error type of the data layer."""

from __future__ import annotations


class DataError(ValueError):
    """Input data that cannot be used as given: the message names the offending path or product."""
