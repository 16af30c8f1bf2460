"""Open untrusted images safely: the pixel count is checked from the header, before anything is decoded.

A small file can decode to gigabytes (a 65 KB PNG of 8192x8192 pixels is 256 MB as RGBA), so a
component that decodes images it did not make opens them through :func:`open_image` with its own
configured cap (the drift job: ``max_image_pixels`` in ``configs/drift.yaml``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from PIL import Image


class ImageTooLarge(ValueError):
    """An image with more pixels than the configured cap (refused before decoding)."""


def check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    """Raise :class:`ImageTooLarge` when ``width * height`` of ``size`` exceeds ``max_pixels``."""
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLarge(f"{width}x{height} pixels is over the limit of {max_pixels} pixels (max_image_pixels)")


@contextmanager
def open_image(source: str | Path | BinaryIO, max_pixels: int) -> Iterator[Image.Image]:
    """``PIL.Image.open(source)`` (header only, lazy) after :func:`check_pixels`; closed on exit."""
    with Image.open(source) as image:
        check_pixels(image.size, max_pixels)
        yield image
