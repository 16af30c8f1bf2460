"""The dataset volume as the console sees it: VISION trees, their products and splits, what ``visionops data
prepare`` would say about them, and annotated samples.

Everything is read with the data layer's own code (:mod:`visionops.data.vision` reads and checks the COCO
files, :mod:`visionops.data.classmap` names the classes, :mod:`visionops.data.card` builds the data card,
:mod:`visionops.data.samples` picks and draws the samples), so the console reports exactly what the training
Job would meet. Nothing is written to the volume (the chart mounts it read-only).
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from visionops.data.card import build_card
from visionops.data.classmap import build_class_map, global_name
from visionops.data.errors import DataError, one_line
from visionops.data.samples import LabeledBox, LabeledImage, annotated_tile, class_colours, pick_samples
from visionops.data.vision import (
    ALL_SPLITS,
    ANNOTATIONS_FILE,
    INFERENCE_SPLIT,
    LABELED_SPLITS,
    DataWarning,
    ImageRecord,
    SplitData,
    annotations_path,
    count_inference_images,
    find_products,
    load_split,
)

# How deep under the volume a VISION root may lie ("" = the volume itself, "vision", "team/vision").
MAX_DEPTH = 2
TILE_SIDE = 320
LIGHTBOX_SIDE = 1024
RENDER_CACHE = 256  # rendered JPEGs kept in memory


@dataclass(frozen=True)
class Problem:
    """Something ``visionops data prepare`` would report: an ``error`` stops it, a ``warning`` is worked around."""

    level: str  # "error" or "warning"
    product: str
    split: str
    kind: str
    where: str
    message: str


@dataclass(frozen=True)
class SplitSummary:
    product: str
    split: str
    images: int
    boxes: int
    empty: int  # images without a box
    ok: bool


@dataclass(frozen=True)
class Sample:
    """One image of a labeled split with its boxes under global class ids (for the grid and the lightbox)."""

    key: str  # "<product>/<split>/<file_name>": the id the image routes take
    product: str
    split: str
    file_name: str
    labeled: LabeledImage
    width: int
    height: int


@dataclass
class DatasetIndex:
    """One VISION tree under the volume, read and checked."""

    path: str  # relative to the volume ("" when the volume itself is the VISION root)
    root: Path
    products: list[str]
    splits: list[SplitSummary] = field(default_factory=list)
    inference_images: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    samples: dict[str, Sample] = field(default_factory=dict)
    card: dict[str, Any] | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    @property
    def label(self) -> str:
        return self.path or "(volume root)"

    def colours(self) -> list[tuple[int, int, int]]:
        return class_colours(len(self.class_names))

    def colour_hex(self) -> dict[str, str]:
        colours = zip(self.class_names, self.colours(), strict=True)
        return {name: "#{:02x}{:02x}{:02x}".format(*rgb) for name, rgb in colours}

    def split_images(self, split: str) -> list[Sample]:
        return [s for s in self.samples.values() if s.split == split]

    def totals(self) -> dict[str, dict[str, int]]:
        out = {s: {"images": 0, "boxes": 0} for s in LABELED_SPLITS}
        for row in self.splits:
            out[row.split]["images"] += row.images
            out[row.split]["boxes"] += row.boxes
        return out


def vision_roots(volume: Path, max_depth: int = MAX_DEPTH) -> list[str]:
    """Folders under ``volume`` (relative, ``""`` for itself) that hold VISION products, sorted; hidden ones skipped."""
    found: list[str] = []

    def walk(folder: Path, rel: str, depth: int) -> None:
        try:
            if find_products(folder):
                found.append(rel)
                return  # a product folder is not searched for more trees
        except (DataError, OSError):
            return
        if depth >= max_depth:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return
        for child in children:
            walk(child, f"{rel}/{child.name}" if rel else child.name, depth + 1)

    walk(volume, "", 0)
    return found


def _signature(root: Path, products: list[str]) -> tuple:
    """What changes when the data changes: every annotation file's size and mtime (images are named in them)."""
    parts = []
    for product in products:
        for split in ALL_SPLITS:
            path = annotations_path(root, product, split)
            try:
                stat = path.stat()
                parts.append((product, split, stat.st_size, stat.st_mtime_ns))
            except OSError:
                parts.append((product, split, None, None))
    return tuple(parts)


def _problem(level: str, warning: DataWarning) -> Problem:
    return Problem(level, warning.product, warning.split, warning.kind, warning.path, warning.message)


