"""Read the VISION layout: ``<root>/<Product>/{train,val,inference}/_annotations.coco.json``.

Each labeled split is read with pycocotools; image sizes are checked against the files on disk and
every annotation becomes a normalised box (from ``bbox``, or from the polygon extent when the
``bbox`` is missing or empty). Category names stay product-local here; the global class map is
built by :mod:`visionops.data.classmap`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any

from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO

from visionops.data.boxes import YoloBox, clamp_xywh, source_box, to_yolo
from visionops.data.errors import DataError
from visionops.progress import bar

ANNOTATIONS_FILE = "_annotations.coco.json"
LABELED_SPLITS = ("train", "val")
INFERENCE_SPLIT = "inference"
ALL_SPLITS = (*LABELED_SPLITS, INFERENCE_SPLIT)
# A box sticking out of the image by more than this many pixels is reported when clamped.
CLAMP_REPORT_PX = 1.0


@dataclass(frozen=True)
class Category:
    """One product-local COCO category."""

    id: int
    name: str
    supercategory: str = ""

    @property
    def key(self) -> str:
        """The name used to merge categories of one product: stripped and lowercased."""
        return self.name.strip().lower()


@dataclass(frozen=True)
class DataWarning:
    """Something odd in the input that the conversion worked around."""

    kind: str
    product: str
    split: str
    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "product": self.product, "split": self.split,
                "path": self.path, "message": self.message}


@dataclass(frozen=True)
class ObjectBox:
    """One annotated object: its product-local category key and normalised box."""

    category_key: str
    box: YoloBox
    origin: str  # "bbox" or "polygon"


@dataclass
class ImageRecord:
    """One image of a labeled split with its real size and its boxes."""

    product: str
    split: str
    file_name: str
    path: Path
    width: int
    height: int
    objects: list[ObjectBox] = field(default_factory=list)


@dataclass
class SplitData:
    """A product's split: its categories, images and the warnings raised while reading it."""

    product: str
    split: str
    json_path: Path
    categories: dict[int, Category]
    annotated_category_ids: set[int]
    images: list[ImageRecord]
    warnings: list[DataWarning]


def annotations_path(root: Path, product: str, split: str) -> Path:
    return Path(root) / product / split / ANNOTATIONS_FILE


def find_products(root: str | Path) -> list[str]:
    """Products under ``root``: sub-folders holding at least one split's annotation file (sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"source root {root} does not exist or is not a directory")
    return sorted(
        child.name
        for child in root.iterdir()
        if child.is_dir() and any((child / split / ANNOTATIONS_FILE).is_file() for split in ALL_SPLITS)
    )


def select_products(root: str | Path, products: list[str] | None = None) -> list[str]:
    """Resolve a product filter (case-insensitive) against the products found under ``root``."""
    available = find_products(root)
    if not available:
        raise DataError(
            f"no products found under {root}: expected <root>/<Product>/{{train,val}}/{ANNOTATIONS_FILE}"
        )
    if not products:
        return available
    by_lower = {name.lower(): name for name in available}
    chosen: list[str] = []
    for wanted in products:
        name = by_lower.get(wanted.strip().lower())
        if name is None:
            raise DataError(f"unknown product {wanted!r} under {root}; available: {', '.join(available)}")
        if name not in chosen:
            chosen.append(name)
    return sorted(chosen)


def load_coco(path: Path) -> COCO:
    """Read one COCO file with pycocotools; :class:`DataError` naming the file when it is unusable."""
    if not path.is_file():
        raise DataError(f"annotation file {path} is missing")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco = COCO(str(path))
    except (ValueError, AssertionError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise DataError(f"annotation file {path} is not valid COCO JSON: {exc}") from exc
    for key in ("images", "categories"):
        if not isinstance(coco.dataset.get(key), list):
            raise DataError(f"annotation file {path} has no {key!r} list")
    return coco


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` read from the image header only (the pixels are not decoded)."""
    if not path.is_file():
        raise DataError(f"image file {path} is missing")
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"image file {path} cannot be read as an image: {exc}") from exc


