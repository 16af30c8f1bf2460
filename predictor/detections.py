"""The response of one image: detections with class names, in original-image pixel coordinates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def class_name(class_id: int, class_names: Sequence[str]) -> str:
    """Name of a class id from the class map (``class_<id>`` if the map is shorter)."""
    return class_names[class_id] if 0 <= class_id < len(class_names) else f"class_{class_id}"


def image_prediction(
    boxes_xyxy: Sequence[Sequence[float]],
    confidences: Sequence[float],
    class_ids: Sequence[float | int],
    image_size: tuple[int, int],
    class_names: Sequence[str],
    inference_time_ms: float | None = None,
) -> dict[str, Any]:
    """``{"detections": [{class_id, class_name, confidence, bbox: [x1, y1, x2, y2]}], "num_detections",
    "image_size": {"width", "height"}, "inference_time_ms"}``, detections by decreasing confidence."""
    if not len(boxes_xyxy) == len(confidences) == len(class_ids):
        raise ValueError(f"boxes ({len(boxes_xyxy)}), confidences ({len(confidences)}) and class ids "
                         f"({len(class_ids)}) must have the same length")
    detections = [
        {
            "class_id": int(cid),
            "class_name": class_name(int(cid), class_names),
            "confidence": round(float(conf), 4),
            "bbox": [round(float(v), 2) for v in box],
        }
        for box, conf, cid in zip(boxes_xyxy, confidences, class_ids, strict=True)
    ]
    detections.sort(key=lambda d: d["confidence"], reverse=True)
    width, height = image_size
    out: dict[str, Any] = {
        "detections": detections,
        "num_detections": len(detections),
        "image_size": {"width": int(width), "height": int(height)},
    }
    if inference_time_ms is not None:
        out["inference_time_ms"] = round(float(inference_time_ms), 2)
    return out
