"""Ultralytics metrics -> VisionOps metric names (pure functions, no ultralytics import)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from visionops.contract import MAP50, MAP50_95, PRECISION, RECALL, SUMMARY_METRICS

# ultralytics key -> the name logged to MLflow and read by the registry, operator and UI.
RENAMES = {
    "metrics/mAP50(B)": MAP50,
    "metrics/mAP50-95(B)": MAP50_95,
    "metrics/precision(B)": PRECISION,
    "metrics/recall(B)": RECALL,
}
SUMMARY_KEYS = SUMMARY_METRICS


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def epoch_metrics(*sources: Mapping[str, Any]) -> dict[str, float]:
    """Merge ultralytics metric dicts (validator metrics, labelled losses, lr) under our names.

    Detection metrics are renamed (``metrics/mAP50(B)`` -> ``map50``); ``train/*``, ``val/*`` and
    ``lr/*`` keys keep their names; non-numeric and non-finite values are dropped.
    """
    out: dict[str, float] = {}
    for source in sources:
        for key, value in (source or {}).items():
            number = _finite(value)
            if number is None:
                continue
            if key in RENAMES:
                out[RENAMES[key]] = number
            elif key.split("/", 1)[0] in {"train", "val", "lr"}:
                out[key] = number
    return out


def per_class_ap50(
    ap50: Sequence[float], ap_class_index: Sequence[int], names: Mapping[int, str] | Sequence[str]
) -> dict[str, float]:
    """AP50 by class name. ``ap50[i]`` belongs to class ``ap_class_index[i]`` (only classes in val).

    Ultralytics reports AP only for classes that occur in the validation split, in the order of
    ``ap_class_index``: indexing ``ap50`` by class id would mislabel every class after a gap.
    """
    if len(ap50) != len(ap_class_index):
        raise ValueError(f"ap50 has {len(ap50)} values but ap_class_index has {len(ap_class_index)}")
    lookup = dict(names) if isinstance(names, Mapping) else dict(enumerate(names))
    out: dict[str, float] = {}
    for value, class_id in zip(ap50, ap_class_index, strict=True):
        name = lookup.get(int(class_id))
        if name is None:
            raise ValueError(f"class id {int(class_id)} has no name (known ids: {sorted(lookup)})")
        out[name] = float(value)
    return dict(sorted(out.items()))
