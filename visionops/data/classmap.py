"""The global class map: ``"<product lower>/<class lower>"`` names, sorted, ids from 0.

Categories are merged by name within a product (never by ``category_id``, which means different
things in different products and splits). The Roboflow-style parent category (id 0 or named as
another category's supercategory) that carries no annotation is not a class.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from visionops.data.errors import DataError
from visionops.data.vision import Category

CLASS_MAP_VERSION = 1


def global_name(product: str, class_name: str) -> str:
    """``Casting`` + ``Inclusoes`` -> ``casting/inclusoes``."""
    return f"{product.strip().lower()}/{class_name.strip().lower()}"


@dataclass(frozen=True)
class ClassEntry:
    """One global class and where it comes from."""

    id: int
    name: str
    product: str
    source_name: str
    source_category_ids: dict[str, int] = field(default_factory=dict)  # split -> COCO category id

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "product": self.product,
                "source_name": self.source_name, "source_category_ids": dict(self.source_category_ids)}


@dataclass(frozen=True)
class ClassMap:
    """Ordered global classes; ``classes[i].id == i``."""

    classes: tuple[ClassEntry, ...]

    @property
    def names(self) -> list[str]:
        return [entry.name for entry in self.classes]

    def id_of(self, product: str, category_key: str) -> int:
        """Global id of a product-local category key (lowercased name)."""
        return self._index[global_name(product, category_key)]

    @cached_property
    def _index(self) -> dict[str, int]:
        return {entry.name: entry.id for entry in self.classes}

    def as_dict(self) -> dict[str, Any]:
        return {"version": CLASS_MAP_VERSION, "nc": len(self.classes), "names": self.names,
                "classes": [entry.as_dict() for entry in self.classes]}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        return path


def is_roboflow_parent(category: Category, categories: Iterable[Category], annotated_ids: set[int]) -> bool:
    """True for the supercategory-like category Roboflow adds (no annotations, id 0 or a parent name)."""
    if category.id in annotated_ids:
        return False
    parents = {other.supercategory.strip().lower() for other in categories if other.id != category.id}
    return category.id == 0 or category.key in parents


def build_class_map(
    product_categories: dict[str, dict[str, dict[int, Category]]],
    annotated: dict[str, set[str]],
) -> ClassMap:
    """Build the map from ``{product: {split: {category_id: Category}}}``.

    ``annotated`` holds, per product, the category keys with at least one annotation in any
    labeled split; an unannotated parent category is skipped, other unannotated ones are kept.
    """
    sources: dict[str, tuple[str, str, dict[str, int]]] = {}
    for product in sorted(product_categories):
        for split in sorted(product_categories[product]):
            categories = product_categories[product][split]
            keys = annotated.get(product, set())
            annotated_ids = {cid for cid, cat in categories.items() if cat.key in keys}
            for category in sorted(categories.values(), key=lambda c: c.id):
                if is_roboflow_parent(category, categories.values(), annotated_ids):
                    continue
                name = global_name(product, category.key)
                entry = sources.setdefault(name, (product, category.name.strip(), {}))
                if entry[0] != product:
                    raise DataError(f"class name {name!r} comes from two products: {entry[0]} and {product}")
                entry[2].setdefault(split, category.id)
    if not sources:
        raise DataError(f"no classes found in products {', '.join(sorted(product_categories))}")
    classes = tuple(
        ClassEntry(i, name, sources[name][0], sources[name][1], sources[name][2])
        for i, name in enumerate(sorted(sources))
    )
    return ClassMap(classes)


def load_class_map(path: str | Path) -> ClassMap:
    """Read a ``class_map.json`` written by :meth:`ClassMap.save`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        classes = tuple(
            ClassEntry(int(c["id"]), str(c["name"]), str(c["product"]), str(c["source_name"]),
                       {str(k): int(v) for k, v in (c.get("source_category_ids") or {}).items()})
            for c in data["classes"]
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"class map {path} is unreadable: {exc}") from exc
    if [c.id for c in classes] != list(range(len(classes))):
        raise DataError(f"class map {path} must number its classes 0..n-1 in order")
    return ClassMap(classes)
