"""A small synthetic dataset in the VISION layout, for tests and the demo (deterministic per seed).

Each product gets a textured background of its own and each of the 44 classes a defect style of its own
(a shape and a colour no other class shares), so that a detector learns them in a few CPU epochs and a
class is told by its defect, not by the product around it. The trees carry the VISION quirks
the converter handles: ``.png`` for some products and ``.jpg`` for others, non-square images,
polygon-only annotations (``bbox`` empty or missing), a Roboflow-style category 0 with no
annotations, images without objects and an unlabeled ``inference`` split.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from visionops.data.errors import DataError
from visionops.data.staging import staged_dir
from visionops.data.vision import ANNOTATIONS_FILE, INFERENCE_SPLIT

# Products and classes of the VISION dataset, names as published.
VISION_CLASSES: dict[str, tuple[str, ...]] = {
    "Cable": ("break", "thunderbolt"),
    "Capacitor": ("0",),
    "Casting": ("Inclusoes", "Rechupe"),
    "Console": ("Collision", "Dirty", "Gap", "Scratch"),
    "Cylinder": ("Chip", "PistonMiss", "Porosity", "RCS"),
    "Electronics": ("damage",),
    "Groove": ("s_burr", "s_scratch"),
    "Hemisphere": ("Defect-A", "Defect-B", "Defect-C", "Defect-D"),
    "Lens": ("Fiber", "Flash Particle", "Hole", "Surface Damage", "Tear"),
    "PCB_1": ("missing_hole", "mouse_bite", "open_circuit", "short", "spur", "spurious_copper"),
    "PCB_2": tuple(f"defect{i}" for i in range(1, 8)),
    "Ring": ("t_contamination", "t_scratch", "unfinished_surface"),
    "Screw": ("defect",),
    "Wood": ("impurities", "pits"),
}
DEFAULT_PRODUCTS = ("Casting", "PCB_1", "Screw")
# Defaults: 3 products x 20 train images = 60 >= the drift check's 50 reference images;
# 3 x 10 inference images = 30 >= its 20 current images.
DEFAULT_TRAIN_IMAGES = 20
DEFAULT_VAL_IMAGES = 10
DEFAULT_INFERENCE_IMAGES = 10
DEFAULT_IMGSZ = 160
MARKER = "synth.json"

SHAPES = ("blob", "scratch", "square", "ring", "cross", "triangle")
COLOURS = ((25, 25, 25), (240, 240, 240), (220, 40, 40), (40, 90, 230),
           (240, 200, 30), (30, 170, 60), (200, 60, 200), (30, 200, 200))

Polygon = list[tuple[float, float]]


def class_style(product: str, class_index: int) -> tuple[str, tuple[int, int, int]]:
    """Shape and colour of ``product``'s class ``class_index``: unique across all VISION classes (44 < 8 x 6).

    The colour follows the class's position among all classes, the shape that position shifted by its row of
    eight, so that one product's classes (neighbours) differ in colour, and mostly in shape too.
    """
    position = 0
    for name, classes in VISION_CLASSES.items():
        if name == product:
            break
        position += len(classes)
    position += class_index
    row, column = divmod(position, len(COLOURS))
    return SHAPES[(column + row) % len(SHAPES)], COLOURS[column]


def _rng(seed: int, *keys: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def _background(
    rng: np.random.Generator, width: int, height: int, tone: float, tint: np.ndarray
) -> np.ndarray:
    """Grey texture: product tone and tint, low-frequency blotches, fine grain and faint stripes."""
    coarse = rng.normal(0.0, 18.0, size=(max(2, height // 16), max(2, width // 16))).astype(np.float32)
    blotches = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR))
    stripes = 6.0 * np.sin(np.arange(width) / rng.uniform(3.0, 7.0))[None, :]
    grey = tone + blotches + stripes
    return grey[:, :, None] + tint[None, None, :]


def _shape_polygon(rng: np.random.Generator, shape: str, cx: float, cy: float, size: float) -> Polygon:
    """Outline of a defect of ``shape`` centred on ``(cx, cy)`` spanning about ``size`` pixels."""
    if shape in {"blob", "ring"}:
        rx = size / 2 * (rng.uniform(0.6, 1.0) if shape == "blob" else 1.0)
        ry = size / 2 * (rng.uniform(0.6, 1.0) if shape == "blob" else 1.0)
        angles = np.linspace(0, 2 * math.pi, 16, endpoint=False)
        return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]
    if shape == "scratch":
        angle = rng.uniform(0, math.pi)
        dx, dy = math.cos(angle) * size / 2, math.sin(angle) * size / 2
        nx, ny = -math.sin(angle) * 2.0, math.cos(angle) * 2.0
        return [(cx - dx + nx, cy - dy + ny), (cx + dx + nx, cy + dy + ny),
                (cx + dx - nx, cy + dy - ny), (cx - dx - nx, cy - dy - ny)]
    if shape == "triangle":
        return [(cx, cy - size / 2), (cx + size / 2, cy + size / 2), (cx - size / 2, cy + size / 2)]
    half = size / 2  # square and cross: the square they fill
    return [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]


def _draw(draw: ImageDraw.ImageDraw, shape: str, polygon: Polygon, colour: tuple[int, int, int]) -> None:
    if shape == "ring":
        draw.polygon(polygon, outline=colour, width=3)
    elif shape == "cross":
        (x1, y1), _, (x2, y2), _ = polygon
        draw.line([(x1, y1), (x2, y2)], fill=colour, width=3)
        draw.line([(x1, y2), (x2, y1)], fill=colour, width=3)
    else:
        draw.polygon(polygon, fill=colour)


def _extent(polygon: Polygon) -> list[float]:
    xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _overlaps(box: list[float], others: list[list[float]]) -> bool:
    x, y, w, h = box
    return any(x < ox + ow and ox < x + w and y < oy + oh and oy < y + h for ox, oy, ow, oh in others)


def _image(rng: np.random.Generator, spec: dict[str, Any], n_objects: int) -> tuple[Image.Image, list[dict]]:
    """One image and its objects (``class_index``, ``polygon``)."""
    width, height = spec["width"], spec["height"]
    pixels = _background(rng, width, height, spec["tone"], spec["tint"])
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    objects: list[dict] = []
    for _ in range(n_objects):
        k = int(rng.integers(len(spec["classes"])))
        shape, colour = class_style(spec["product"], k)
        for _attempt in range(20):
            size = rng.uniform(0.14, 0.3) * min(width, height)
            cx = rng.uniform(size / 2 + 2, width - size / 2 - 2)
            cy = rng.uniform(size / 2 + 2, height - size / 2 - 2)
            polygon = _shape_polygon(rng, shape, cx, cy, size)
            if not _overlaps(_extent(polygon), [_extent(o["polygon"]) for o in objects]):
                _draw(draw, shape, polygon, colour)
                objects.append({"class_index": k, "polygon": polygon})
                break
    grain = rng.normal(0.0, 6.0, size=(height, width, 1))
    noisy = np.clip(np.asarray(image, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(noisy), objects


def _annotation(ann_id: int, image_id: int, category_id: int, polygon: Polygon) -> dict[str, Any]:
    box = [round(v, 2) for v in _extent(polygon)]
    flat = [round(c, 2) for point in polygon for c in point]
    area = 0.5 * abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(polygon, polygon[1:] + polygon[:1],
                                                                        strict=True)))
    ann: dict[str, Any] = {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": box,
                           "area": round(area, 2), "segmentation": [flat], "iscrowd": 0}
    if ann_id % 8 == 3:  # polygon only: empty bbox
        ann["bbox"] = []
    elif ann_id % 8 == 7:  # polygon only: no bbox at all
        del ann["bbox"]
    return ann


def _product_spec(product: str, index: int, imgsz: int, seed: int) -> dict[str, Any]:
    rng = _rng(seed, product, "spec")
    height = imgsz if index % 2 == 0 else max(32, int(imgsz * 3 / 4) // 8 * 8)
    tint = rng.normal(0.0, 10.0, size=3)
    parent = "defects" if index % 2 == 0 else product.lower()
    return {"product": product, "classes": VISION_CLASSES[product], "ext": "png" if index % 2 == 0 else "jpg",
            "width": imgsz, "height": height, "tone": float(rng.uniform(100, 150)), "tint": tint,
            "parent": parent}


def _write_split(root: Path, product: str, split: str, count: int, spec: dict[str, Any], seed: int) -> None:
    split_dir = root / product / split
    split_dir.mkdir(parents=True)
    rng = _rng(seed, product, split)
    categories = [{"id": 0, "name": spec["parent"], "supercategory": "none"}]
    categories += [{"id": i + 1, "name": name, "supercategory": spec["parent"]}
                   for i, name in enumerate(spec["classes"])]
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    labeled = split != INFERENCE_SPLIT
    for i in range(count):
        n_objects = 0 if i % 6 == 5 else int(rng.integers(1, 4))
        image, objects = _image(rng, spec, n_objects)
        file_name = f"{split}_{i:04d}.{spec['ext']}"
        image.save(split_dir / file_name, **({"quality": 92} if spec["ext"] == "jpg" else {}))
        images.append({"id": i, "file_name": file_name, "width": image.width, "height": image.height,
                       "date_captured": "2023-01-01T00:00:00+00:00"})
        if labeled:
            for obj in objects:
                annotations.append(_annotation(len(annotations), i, obj["class_index"] + 1, obj["polygon"]))
    coco = {"info": {"description": f"VisionOps synthetic {product} {split}", "version": "1"},
            "licenses": [], "categories": categories, "images": images, "annotations": annotations}
    (split_dir / ANNOTATIONS_FILE).write_text(json.dumps(coco))


def is_synthetic_tree(path: Path) -> bool:
    """True when ``path`` was written by :func:`generate` (safe to replace)."""
    try:
        return json.loads((path / MARKER).read_text()).get("generator") == __name__
    except (OSError, ValueError, AttributeError):
        return False


def generate(
    out: str | Path,
    products: Sequence[str] | None = None,
    seed: int = 0,
    train_images: int = DEFAULT_TRAIN_IMAGES,
    val_images: int = DEFAULT_VAL_IMAGES,
    inference_images: int = DEFAULT_INFERENCE_IMAGES,
    imgsz: int = DEFAULT_IMGSZ,
) -> Path:
    """Write a synthetic VISION tree at ``out`` and return it (replaces a previous synthetic tree).

    ``products`` are VISION product names (case-insensitive; default Casting, PCB_1, Screw).
    Same arguments -> same bytes.
    """
    by_lower = {name.lower(): name for name in VISION_CLASSES}
    chosen: list[str] = []
    for wanted in products or DEFAULT_PRODUCTS:
        name = by_lower.get(wanted.strip().lower())
        if name is None:
            raise DataError(f"unknown VISION product {wanted!r}; available: {', '.join(VISION_CLASSES)}")
        if name not in chosen:
            chosen.append(name)
    chosen.sort()
    for label, value, low in (("train_images", train_images, 1), ("val_images", val_images, 1),
                              ("inference_images", inference_images, 0), ("imgsz", imgsz, 32)):
        if int(value) < low:
            raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
    counts = {"train": train_images, "val": val_images, INFERENCE_SPLIT: inference_images}
    out = Path(out).absolute()
    with staged_dir(out, is_synthetic_tree, "synthetic dataset") as tmp:
        for product in chosen:
            # looks (extension, aspect, tone) follow the product, not the selection
            spec = _product_spec(product, list(VISION_CLASSES).index(product), imgsz, seed)
            for split, count in counts.items():
                _write_split(tmp, product, split, count, spec, seed)
        marker = {"generator": __name__, "seed": seed, "products": chosen, "images": counts, "imgsz": imgsz}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return out
