"""VISION (COCO) -> YOLO detection dataset: images, labels, dataset.yaml, class_map.json, data_card.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from visionops.data.boxes import format_label_line
from visionops.data.card import CARD_FORMAT, build_card
from visionops.data.classmap import ClassMap, build_class_map
from visionops.data.errors import DataError
from visionops.data.staging import link_or_copy, staged_dir
from visionops.data.vision import (
    LABELED_SPLITS,
    DataWarning,
    ImageRecord,
    SplitData,
    annotations_path,
    count_inference_images,
    load_split,
    select_products,
)
from visionops.progress import bar

DATASET_YAML = "dataset.yaml"
CLASS_MAP_JSON = "class_map.json"
DATA_CARD_JSON = "data_card.json"
# Extensions ultralytics reads as images (others would be skipped silently at training time).
YOLO_IMAGE_SUFFIXES = {
    ".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic",
}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PreparedDataset:
    """A YOLO dataset written by :func:`prepare` (or opened with :meth:`load`)."""

    root: Path
    dataset_yaml: Path
    class_map_path: Path
    data_card_path: Path
    names: list[str]
    data_card: dict[str, Any]

    @classmethod
    def load(cls, root: str | Path) -> PreparedDataset:
        """Open a prepared dataset folder; :class:`DataError` when it is not one."""
        root = Path(root).absolute()
        if not is_prepared_dataset(root):
            raise DataError(f"{root} is not a prepared dataset (no {DATA_CARD_JSON} of format {CARD_FORMAT})")
        card = json.loads((root / DATA_CARD_JSON).read_text())
        return cls(root, root / DATASET_YAML, root / CLASS_MAP_JSON, root / DATA_CARD_JSON,
                   list(card["names"]), card)


def is_prepared_dataset(path: Path) -> bool:
    """True when ``path`` holds a dataset written by :func:`prepare` (safe to replace)."""
    try:
        card = json.loads((path / DATA_CARD_JSON).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(card, dict) and card.get("format") == CARD_FORMAT and (path / DATASET_YAML).is_file()


def _output_name(record: ImageRecord, taken: set[str], warnings: list[DataWarning]) -> str:
    """``<Product>_<file name>`` keeping the real extension; unique stem within the split."""
    name = f"{record.product}_{record.file_name.replace('/', '_').replace(chr(92), '_')}"
    stem, suffix = Path(name).stem, Path(name).suffix
    candidate, n = stem, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{stem}_{n}"
    if candidate != stem:
        message = f"label stem {stem!r} already used in {record.split}; written as {candidate}"
        warnings.append(DataWarning("renamed_image", record.product, record.split, record.file_name, message))
    taken.add(candidate.lower())
    if suffix.lower() not in YOLO_IMAGE_SUFFIXES:
        warnings.append(DataWarning("unsupported_extension", record.product, record.split, record.file_name,
                                    f"extension {suffix!r} is not read by ultralytics"))
    return candidate + suffix


def _read_products(source: Path, products: list[str], progress: Progress) -> dict[str, dict[str, SplitData]]:
    data: dict[str, dict[str, SplitData]] = {}
    for product in products:
        data[product] = {}
        for split in LABELED_SPLITS:
            if not annotations_path(source, product, split).is_file():
                raise DataError(f"product {product}: {annotations_path(source, product, split)} is missing")
            split_data = load_split(source, product, split, progress)
            data[product][split] = split_data
            objects = sum(len(r.objects) for r in split_data.images)
            progress(f"read {product}/{split}: {len(split_data.images)} images, {objects} objects")
    return data


def _class_map(data: dict[str, dict[str, SplitData]]) -> ClassMap:
    categories = {p: {s: d.categories for s, d in splits.items()} for p, splits in data.items()}
    annotated = {
        p: {d.categories[cid].key for d in splits.values() for cid in d.annotated_category_ids}
        for p, splits in data.items()
    }
    return build_class_map(categories, annotated)


def _write_yaml(path: Path, root: Path, names: list[str]) -> None:
    content = {"path": str(root), "train": "images/train", "val": "images/val",
               "nc": len(names), "names": dict(enumerate(names))}
    path.write_text(yaml.safe_dump(content, sort_keys=False, allow_unicode=True))


def prepare(
    source: str | Path,
    out: str | Path,
    products: list[str] | None = None,
    progress: Progress | None = None,
) -> PreparedDataset:
    """Convert the VISION tree at ``source`` into a YOLO dataset at ``out``.

    ``products`` filters products (case-insensitive; default all). ``out`` is written atomically:
    on any error it is left as it was; a previous prepared dataset there is replaced; any other
    non-empty folder is refused. Raises :class:`DataError` naming the offending path or product.
    """
    progress = progress or (lambda _msg: None)
    source = Path(source).absolute()
    out = Path(out).absolute()
    chosen = select_products(source, products)
    with staged_dir(out, is_prepared_dataset, "prepared dataset") as tmp:
        data = _read_products(source, chosen, progress)
        class_map = _class_map(data)
        warnings = [w for splits in data.values() for d in splits.values() for w in d.warnings]
        labels: list[tuple[str, str, list[int]]] = []
        for split in LABELED_SPLITS:
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
            taken: set[str] = set()
            for product in chosen:
                records = data[product][split].images
                for record in bar(records, total=len(records), desc=f"write {product}/{split}", say=progress):
                    name = _output_name(record, taken, warnings)
                    link_or_copy(record.path, tmp / "images" / split / name)
                    ids = [class_map.id_of(product, obj.category_key) for obj in record.objects]
                    text = "".join(format_label_line(i, obj.box) + "\n"
                                   for i, obj in zip(ids, record.objects, strict=True))
                    (tmp / "labels" / split / f"{Path(name).stem}.txt").write_text(text)
                    labels.append((product, split, ids))
            progress(f"wrote {split}: {len(taken)} images")
        inference = {p: count_inference_images(source, p) for p in chosen}
        card = build_card(source=str(source), products=chosen, class_map=class_map, labels=labels,
                          warnings=warnings, inference_images=inference)
        class_map.save(tmp / CLASS_MAP_JSON)
        (tmp / DATA_CARD_JSON).write_text(json.dumps(card, indent=2) + "\n")
        _write_yaml(tmp / DATASET_YAML, out, class_map.names)
    if warnings:
        progress(f"{len(warnings)} warnings: {card['warning_counts']}")
    progress(f"prepared {out}: {card['totals']['images']} images, {card['nc']} classes")
    return PreparedDataset(out, out / DATASET_YAML, out / CLASS_MAP_JSON, out / DATA_CARD_JSON,
                           class_map.names, card)
