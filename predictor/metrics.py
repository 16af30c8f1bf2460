"""VisionOps Prometheus metrics, on the default registry so KServe's ``/metrics`` serves them.

KServe already exports ``request_preprocess_seconds``, ``request_predict_seconds`` and
``request_postprocess_seconds`` (label ``model_name``); these add what a defect detector needs, and
``visionops_requests_total{code, reason}``: every HTTP request answered or refused, by status and reason,
including those refused before the model (transport limits, bad JSON, unknown routes, schema errors).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from predictor.artifacts import ModelInfo

DETECTIONS = Counter(
    "visionops_detections_total", "Detections returned, by class", ["model_name", "class_name"]
)
# The same count under its old name, which said predictions though it counted detections: kept one release so that
# dashboards and alerts built on it keep working while they move to visionops_detections_total.
DETECTIONS_DEPRECATED_NAME = Counter(
    "visionops_predictions_total", "DEPRECATED: use visionops_detections_total (the same count); removed in the next "
    "release", ["model_name", "class_name"]
)
IMAGES = Counter("visionops_images_predicted_total", "Images run through the model", ["model_name"])
ERRORS = Counter(
    "visionops_prediction_errors_total",
    "Failed prediction requests by reason (bad input codes such as not_base64, or inference_error)",
    ["model_name", "reason"],
)
DETECTIONS_PER_IMAGE = Histogram(
    "visionops_detections_per_image", "Detections returned per image", ["model_name"],
    buckets=(0, 1, 2, 3, 5, 10, 20, 50, 100, 300),
)
INFERENCE_SECONDS = Histogram(
    "visionops_inference_seconds", "Decode + model inference time of one request", ["model_name"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
REQUESTS = Counter(
    "visionops_requests_total",
    "HTTP requests by status code and reason (ok; a 4xx reason such as not_base64, body_too_large, invalid_schema)",
    ["code", "reason"],
)
ACTIVE_MODEL = Gauge(
    "visionops_active_model_info", "The model version being served (value 1)",
    ["model_name", "version", "run_id", "alias"],
)

_active: dict[str, tuple[str, str, str, str]] = {}


def set_active_model(served_name: str, info: ModelInfo) -> None:
    """Mark ``info`` as the one model served under ``served_name`` (replacing an earlier one)."""
    labels = (served_name, info.version, info.run_id, info.alias)
    previous = _active.get(served_name)
    if previous is not None and previous != labels:
        ACTIVE_MODEL.remove(*previous)
    ACTIVE_MODEL.labels(*labels).set(1)
    _active[served_name] = labels
    # Series the dashboard sums over exist from the start, at 0: a fresh pod's panels show no errors and no images
    # rather than "no data" (a label set appears only when first incremented otherwise).
    ERRORS.labels(served_name, "inference_error")
    IMAGES.labels(served_name)


def record_predictions(model_name: str, class_names_per_image: Iterable[list[str]]) -> None:
    """Count images, detections per image and detections per class."""
    for class_names in class_names_per_image:
        IMAGES.labels(model_name).inc()
        DETECTIONS_PER_IMAGE.labels(model_name).observe(len(class_names))
        for class_name in class_names:
            DETECTIONS.labels(model_name, class_name).inc()
            DETECTIONS_DEPRECATED_NAME.labels(model_name, class_name).inc()


def record_error(model_name: str, reason: str) -> None:
    ERRORS.labels(model_name, reason).inc()


def record_request(code: int, reason: str) -> None:
    REQUESTS.labels(str(code), reason).inc()
