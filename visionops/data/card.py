"""The data card: what a prepared dataset holds (images, instances per class/product/split, warnings)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from visionops.data.classmap import ClassMap
from visionops.data.vision import LABELED_SPLITS, DataWarning

CARD_FORMAT = "visionops-prepared/v1"
# Detailed warnings kept in the card; counts per kind are always complete.
MAX_LISTED_WARNINGS = 200


def _split_stats(images: int, instances: int, empty: int) -> dict[str, int]:
    return {"images": images, "instances": instances, "images_without_objects": empty}


def build_card(
    *,
    source: str,
    products: list[str],
    class_map: ClassMap,
    labels: Iterable[tuple[str, str, list[int]]],
    warnings: list[DataWarning],
    inference_images: dict[str, int],
) -> dict[str, Any]:
    """Summarise ``labels``: one ``(product, split, class ids of its objects)`` per written image."""
    images: Counter[tuple[str, str]] = Counter()
    empty: Counter[tuple[str, str]] = Counter()
    instances: Counter[tuple[str, str]] = Counter()
    per_class: Counter[tuple[int, str]] = Counter()
    images_per_class: Counter[tuple[int, str]] = Counter()
    for product, split, class_ids in labels:
        images[product, split] += 1
        instances[product, split] += len(class_ids)
        empty[product, split] += not class_ids
        for class_id in class_ids:
            per_class[class_id, split] += 1
        for class_id in set(class_ids):
            images_per_class[class_id, split] += 1

    def total(counter: Counter[tuple[str, str]], split: str) -> int:
        return sum(v for (_, s), v in counter.items() if s == split)

    splits = {s: _split_stats(total(images, s), total(instances, s), total(empty, s)) for s in LABELED_SPLITS}
    per_product = {
        p: {
            **{s: _split_stats(images[p, s], instances[p, s], empty[p, s]) for s in LABELED_SPLITS},
            "inference_images": inference_images.get(p, 0),
        }
        for p in products
    }
    classes = []
    for entry in class_map.classes:
        counts = {s: per_class[entry.id, s] for s in LABELED_SPLITS}
        classes.append({
            "id": entry.id, "name": entry.name, "product": entry.product,
            "instances": {**counts, "total": sum(counts.values())},
            "images": {s: images_per_class[entry.id, s] for s in LABELED_SPLITS},
        })
    kinds = Counter(w.kind for w in warnings)
    return {
        "format": CARD_FORMAT,
        "source": source,
        "products": list(products),
        "nc": len(class_map.classes),
        "names": class_map.names,
        "totals": _split_stats(sum(images.values()), sum(instances.values()), sum(empty.values())),
        "splits": splits,
        "per_product": per_product,
        "classes": classes,
        "warning_counts": dict(sorted(kinds.items())),
        "warnings": [w.as_dict() for w in warnings[:MAX_LISTED_WARNINGS]],
        "warnings_truncated": len(warnings) > MAX_LISTED_WARNINGS,
    }


def _table(header: list[str], rows: list[list[Any]], left: int = 1) -> list[str]:
    """Columns padded to their widest cell; the first ``left`` columns left-aligned, numbers right."""
    cells = [header, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    fmt = [f"{{:<{w}}}" if i < left else f"{{:>{w}}}" for i, w in enumerate(widths)]
    lines = ["  ".join(f.format(c) for f, c in zip(fmt, row, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def format_card(card: dict[str, Any]) -> str:
    """A plain-text summary of a data card: classes, products, splits and warnings."""
    lines = [f"source: {card.get('source')}", f"products: {', '.join(card.get('products', []))}",
             f"classes: {card.get('nc')}", ""]
    lines += _table(
        ["id", "class", "train", "val", "total"],
        [[c["id"], c["name"], c["instances"]["train"], c["instances"]["val"], c["instances"]["total"]]
         for c in card.get("classes", [])],
        left=2,
    )
    lines.append("")
    rows = []
    for product, stats in card.get("per_product", {}).items():
        rows.append([product, *(stats[s]["images"] for s in LABELED_SPLITS),
                     *(stats[s]["instances"] for s in LABELED_SPLITS),
                     sum(stats[s]["images_without_objects"] for s in LABELED_SPLITS),
                     stats["inference_images"]])
    totals = card.get("splits", {})
    if totals:
        rows.append(["(all)", *(totals[s]["images"] for s in LABELED_SPLITS),
                     *(totals[s]["instances"] for s in LABELED_SPLITS),
                     sum(totals[s]["images_without_objects"] for s in LABELED_SPLITS),
                     sum(p["inference_images"] for p in card.get("per_product", {}).values())])
    lines += _table(["product", "train img", "val img", "train obj", "val obj", "no obj", "inference"], rows)
    counts = card.get("warning_counts") or {}
    lines.append("")
    if counts:
        lines.append("warnings: " + ", ".join(f"{kind} {n}" for kind, n in counts.items()))
    else:
        lines.append("warnings: none")
    return "\n".join(lines)
