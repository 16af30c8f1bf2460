"""The deploy page's "try it": check an uploaded image, send it to the predictor (KServe V1), return the boxes.

The upload is refused with a plain sentence when it is empty, too big, not an image, or more pixels than the
console decodes; the predictor's own refusals (4xx) and silence are reported the same way. Nothing uploaded is
stored.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

ACCEPTED_FORMATS = {"JPEG", "PNG", "BMP", "WEBP", "TIFF"}


class UploadError(ValueError):
    """An upload the console refuses; ``status`` is the HTTP answer (400, 413 or 415)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class PredictorError(RuntimeError):
    """The predictor refused the image or did not answer; ``status`` is what the console answers (4xx/502/504)."""

    def __init__(self, message: str, status: int = 502):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    format: str
    width: int
    height: int


def human_size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def check_upload(data: bytes, filename: str, max_bytes: int, max_pixels: int) -> CheckedImage:
    """The upload as an image the predictor can take, or :class:`UploadError` saying what is wrong with it."""
    name = filename or "the upload"
    if not data:
        raise UploadError(f"{name} is empty: choose a JPEG or PNG image")
    if len(data) > max_bytes:
        raise UploadError(f"{name} is {human_size(len(data))}, more than the {human_size(max_bytes)} the console "
                          "accepts: send a smaller image", status=413)
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt, (width, height) = image.format or "", image.size
            if width * height > max_pixels:
                raise UploadError(f"{name} is {width}x{height} pixels, more than {max_pixels:,} the console decodes",
                                  status=413)
            image.verify()
    except UploadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UploadError(f"{name} is not an image the console can read ({type(exc).__name__}): choose a JPEG or "
                          "PNG file", status=415) from None
    if fmt not in ACCEPTED_FORMATS:
        raise UploadError(f"{name} is a {fmt or 'unknown'} image; send JPEG, PNG, BMP, WebP or TIFF", status=415)
    return CheckedImage(data, fmt, width, height)


def v1_payload(image: CheckedImage) -> bytes:
    return json.dumps({"instances": [{"image": {"b64": base64.b64encode(image.data).decode()}}]}).encode()


def parse_prediction(body: Any) -> dict[str, Any]:
    """The first prediction of a V1 answer: ``{"detections": [...], "image_size", "inference_time_ms"}``."""
    predictions = (body or {}).get("predictions") if isinstance(body, dict) else None
    if not isinstance(predictions, list) or not predictions or not isinstance(predictions[0], dict):
        raise PredictorError("the predictor answered without predictions")
    first = predictions[0]
    detections = []
    for d in first.get("detections") or []:
        try:
            x1, y1, x2, y2 = (float(v) for v in d["bbox"])
            detections.append({"class_name": str(d.get("class_name", d.get("class_id", "?"))),
                               "confidence": float(d.get("confidence", 0.0)), "bbox": [x1, y1, x2, y2]})
        except (KeyError, TypeError, ValueError):
            continue
    return {"detections": detections, "image_size": first.get("image_size") or {},
            "inference_time_ms": first.get("inference_time_ms")}


def predict(base_url: str, model: str, image: CheckedImage, timeout: float) -> dict[str, Any]:
    """POST the image to ``<base_url>/v1/models/<model>:predict``; the parsed first prediction."""
    url = f"{base_url.rstrip('/')}/v1/models/{model}:predict"
    request = urllib.request.Request(url, data=v1_payload(image), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error") or exc.reason
        except Exception:
            detail = exc.reason
        status = exc.code if 400 <= exc.code < 500 else 502
        raise PredictorError(f"the predictor refused the image (HTTP {exc.code}): {detail}", status) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PredictorError(f"the predictor at {base_url} does not answer: {reason}", 504) from None
    except ValueError:
        raise PredictorError("the predictor answered something that is not JSON") from None
    return parse_prediction(body)
