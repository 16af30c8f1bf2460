"""Request parsing shared by V1 and V2: pull base64 images out of a payload, decode and check them.

Accepted V1 bodies (``POST /v1/models/<name>:predict``)::

    {"instances": [{"image": {"b64": "<base64>"}}, ...]}
    {"instances": [{"image": "<base64>"}, {"b64": "<base64>"}, "<base64>", ...]}

The V1 URL also takes the image itself as the body (``Content-Type: image/png``, ``image/jpeg``, any
``image/*``; ``application/octet-stream`` stays KServe's JSON), or a ``multipart/form-data`` upload whose
file parts are the images, in order (the old ``/predict``'s ``file`` field works); the answer has the V1 shape.

Accepted V2 bodies (``POST /v2/models/<name>/infer``, the Open Inference Protocol): exactly one input of datatype
``BYTES`` (any name, e.g. ``image``), ``shape`` = ``[n]``, one element per image, in either form:

- JSON: ``data`` holds one base64 string per image (a ``data:`` URL allowed), with a JSON content type or with none
  (``tritonclient.http`` sends its JSON untyped);
- the binary tensor data extension (:mod:`predictor.v2_body`; ``tritonclient``'s ``binary_data=True``, KServe's
  ``InferenceRESTClient``): each element is the image file itself (PNG, JPEG) or its base64 text.

An element is read as base64 text when it is text, or bytes that are all ASCII; any other bytes are the encoded
image itself. PNG and JPEG files begin with a non-ASCII byte (``\\x89PNG``, ``\\xff\\xd8``), so a file is never
mistaken for base64, and a file of another format is refused for its format (415) like any other.

Every problem raises :class:`PayloadError` (a KServe ``InvalidInput``) whose ``status`` is the HTTP answer
(400; 413 over a configured limit; 415 for an image format or pixel type not accepted) and whose ``code`` is
the reason label of ``visionops_prediction_errors_total`` and ``visionops_requests_total``. Its message never
echoes the request's bytes: a ``b'...'`` literal and all after it is cut, unprintable characters are replaced and it
is at most :data:`MAX_MESSAGE` characters long.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Sequence
from email.message import Message
from typing import Any

from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

V1_FORMS = '{"instances": [{"image": {"b64": "<base64>"}}, ...]}'
BODY_FORMS = "an image (Content-Type image/png or image/jpeg) or a multipart/form-data upload of image files"
V2_FORM = 'one BYTES input, shape [n], data ["<base64>", ...] (or binary: the image files)'
MAX_MESSAGE = 1000  # characters of an error message
_DATA_URL_MARK = ";base64,"
# the repr of a bytes value (b'..', b"..", not the 'b' of a list of names), and all that follows it
_BYTES_LITERAL = re.compile(r"""(?<![\w'])b['"].*""", re.DOTALL)


def bounded(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` fit for an error message built from client data: a bytes literal (``b'\\x89PNG...``) and all after
    it replaced by ``<bytes omitted>``, unprintable characters by ``?``, at most ``limit`` characters."""
    text = _BYTES_LITERAL.sub("<bytes omitted>", text)
    text = "".join(char if char.isprintable() else "?" for char in text[:limit + 1])
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


class PayloadError(InvalidInput):
    """A client's mistake; ``code`` is a short machine-readable reason, ``status`` the HTTP status (4xx); the
    message is :func:`bounded`."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(bounded(message))
        self.code = code
        self.status = status


def schema_summary(errors: Iterable[dict[str, Any]], limit: int = 5) -> str:
    """One line naming where a body misses the schema (pydantic's errors, ``loc`` from the body's root); the
    values are not echoed."""
    errors = list(errors)
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ())) or 'body'}: {e.get('msg')}" for e in errors[:limit]]
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return f"the request body does not match the endpoint's schema: {'; '.join(parts)}{more}"


def _check_count(count: int, max_images: int) -> None:
    if count == 0:
        raise PayloadError("no_images", "the request holds no images; send at least one")
    if count > max_images:
        raise PayloadError("too_many_images", f"the request holds {count} images, more than the limit of "
                                              f"{max_images} per request (max_images_per_request)", status=413)


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
    if isinstance(payload, bytes):
        raise PayloadError("bad_request", f"the V1 body must be JSON (content-type application/json) shaped "
                                          f"{V1_FORMS}, or {BODY_FORMS}; got {len(payload)} bytes of other content")
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


def media_type(content_type: str) -> str:
    """``image/png`` of ``image/png; q=1``: the lowercased type without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


def _check_size(raw: bytes, index: int, max_bytes: int, decoded: bool = False) -> bytes:
    """``raw``, an encoded image (``decoded`` from base64), if it is not empty and at most ``max_bytes`` long."""
    if not raw:
        raise PayloadError("empty_image", f"image {index} is empty")
    if len(raw) > max_bytes:
        raise PayloadError("image_too_large", f"image {index} is {len(raw)} bytes{' decoded' if decoded else ''}, "
                                              f"over the limit of {max_bytes} bytes (max_image_bytes)", status=413)
    return raw


def _check_raw(raws: list[bytes], max_images: int, max_bytes: int) -> list[bytes]:
    _check_count(len(raws), max_images)
    return [_check_size(raw, index, max_bytes) for index, raw in enumerate(raws)]


def multipart_files(body: bytes, content_type: str) -> list[bytes]:
    """The contents of the file parts (a filename, or an ``image/*`` type) of a ``multipart/form-data`` body."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise PayloadError("bad_request", "the multipart/form-data Content-Type names no boundary")
    files = []
    for part in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        head, found, content = part.partition(b"\r\n\r\n")
        if not found:
            raise PayloadError("bad_request", "a multipart/form-data part has no blank line after its headers")
        part_header = Message()
        for line in head.decode("latin-1").strip().split("\r\n"):
            name, _, value = line.partition(":")
            part_header[name.strip()] = value.strip()
        if part_header.get_param("filename", header="content-disposition") or \
                media_type(part_header.get("content-type", "")).startswith("image/"):
            files.append(content.removesuffix(b"\r\n"))
    return files


def is_json(content_type: str) -> bool:
    """A JSON media type (KServe parses only the exact ``application/json`` and two others; not with a charset)."""
    media = media_type(content_type)
    return media == "application/json" or media.endswith("+json")


def json_body(body: bytes) -> Any:
    """A JSON body KServe left as bytes (e.g. ``application/json; charset=utf-8``), parsed."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise PayloadError("bad_json", f"Unrecognized request format: {exc}") from exc


def images_from_body(body: bytes, content_type: str, max_images: int, max_bytes: int) -> list[bytes]:
    """The images of a V1 body that is not JSON: the image itself, or the files of a multipart upload."""
    media = media_type(content_type)
    if media.startswith("image/"):
        return _check_raw([body], max_images, max_bytes)
    if media == "multipart/form-data":
        return _check_raw(multipart_files(body, content_type), max_images, max_bytes)
    raise PayloadError("bad_request", f"the V1 body must be JSON (content-type application/json) shaped {V1_FORMS}, "
                                      f"or {BODY_FORMS}; got {len(body)} bytes of {media or 'untyped'} content")


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
                                              f"the limit of {max_bytes} bytes (max_image_bytes)", status=413)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PayloadError("not_base64", f"image {index} is not valid base64 ({exc})") from exc
    return _check_size(raw, index, max_bytes, decoded=True)


def v2_image(value: Any, index: int, max_bytes: int) -> bytes:
    """The encoded image of one V2 element: bytes that are not all ASCII are the image file itself (the binary
    tensor extension); text, and ASCII bytes, are base64 (:func:`decode_base64`)."""
    if isinstance(value, bytes) and not value.isascii():
        return _check_size(value, index, max_bytes)
    return decode_base64(value, index, max_bytes)


def check_request_pixels(pixel_counts: Sequence[int], max_pixels: int) -> None:
    """Refuse a request whose images hold more than ``max_pixels`` pixels together (checked before decoding)."""
    total = sum(pixel_counts)
    if total > max_pixels:
        raise PayloadError("request_too_large", f"the request's {len(pixel_counts)} images hold {total} pixels in "
                                                f"all, over the limit of {max_pixels} pixels per request "
                                                f"(max_request_pixels); send fewer or smaller images", status=413)
