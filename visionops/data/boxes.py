"""COCO boxes and polygons -> normalised YOLO boxes (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pycocotools import mask as mask_utils

# A box narrower or lower than this many pixels after clamping is degenerate and dropped.
MIN_BOX_PX = 1.0

YoloBox = tuple[float, float, float, float]  # cx, cy, w, h in [0, 1]


def polygon_extent(segmentation: Any) -> list[float] | None:
    """``[x, y, w, h]`` spanned by a COCO segmentation (polygons or RLE); ``None`` when empty."""
    if isinstance(segmentation, dict):  # RLE, compressed or not
        rle = segmentation
        if isinstance(rle.get("counts"), list):
            rle = mask_utils.frPyObjects(rle, rle["size"][0], rle["size"][1])
        x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
        return [x, y, w, h] if w > 0 and h > 0 else None
    if not isinstance(segmentation, list):
        return None
    xs: list[float] = []
    ys: list[float] = []
    for polygon in segmentation:
        if not isinstance(polygon, Sequence) or len(polygon) < 2:
            continue
        coords = [float(v) for v in polygon]
        end = len(coords) - len(coords) % 2
        xs.extend(coords[0:end:2])
        ys.extend(coords[1:end:2])
    if not xs:
        return None
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def source_box(annotation: dict[str, Any]) -> tuple[list[float] | None, str]:
    """The pixel box of an annotation and where it came from: ``"bbox"``, ``"polygon"`` or ``"none"``.

    The COCO ``bbox`` wins when it has four numbers with a positive width and height;
    otherwise the extent of the ``segmentation`` is used.
    """
    bbox = annotation.get("bbox")
    if isinstance(bbox, Sequence) and len(bbox) == 4:
        x, y, w, h = (float(v) for v in bbox)
        if w > 0 and h > 0:
            return [x, y, w, h], "bbox"
    extent = polygon_extent(annotation.get("segmentation"))
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
