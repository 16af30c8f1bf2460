"""Kept for old imports: the progress bar now lives in :mod:`visionops.progress`."""

from visionops.progress import bar

__all__ = ["bar"]
