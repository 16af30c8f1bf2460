"""Serving settings: ``configs/serving.yaml`` defaults, overridden by flags, validated once."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from predictor.runtimes import RUNTIMES
from visionops import config

# integer settings and their least value
_INT_MINIMUMS = {
    "imgsz": 32, "max_image_bytes": 1, "max_images_per_request": 1, "max_image_pixels": 1, "max_request_pixels": 1,
    "max_parallel_images": 1, "max_body_bytes": 1, "max_header_bytes": 256, "max_header_count": 1,
    "max_inflight_body_bytes": 0,
}
_POSITIVE_SECONDS = ("read_timeout_seconds", "idle_timeout_seconds")


@dataclass(frozen=True)
class ServingSettings:
    """What the predictor needs to know besides the model itself: the runtime, how often to look for a model
    while there is none, thresholds, then the limits on what a client may send (per image, per request, per HTTP
    message and connection)."""

    model_name: str
    alias: str
    runtime: str
    model_poll_seconds: float
    confidence: float
    iou: float
    imgsz: int
    max_image_bytes: int
    max_images_per_request: int
    max_image_pixels: int
    max_request_pixels: int
    max_parallel_images: int
    max_body_bytes: int
    max_inflight_body_bytes: int
    max_header_bytes: int
    max_header_count: int
    read_timeout_seconds: float
    idle_timeout_seconds: float

    def __post_init__(self) -> None:
        for field in ("confidence", "iou"):
            value = getattr(self, field)
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{field} must be a number between 0 and 1, got {value!r}")
        for field, minimum in _INT_MINIMUMS.items():
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{field} must be an integer >= {minimum}, got {value!r}")
        for field in _POSITIVE_SECONDS:
            value = getattr(self, field)
            if not _is_number(value) or not value > 0:
                raise ValueError(f"{field} must be a number of seconds > 0, got {value!r}")
        if self.max_image_pixels > self.max_request_pixels:
            raise ValueError(f"max_image_pixels ({self.max_image_pixels}) must not exceed max_request_pixels "
                             f"({self.max_request_pixels}): one image alone would be refused")
        if 0 < self.max_inflight_body_bytes < self.max_body_bytes:
            raise ValueError(f"max_inflight_body_bytes ({self.max_inflight_body_bytes}) must be 0 (from the memory "
                             f"limit) or at least max_body_bytes ({self.max_body_bytes})")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if not _is_number(self.model_poll_seconds) or self.model_poll_seconds < 0:
            raise ValueError(f"model_poll_seconds must be a number of seconds >= 0 (0: do not wait for a model), "
                             f"got {self.model_poll_seconds!r}")
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


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
