"""Annotated sample grids of a prepared dataset: GT boxes with class names, one colour per class.

The CLI's answer to the old web UI's "annotated sample grid" and "filter by class". Pure helpers
(label parsing, class resolution, sampling, colours, layout) plus :func:`draw_boxes`, which
:mod:`visionops.analysis` reuses for its GT-vs-prediction images.
"""

from __future__ import annotations

import colorsys
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from visionops.data.boxes import YoloBox
from visionops.data.errors import DataError
from visionops.data.prepare import YOLO_IMAGE_SUFFIXES, PreparedDataset
from visionops.data.vision import LABELED_SPLITS

Colour = tuple[int, int, int]
XYXY = tuple[float, float, float, float]

DEFAULT_COUNT = 16
DEFAULT_TILE = 256
CAPTION_PX = 18
BACKGROUND: Colour = (32, 32, 32)
TEXT: Colour = (235, 235, 235)
_GOLDEN = 0.618033988749895


@dataclass(frozen=True)
class LabeledBox:
    """One ground-truth object of a YOLO label file."""

    class_id: int
    box: YoloBox  # cx, cy, w, h normalised to [0, 1]


@dataclass(frozen=True)
class LabeledImage:
    """An image of a prepared split and its ground-truth boxes."""

    path: Path
    boxes: tuple[LabeledBox, ...]

    @property
    def class_ids(self) -> set[int]:
        return {b.class_id for b in self.boxes}


@dataclass(frozen=True)
class DrawBox:
    """A box to draw: pixel corners, its text (above the box, or below with ``label_below``), its colour."""

    xyxy: XYXY
    label: str
    colour: Colour
    label_below: bool = False


# -- pure helpers ------------------------------------------------------------------------------


def parse_label_lines(text: str, nc: int, where: str = "label file") -> list[LabeledBox]:
    """Parse YOLO label text (``class cx cy w h`` per line); :class:`DataError` naming the bad line."""
    boxes: list[LabeledBox] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 5:
                raise ValueError
            class_id = int(parts[0])
            cx, cy, w, h = (float(v) for v in parts[1:])
        except ValueError:
            raise DataError(f"{where} line {number}: expected 'class cx cy w h', got {line.strip()!r}") from None
        if not 0 <= class_id < nc:
            raise DataError(f"{where} line {number}: class id {class_id} is outside 0..{nc - 1}")
        boxes.append(LabeledBox(class_id, (cx, cy, w, h)))
    return boxes


def yolo_to_xyxy(box: YoloBox, width: int, height: int) -> XYXY:
    """Normalised ``(cx, cy, w, h)`` -> pixel ``(x1, y1, x2, y2)`` in an image of ``width`` x ``height``."""
    cx, cy, w, h = box
    return ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)


def resolve_classes(wanted: Iterable[str], names: Sequence[str]) -> list[int]:
    """Class ids for names given as ``product/class`` or as an unambiguous bare ``class`` (any case).

    Raises :class:`DataError` listing the available names for an unknown or ambiguous one.
    """
    by_full = {name.lower(): i for i, name in enumerate(names)}
    ids: list[int] = []
    for raw in wanted:
        key = raw.strip().lower()
        if key in by_full:
            found = [by_full[key]]
        else:
            found = [i for i, name in enumerate(names) if name.lower().rsplit("/", 1)[-1] == key]
        if not found:
            raise DataError(f"unknown class {raw!r}; available: {', '.join(names)}")
        if len(found) > 1:
            raise DataError(f"class {raw!r} is ambiguous; use one of: {', '.join(names[i] for i in found)}")
        if found[0] not in ids:
            ids.append(found[0])
    return ids


def pick_samples(images: Sequence[LabeledImage], class_ids: Iterable[int], count: int,
                 seed: int) -> list[LabeledImage]:
    """Up to ``count`` images drawn at random (``seed``), sorted by file name.

    With ``class_ids``, only images holding at least one of those classes are candidates.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    wanted = set(class_ids)
    pool = [image for image in images if not wanted or image.class_ids & wanted]
    chosen = random.Random(seed).sample(pool, min(count, len(pool)))
    return sorted(chosen, key=lambda image: image.path.name)


def class_colours(n: int) -> list[Colour]:
    """``n`` bright, well separated RGB colours (golden-ratio hues); colour i is stable for a given i."""
    colours = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * _GOLDEN) % 1.0, 0.75, 0.95)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


def grid_shape(n: int) -> tuple[int, int]:
    """``(rows, cols)`` of the most square grid holding ``n`` tiles (never taller than wide)."""
    if n < 1:
        raise ValueError(f"a grid needs at least one tile, got {n}")
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def fit_size(width: int, height: int, side: int) -> tuple[int, int]:
    """Size of a ``width`` x ``height`` image scaled (up or down) to fit a ``side`` x ``side`` square."""
    if width <= 0 or height <= 0 or side <= 0:
        raise ValueError(f"sizes must be positive, got {width}x{height} into {side}")
    scale = side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def text_colour(background: Colour) -> Colour:
    """Black or white, whichever reads better on ``background``."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


# -- drawing -----------------------------------------------------------------------------------


