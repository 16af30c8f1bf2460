"""COCO boxes and polygons -> normalised YOLO boxes (pure functions)."""

from __future__ import annotations

import math
import reprlib
from collections.abc import Sequence
from typing import Any

from pycocotools import mask as mask_utils

# A box narrower or lower than this many pixels after clamping is degenerate and dropped.
MIN_BOX_PX = 1.0

YoloBox = tuple[float, float, float, float]  # cx, cy, w, h in [0, 1]
# pycocotools stores runs as 32-bit unsigned integers; a compressed run (a difference of two runs
# from the third on) then takes at most 7 groups of 5 bits.
MAX_RLE_RUN = 2**32 - 1
MAX_RLE_GROUPS = 7


def _finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite JSON number (not a bool), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range
        return None
    return number if math.isfinite(number) else None


def bbox_values(bbox: Any) -> list[float]:
    """A COCO ``bbox`` as ``[x, y, w, h]``; :class:`ValueError` unless it is four finite numbers with ``w, h >= 0``."""
    values = [_finite(v) for v in bbox] if isinstance(bbox, list | tuple) and len(bbox) == 4 else []
    numbers = [v for v in values if v is not None]
    if len(numbers) != 4:
        raise ValueError(f"bbox must be four finite numbers [x, y, width, height], got {reprlib.repr(bbox)}")
    if numbers[2] < 0 or numbers[3] < 0:
        raise ValueError(f"bbox has a negative width or height: {reprlib.repr(bbox)}")
    return numbers


def _compressed_counts(text: str) -> list[int]:
    """Run lengths of a COCO compressed RLE string (pycocotools' ``rleFrString`` format), checked.

    Each run is 5-bit groups offset by 48 (bit 0x20: more groups follow, bit 0x10 of the last group:
    negative); from the third run on, a run is stored as the difference to the run two before.
    """
    counts: list[int] = []
    value = shift = 0
    for char in text:
        group = ord(char) - 48
        if not 0 <= group < 64:
            raise ValueError(f"RLE counts hold {char!r}, outside the compressed RLE alphabet '0'..'o'")
        value |= (group & 0x1F) << shift
        shift += 5
        if shift > MAX_RLE_GROUPS * 5:
            raise ValueError("RLE counts hold a negative or out-of-range run")
        if group & 0x20:
            continue
        if group & 0x10:
            value -= 1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
        value = shift = 0
    if shift:
        raise ValueError("RLE counts end in the middle of a run")
    return counts


def rle_object(segmentation: dict[str, Any]) -> dict[str, Any]:
    """Check a COCO RLE (``size`` = ``[h, w]``, ``counts`` list or compressed string) and return it for pycocotools.

    :class:`ValueError` unless every run is a non-negative integer and the runs add up to ``h * w``
    (pycocotools trusts both: a wrong total reads or writes past its buffers).
    """
    size, counts = segmentation.get("size"), segmentation.get("counts")
    if (not isinstance(size, list | tuple) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise ValueError(f"RLE size must be [height, width] with positive integers, got {reprlib.repr(size)}")
    if isinstance(counts, str | bytes):
        text = counts.decode("ascii", errors="replace") if isinstance(counts, bytes) else counts
        runs = _compressed_counts(text)
    elif isinstance(counts, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
        runs = counts
    else:
        raise ValueError(f"RLE counts must be a list of integers or a compressed string, got {reprlib.repr(counts)}")
    if any(run < 0 or run > MAX_RLE_RUN for run in runs):
        raise ValueError("RLE counts hold a negative or out-of-range run")
    height, width = size
    if sum(runs) != height * width:
        raise ValueError(f"RLE counts cover {sum(runs)} pixels, not the {height}x{width} = {height * width} "
                         "of its size")
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [height, width], "counts": counts}


def polygon_extent(segmentation: Any) -> list[float] | None:
    """``[x, y, w, h]`` spanned by a COCO segmentation (polygons or RLE); ``None`` when empty.

    Polygons shorter than one point are ignored and a dangling coordinate is dropped (quirks of real
    exports); a non-numeric or non-finite coordinate, or an RLE that does not decode, raises :class:`ValueError`.
    """
    if segmentation is None:
        return None
    if isinstance(segmentation, dict):  # RLE, compressed or not
        x, y, w, h = (float(v) for v in mask_utils.toBbox(rle_object(segmentation)))
        return [x, y, w, h] if w > 0 and h > 0 else None
    if not isinstance(segmentation, list):
        raise ValueError(f"segmentation must be a list of polygons or an RLE object, got {reprlib.repr(segmentation)}")
    xs: list[float] = []
    ys: list[float] = []
    for i, polygon in enumerate(segmentation):
        if not isinstance(polygon, list | tuple):
            raise ValueError(f"segmentation polygon {i} must be a list of numbers, got {reprlib.repr(polygon)}")
        coords = [v for v in (_finite(c) for c in polygon) if v is not None]
        if len(coords) != len(polygon):
            raise ValueError(f"segmentation polygon {i} holds a non-finite or non-numeric coordinate: "
                             f"{reprlib.repr(polygon)}")
        if len(coords) < 2:
            continue
        end = len(coords) - len(coords) % 2
        xs.extend(coords[0:end:2])
        ys.extend(coords[1:end:2])
    if not xs:
        return None
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def source_box(annotation: dict[str, Any]) -> tuple[list[float] | None, str]:
    """The pixel box of an annotation and where it came from: ``"bbox"``, ``"polygon"`` or ``"none"``.

    The COCO ``bbox`` wins when it has a positive width and height; a missing or empty ``[]`` bbox,
    or one of zero width or height, falls back to the extent of the ``segmentation``. Anything else
    that is not four finite numbers, and a malformed segmentation (checked even when the bbox
    wins), raises :class:`ValueError` saying why.
    """
    extent = polygon_extent(annotation.get("segmentation"))
    bbox = annotation.get("bbox", [])
    if not (isinstance(bbox, list) and not bbox):
        x, y, w, h = bbox_values(bbox)
        if w > 0 and h > 0:
            return [x, y, w, h], "bbox"
    if extent is not None:
        return extent, "polygon"
    return None, "none"


def clamp_xywh(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """Clip a pixel ``[x, y, w, h]`` box to the image; returns ``(x1, y1, x2, y2)`` (may be empty)."""
    x, y, w, h = (float(v) for v in box)
    x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    return x1, y1, x2, y2


def to_yolo(box: Sequence[float], width: int, height: int, min_px: float = MIN_BOX_PX) -> YoloBox | None:
    """Pixel ``[x, y, w, h]`` -> normalised ``(cx, cy, w, h)`` clamped to the image.

    Returns ``None`` for a degenerate box (narrower or lower than ``min_px`` after clamping).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    x1, y1, x2, y2 = clamp_xywh(box, width, height)
    if x2 - x1 < min_px or y2 - y1 < min_px:
        return None
    return ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)


def format_label_line(class_id: int, box: YoloBox) -> str:
    """One line of a YOLO label file: ``class cx cy w h`` with six decimals."""
    return f"{class_id} " + " ".join(f"{v:.6f}" for v in box)
