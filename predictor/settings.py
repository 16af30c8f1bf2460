"""Serving settings: ``configs/serving.yaml`` defaults, overridden by flags, validated once."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from visionops import config


@dataclass(frozen=True)
class ServingSettings:
    """What the predictor needs to know besides the model itself."""

    model_name: str
    alias: str
    confidence: float
    iou: float
    imgsz: int
    max_image_bytes: int
    max_images_per_request: int

    def __post_init__(self) -> None:
        for field in ("confidence", "iou"):
            value = getattr(self, field)
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{field} must be a number between 0 and 1, got {value!r}")
        for field, minimum in (("imgsz", 32), ("max_image_bytes", 1), ("max_images_per_request", 1)):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{field} must be an integer >= {minimum}, got {value!r}")
        for field in ("model_name", "alias"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{field} must be a non-empty string, got {value!r}")

    @classmethod
    def from_config(cls, overrides: dict[str, Any] | None = None) -> ServingSettings:
        """Defaults from ``configs/serving.yaml``; ``None`` overrides keep the default."""
        values = config.merged(config.load("serving"), overrides)
        names = set(cls.__dataclass_fields__)
        missing = sorted(names - set(values))
        if missing:
            raise ValueError(f"serving config lacks {', '.join(missing)} (expected keys: {', '.join(sorted(names))})")
        return cls(**{name: values[name] for name in names})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