def font(size: int = 12) -> Any:
    """Pillow's bundled font at ``size`` px (the bitmap default when FreeType is unavailable)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def draw_boxes(image: Image.Image, boxes: Iterable[DrawBox], size: int = 12) -> Image.Image:
    """Draw rectangles, each with a filled label tag above (or below) it, kept inside the image."""
    draw = ImageDraw.Draw(image)
    face = font(size)
    width = max(2, round(min(image.size) / 160))
    for item in boxes:
        x1, y1, x2, y2 = item.xyxy
        draw.rectangle((x1, y1, max(x1, x2), max(y1, y2)), outline=item.colour, width=width)
        if not item.label:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), item.label, font=face)
        tag_w, tag_h = right - left + 4, bottom - top + 4
        tx = max(0.0, min(x1, image.width - tag_w))
        if item.label_below:
            ty = y2 if y2 + tag_h <= image.height else max(y2, y1) - tag_h
        else:
            ty = y1 - tag_h if y1 - tag_h >= 0 else y1
        draw.rectangle((tx, ty, tx + tag_w, ty + tag_h), fill=item.colour)
        draw.text((tx + 2 - left, ty + 2 - top), item.label, fill=text_colour(item.colour), font=face)
    return image


def annotated_tile(image: LabeledImage, names: Sequence[str], colours: Sequence[Colour], side: int) -> Image.Image:
    """The image scaled to fit ``side`` with its GT boxes and class names drawn."""
    with Image.open(image.path) as raw:
        picture = raw.convert("RGB")
    picture = picture.resize(fit_size(*picture.size, side), Image.Resampling.BILINEAR)
    width, height = picture.size
    return draw_boxes(picture, (
        DrawBox(yolo_to_xyxy(b.box, width, height), names[b.class_id], colours[b.class_id]) for b in image.boxes
    ))


def _legend_rows(entries: Sequence[tuple[str, Colour]], width: int, face: Any) -> list[list[tuple[str, Colour, int]]]:
    rows: list[list[tuple[str, Colour, int]]] = [[]]
    x = 0
    for name, colour in entries:
        item_w = 14 + round(face.getlength(name)) + 16
        if rows[-1] and x + item_w > width:
            rows.append([])
            x = 0
        rows[-1].append((name, colour, x))
        x += item_w
    return rows if rows[0] else []


def compose_grid(tiles: Sequence[Image.Image], captions: Sequence[str], side: int,
                 legend: Sequence[tuple[str, Colour]] = ()) -> Image.Image:
    """Tiles centred in ``side``-px cells with a caption under each, then a colour legend."""
    rows, cols = grid_shape(len(tiles))
    face = font(11)
    cell_h = side + CAPTION_PX
    width = cols * side
    legend_rows = _legend_rows(legend, width - 8, face)
    height = rows * cell_h + len(legend_rows) * CAPTION_PX + (8 if legend_rows else 0)
    grid = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for index, (tile, caption) in enumerate(zip(tiles, captions, strict=True)):
        x0, y0 = (index % cols) * side, (index // cols) * cell_h
        grid.paste(tile, (x0 + (side - tile.width) // 2, y0 + (side - tile.height) // 2))
        text = caption
        while text and face.getlength(text) > side - 6:
            text = text[:-2]
        if text != caption:
            text = text[:-1] + "…"
        draw.text((x0 + 3, y0 + side + 3), text, fill=TEXT, font=face)
    y = rows * cell_h + 4
    for row in legend_rows:
        for name, colour, x in row:
            draw.rectangle((4 + x, y + 3, 4 + x + 10, y + 13), fill=colour)
            draw.text((4 + x + 14, y + 2), name, fill=TEXT, font=face)
        y += CAPTION_PX
    return grid


# -- reading a prepared split and the whole command ---------------------------------------------


def read_split(dataset: PreparedDataset, split: str = "val") -> list[LabeledImage]:
    """Images of ``split`` (sorted by name) with the boxes of their label files."""
    if split not in LABELED_SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(LABELED_SPLITS)}")
    images_dir, labels_dir = dataset.root / "images" / split, dataset.root / "labels" / split
    if not images_dir.is_dir():
        raise DataError(f"prepared dataset {dataset.root} has no {images_dir.relative_to(dataset.root)} folder")
    out = []
    for path in sorted(p for p in images_dir.iterdir() if p.suffix.lower() in YOLO_IMAGE_SUFFIXES):
        label = labels_dir / f"{path.stem}.txt"
        text = label.read_text() if label.is_file() else ""
        out.append(LabeledImage(path, tuple(parse_label_lines(text, len(dataset.names), str(label)))))
    return out


def sample_grid(
    dataset: str | Path | PreparedDataset,
    out: str | Path,
    split: str = "val",
    classes: Sequence[str] = (),
    count: int = DEFAULT_COUNT,
    seed: int = 0,
    tile: int = DEFAULT_TILE,
) -> dict[str, Any]:
    """Write a PNG grid of up to ``count`` annotated images of ``split``; return what it shows.

    ``classes`` keeps only images holding at least one of them (``product/class`` or bare class
    name). :class:`DataError` for a folder that is not a prepared dataset, an unknown class, or
    no matching image.
    """
    if tile < 32:
        raise ValueError(f"tile must be >= 32 px, got {tile}")
    data = dataset if isinstance(dataset, PreparedDataset) else PreparedDataset.load(dataset)
    class_ids = resolve_classes(classes, data.names)
    images = read_split(data, split)
    chosen = pick_samples(images, class_ids, count, seed)
    if not chosen:
        wanted = f" holding {', '.join(data.names[i] for i in class_ids)}" if class_ids else ""
        raise DataError(f"no {split} image{wanted} in {data.root}")
    colours = class_colours(len(data.names))
    tiles = [annotated_tile(image, data.names, colours, tile) for image in chosen]
    shown = sorted(set().union(*(image.class_ids for image in chosen)))
    grid = compose_grid(tiles, [image.path.name for image in chosen], tile,
                        [(data.names[i], colours[i]) for i in shown])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out, format="PNG")
    return {
        "out": str(out),
        "split": split,
        "candidates": sum(1 for image in images if not class_ids or image.class_ids & set(class_ids)),
        "images": [image.path.name for image in chosen],
        "objects": sum(len(image.boxes) for image in chosen),
        "classes": [data.names[i] for i in shown],
        "size": list(grid.size),
    }
