"""Request parsing shared by V1 and V2: pull base64 images out of a payload, decode and check them.

Accepted V1 bodies (``POST /v1/models/<name>:predict``)::

    {"instances": [{"image": {"b64": "<base64>"}}, ...]}
    {"instances": [{"image": "<base64>"}, {"b64": "<base64>"}, "<base64>", ...]}

Accepted V2 bodies (``POST /v2/models/<name>/infer``): exactly one input of datatype ``BYTES``
(any name, e.g. ``image``) whose ``data`` holds one base64 string per image, ``shape`` = ``[n]``.

Every problem raises :class:`PayloadError` (a KServe ``InvalidInput`` -> HTTP 400) whose
``code`` is the reason label of ``visionops_prediction_errors_total``.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Sequence
from typing import Any

from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest
from PIL import Image, UnidentifiedImageError

V1_FORMS = '{"instances": [{"image": {"b64": "<base64>"}}, ...]}'
V2_FORM = 'one BYTES input, shape [n], data ["<base64>", ...]'
_DATA_URL_MARK = ";base64,"
MAX_PIXELS = 8192 * 8192


class PayloadError(InvalidInput):
    """A bad request; ``code`` is a short machine-readable reason."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _check_count(count: int, max_images: int) -> None:
    if count == 0:
        raise PayloadError("no_images", "the request holds no images; send at least one")
    if count > max_images:
        raise PayloadError("too_many_images", f"the request holds {count} images, more than the limit of "
                                              f"{max_images} per request (max_images_per_request)")


def _v1_image(instance: Any, index: int) -> Any:
    """The base64 value of one V1 instance, whatever accepted form it has."""
    if isinstance(instance, str):
        return instance
    if isinstance(instance, dict):
        if "image" in instance:
            image = instance["image"]
            if isinstance(image, dict):
                if "b64" not in image:
                    raise PayloadError("missing_field", f"instances[{index}].image lacks the field 'b64' "
                                                        f"(got keys {sorted(image)}); expected {V1_FORMS}")
                return image["b64"]
            return image
        if "b64" in instance:
            return instance["b64"]
        raise PayloadError("missing_field", f"instances[{index}] lacks the field 'image' (got keys "
                                            f"{sorted(instance)}); expected {V1_FORMS}")
    raise PayloadError("bad_request", f"instances[{index}] is a {type(instance).__name__}; expected an object "
                                      f"like {{\"image\": {{\"b64\": \"<base64>\"}}}} or a base64 string")


def images_from_v1(payload: Any, max_images: int) -> list[Any]:
    """Base64 values of a V1 ``{"instances": [...]}`` body, in order."""
    if isinstance(payload, bytes | str):
        raise PayloadError("bad_request", f"the V1 body must be JSON (content-type application/json) shaped "
                                          f"{V1_FORMS}; got {len(payload)} bytes of non-JSON content")
    if not isinstance(payload, dict):
        raise PayloadError("bad_request", f"the V1 body must be a JSON object shaped {V1_FORMS}; got a "
                                          f"{type(payload).__name__}")
    if "instances" not in payload:
        raise PayloadError("missing_field", f"the V1 body lacks the field 'instances' (got keys "
                                            f"{sorted(payload)}); expected {V1_FORMS}")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise PayloadError("bad_request", f"'instances' must be a list, got a {type(instances).__name__}")
    _check_count(len(instances), max_images)
    return [_v1_image(instance, i) for i, instance in enumerate(instances)]


def _flatten(values: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if isinstance(value, list | tuple):
            out.extend(_flatten(value))
        else:
            out.append(value)
    return out


def images_from_v2(request: InferRequest, max_images: int) -> list[Any]:
    """Base64 values of the single BYTES input of a V2 request, in order."""
    if len(request.inputs) != 1:
        names = [inp.name for inp in request.inputs]
        raise PayloadError("bad_request", f"expected exactly one input ({V2_FORM}); got {len(names)}: {names}")
    inp = request.inputs[0]
    if inp.datatype != "BYTES":
        raise PayloadError("bad_request", f"input {inp.name!r} has datatype {inp.datatype}; expected {V2_FORM}")
    if inp.data is None:
        try:
            values = inp.as_numpy().ravel().tolist()
        except (ValueError, TypeError, InvalidInput) as exc:
            raise PayloadError("missing_field", f"input {inp.name!r} carries no data: {exc}") from exc
    else:
        values = _flatten(inp.data)
    expected = 1
    for dim in inp.shape:
        expected *= dim
    if expected != len(values):
        raise PayloadError("bad_request", f"input {inp.name!r} has shape {list(inp.shape)} ({expected} elements) "
                                          f"but {len(values)} data elements; use shape [{len(values)}]")
    _check_count(len(values), max_images)
    return values


def decode_base64(value: Any, index: int, max_bytes: int) -> bytes:
    """Decode one base64 image (a ``data:`` URL prefix is allowed); check it is non-empty and small enough."""
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str):
        raise PayloadError("not_base64", f"image {index} is a {type(value).__name__}, expected a base64 string")
    text = value.strip()
    if text.startswith("data:") and _DATA_URL_MARK in text:
        text = text.split(_DATA_URL_MARK, 1)[1]
    if not text:
        raise PayloadError("empty_image", f"image {index} is empty")
    # reject before decoding when even the encoded text is too long for the limit
    if len(text) > (max_bytes + 2) // 3 * 4 + 4:
        raise PayloadError("image_too_large", f"image {index} is about {len(text) * 3 // 4} bytes decoded, over "
                                              f"the limit of {max_bytes} bytes (max_image_bytes)")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PayloadError("not_base64", f"image {index} is not valid base64 ({exc})") from exc
    if not raw:
        raise PayloadError("empty_image", f"image {index} is empty")
    if len(raw) > max_bytes:
        raise PayloadError("image_too_large", f"image {index} is {len(raw)} bytes decoded, over the limit of "
                                              f"{max_bytes} bytes (max_image_bytes)")
    return raw


def open_image(raw: bytes, index: int) -> Image.Image:
    """Fully decode image bytes to an RGB PIL image, or raise ``not_an_image``."""
    try:
        with Image.open(io.BytesIO(raw)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:  # a small file can still decode to gigabytes
                raise PayloadError("image_too_large", f"image {index} is {width}x{height} pixels, over the limit of "
                                                      f"{MAX_PIXELS} pixels")
            image.load()
            return image.convert("RGB")
    except PayloadError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError, ImportError) as exc:
        # ImportError: a PIL format plugin that needs a missing optional library (e.g. when ultralytics, imported
        # in the same process, has patched Image.open to retry unknown formats with pi_heif)
        reason = "unknown image format" if isinstance(exc, ImportError) else str(exc)
        raise PayloadError("not_an_image", f"image {index} ({len(raw)} bytes) is not a readable image: {reason}; "
                                           "send base64 of PNG or JPEG bytes") from exc


def decode_images(values: Sequence[Any], max_bytes: int) -> list[Image.Image]:
    """Base64 values -> RGB images; the first bad one raises with its index."""
    return [open_image(decode_base64(value, i, max_bytes), i) for i, value in enumerate(values)]