def scan(volume: Path, path: str) -> DatasetIndex:
    """Read the VISION tree at ``volume/path``: every product's labeled splits, each checked on its own so that
    one bad file does not hide the others (``prepare`` stops at the first error; the console lists them all)."""
    root = (volume / path) if path else volume
    index = DatasetIndex(path=path, root=root, products=find_products(root))
    loaded: dict[str, dict[str, SplitData]] = {}
    for product in index.products:
        loaded[product] = {}
        for split in LABELED_SPLITS:
            json_path = annotations_path(root, product, split)
            if not json_path.is_file():
                index.problems.append(Problem("error", product, split, "missing_split", str(json_path.relative_to(
                    volume)), f"{ANNOTATIONS_FILE} is missing: prepare needs both train and val"))
                continue
            try:
                loaded[product][split] = load_split(root, product, split)
            except DataError as exc:
                index.problems.append(Problem("error", product, split, "unreadable", str(json_path.relative_to(
                    volume)), one_line(str(exc)).replace(str(volume) + "/", "")))
        try:
            index.inference_images[product] = count_inference_images(root, product)
        except DataError as exc:
            index.inference_images[product] = 0
            index.problems.append(Problem("warning", product, INFERENCE_SPLIT, "unreadable", product,
                                          one_line(str(exc)).replace(str(volume) + "/", "")))
    for splits in loaded.values():
        for data in splits.values():
            index.problems.extend(_problem("warning", w) for w in data.warnings)
    usable = {p: s for p, s in loaded.items() if s}
    if not usable:
        return index
    categories = {p: {s: d.categories for s, d in splits.items()} for p, splits in usable.items()}
    annotated = {p: {d.categories[cid].key for d in splits.values() for cid in d.annotated_category_ids}
                 for p, splits in usable.items()}
    try:
        class_map = build_class_map(categories, annotated)
    except DataError as exc:
        index.problems.append(Problem("error", "", "", "class_map", path or ".", one_line(str(exc))))
        return index
    index.class_names = class_map.names
    ids = {name: i for i, name in enumerate(class_map.names)}
    labels: list[tuple[str, str, list[int]]] = []
    for product, splits in usable.items():
        for split, data in splits.items():
            boxes = empty = 0
            for record in data.images:
                class_ids = [ids[global_name(product, obj.category_key)] for obj in record.objects]
                labels.append((product, split, class_ids))
                boxes += len(class_ids)
                empty += not class_ids
                index.samples[_key(record)] = _sample(record, class_ids)
            index.splits.append(SplitSummary(product, split, len(data.images), boxes, empty, True))
    index.splits.sort(key=lambda s: (s.product, LABELED_SPLITS.index(s.split)))
    warnings = [w for splits in usable.values() for d in splits.values() for w in d.warnings]
    index.card = build_card(source=str(root), products=sorted(usable), class_map=class_map, labels=labels,
                            warnings=warnings, inference_images=index.inference_images)
    return index


def _key(record: ImageRecord) -> str:
    return f"{record.product}/{record.split}/{record.file_name}"


def _sample(record: ImageRecord, class_ids: list[int]) -> Sample:
    boxes = tuple(LabeledBox(cid, obj.box) for cid, obj in zip(class_ids, record.objects, strict=True))
    return Sample(_key(record), record.product, record.split, record.file_name, LabeledImage(record.path, boxes),
                  record.width, record.height)


class DatasetVolume:
    """The dataset volume: its VISION trees (cached until an annotation file changes) and rendered samples."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder).absolute() if folder else None
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple, DatasetIndex]] = {}
        self._rendered: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()
        self._render_lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return self.folder is not None

    def roots(self) -> list[str]:
        if self.folder is None or not self.folder.is_dir():
            return []
        return vision_roots(self.folder)

    def index(self, path: str) -> DatasetIndex:
        """The VISION tree at ``path`` (one of :meth:`roots`); :class:`KeyError` for anything else."""
        if self.folder is None or path not in self.roots():
            raise KeyError(path)
        root = self.folder / path if path else self.folder
        signature = _signature(root, find_products(root))
        with self._lock:
            cached = self._cache.get(path)
            if cached and cached[0] == signature:
                return cached[1]
        index = scan(self.folder, path)
        with self._lock:
            self._cache[path] = (signature, index)
        return index

    def samples(self, index: DatasetIndex, split: str, classes: list[str], count: int, seed: int) -> list[Sample]:
        """Up to ``count`` random images of ``split`` (holding one of ``classes`` when given): samples.pick_samples."""
        pool = index.split_images(split)
        class_ids = [index.class_names.index(c) for c in classes if c in index.class_names]
        by_path = {s.labeled.path: s for s in pool}
        chosen = pick_samples([s.labeled for s in pool], class_ids, count, seed) if pool else []
        return [by_path[image.path] for image in chosen]

    def render(self, index: DatasetIndex, key: str, side: int) -> bytes:
        """The sample ``key`` scaled to fit ``side`` px with its boxes and class names drawn (JPEG bytes)."""
        sample = index.samples[key]
        cache_key = (index.path, key, side)
        with self._render_lock:
            if cache_key in self._rendered:
                self._rendered.move_to_end(cache_key)
                return self._rendered[cache_key]
        tile: Image.Image = annotated_tile(sample.labeled, index.class_names, index.colours(), side)
        buffer = io.BytesIO()
        tile.save(buffer, format="JPEG", quality=88)
        data = buffer.getvalue()
        with self._render_lock:
            self._rendered[cache_key] = data
            while len(self._rendered) > RENDER_CACHE:
                self._rendered.popitem(last=False)
        return data

    def find_image_classes(self, image_name: str) -> list[str] | None:
        """Classes of a prepared val image named ``<Product>_<file name>`` (as the training Job names them), looked
        up in every VISION tree of the volume; ``None`` when no tree holds it."""
        for path in self.roots():
            try:
                index = self.index(path)
            except (KeyError, DataError, OSError):
                continue
            for sample in index.samples.values():
                flat = f"{sample.product}_{sample.file_name.replace('/', '_').replace(chr(92), '_')}"
                if sample.split == "val" and (flat == image_name or Path(flat).stem == Path(image_name).stem):
                    return sorted({index.class_names[b.class_id] for b in sample.labeled.boxes})
        return None