def _categories(coco: COCO, json_path: Path) -> dict[int, Category]:
    out: dict[int, Category] = {}
    for raw in coco.dataset["categories"]:
        try:
            category = Category(int(raw["id"]), str(raw["name"]), str(raw.get("supercategory") or ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"annotation file {json_path} has a category without id/name: {raw!r}") from exc
        out[category.id] = category
    return out


def _convert_annotation(
    ann: dict[str, Any], record: ImageRecord, categories: dict[int, Category], warn: Any, json_path: Path
) -> ObjectBox | None:
    """One annotation -> its box; odd ones are dropped with a warning, malformed ones raise :class:`DataError`."""
    where = f"{record.file_name} annotation {ann.get('id')}"
    try:
        box, origin = source_box(ann)
    except ValueError as exc:
        raise DataError(f"annotation file {json_path}: annotation {ann.get('id')!r} of image "
                        f"{record.file_name!r}: {exc}") from exc
    category = categories.get(ann.get("category_id"))  # type: ignore[arg-type]
    if category is None:
        warn("unknown_category", where, f"category_id {ann.get('category_id')!r} is not declared; dropped")
        return None
    if box is None:
        warn("no_box", where, "neither a usable bbox nor a polygon; dropped")
        return None
    yolo = to_yolo(box, record.width, record.height)
    if yolo is None:
        warn("degenerate_box", where, f"box {[round(v, 2) for v in box]} is empty inside the image; dropped")
        return None
    x1, y1, x2, y2 = clamp_xywh(box, record.width, record.height)
    overshoot = max(x1 - box[0], y1 - box[1], box[0] + box[2] - x2, box[1] + box[3] - y2)
    if overshoot > CLAMP_REPORT_PX:
        warn("clamped_box", where, f"box {[round(v, 2) for v in box]} clamped to the image")
    return ObjectBox(category.key, yolo, origin)


def image_path(split_dir: Path, file_name: str) -> Path:
    """``split_dir / file_name``, refused (:class:`ValueError`) unless it stays inside ``split_dir``.

    Absolute names and ``..`` parts (``/`` or ``\\`` separated) are refused outright; symlinks are
    followed and must land inside the split folder too.
    """
    parts = file_name.replace("\\", "/").split("/")
    if file_name.startswith(("/", "\\")) or PureWindowsPath(file_name).drive or ".." in parts:
        raise ValueError("must stay inside the split folder (no absolute path, no '..')")
    path = split_dir / file_name
    if not path.resolve().is_relative_to(split_dir.resolve()):
        raise ValueError(f"resolves to {path.resolve()}, outside the split folder {split_dir.resolve()}")
    return path


def load_split(
    root: str | Path, product: str, split: str, progress: Callable[[str], None] | None = None
) -> SplitData:
    """Read one labeled split of one product: categories, images with real sizes, boxes, warnings.

    A bar per image on a terminal; ``progress`` gets the occasional plain line otherwise.
    """
    json_path = annotations_path(Path(root), product, split)
    coco = load_coco(json_path)
    split_dir = json_path.parent
    categories = _categories(coco, json_path)
    warnings: list[DataWarning] = []

    def warn(kind: str, where: str, message: str) -> None:
        warnings.append(DataWarning(kind, product, split, where, message))

    images: list[ImageRecord] = []
    seen: set[str] = set()
    annotated: set[int] = set()
    listed = sorted(coco.dataset["images"], key=lambda i: (str(i.get("file_name")), str(i.get("id"))))
    for info in bar(listed, total=len(listed), desc=f"read {product}/{split}", say=progress):
        file_name = info.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise DataError(f"annotation file {json_path} has an image without file_name: {info!r}")
        if file_name in seen:
            warn("duplicate_image", file_name, "listed twice; the first entry is kept")
            continue
        seen.add(file_name)
        try:
            path = image_path(split_dir, file_name)
        except ValueError as exc:
            where = f"annotation file {json_path}: image {info.get('id')!r}"
            raise DataError(f"{where} file_name {file_name!r} {exc}") from exc
        if not path.is_file():
            raise DataError(f"image file {path} listed in {json_path} is missing")
        width, height = image_size(path)
        if (info.get("width"), info.get("height")) != (width, height):
            said = f"{info.get('width')}x{info.get('height')}"
            warn("size_mismatch", file_name, f"JSON says {said}, file is {width}x{height}; file size used")
        record = ImageRecord(product, split, file_name, path, width, height)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[info["id"]])):
            if ann.get("category_id") in categories:
                annotated.add(int(ann["category_id"]))
            obj = _convert_annotation(ann, record, categories, warn, json_path)
            if obj is not None:
                record.objects.append(obj)
        images.append(record)
    return SplitData(product, split, json_path, categories, annotated, images, warnings)


def count_inference_images(root: str | Path, product: str) -> int:
    """Images listed in a product's ``inference`` split (0 when it has none); never used for training."""
    json_path = annotations_path(Path(root), product, INFERENCE_SPLIT)
    if not json_path.is_file():
        return 0
    return len(load_coco(json_path).dataset["images"])
