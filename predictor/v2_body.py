"""A V2 REST body that FastAPI leaves as bytes, read into KServe's ``InferRequest``.

FastAPI parses a V2 body as JSON only under a JSON content type; any other body (``tritonclient.http`` sends its
JSON with no content type, the binary tensor data extension is ``application/octet-stream``) reaches the data plane
as bytes. Such a body is ``<JSON request><binary tensors>``: the ``Inference-Header-Content-Length`` header gives
the length of the JSON, and without it the whole body is the JSON (as Triton reads it). An input whose
``parameters`` hold ``binary_data_size`` (and that has no ``data``) takes that many of the bytes after the JSON, in
the order of the inputs: a ``BYTES`` tensor is its elements, each after its 4-byte little-endian length, kept as
bytes (KServe's own reading decodes them as UTF-8, and so refuses an image file); a binary tensor of another
datatype is refused (the predictor's one input is ``BYTES``). Then the request is checked against KServe's V2 schema
(422, as a JSON body would be) and read the way KServe reads a JSON body. Every mistake is a
:class:`~predictor.payload.PayloadError` that names sizes and input names, never the bytes.
"""

from __future__ import annotations

from typing import Any

from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.protocol.infer_type import InferRequest
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from pydantic import ValidationError

from predictor.payload import V2_FORM, PayloadError, json_body, schema_summary

LENGTH_PREFIX = 4  # bytes of the little-endian length before each BYTES element
_NAME_CHARS = 60  # characters of a client's input name in a message


def _malformed(message: str) -> PayloadError:
    return PayloadError("bad_request", f"malformed request: {message}")


def _label(spec: Any) -> str:
    """``input 'image'``: the input's name, shortened, for messages."""
    name = spec.get("name") if isinstance(spec, dict) else None
    return f"input {str(name)[:_NAME_CHARS]!r}"


def json_length(header: str | None, body_length: int) -> int:
    """Bytes of JSON at the start of the body: the header's count, or the whole body without the header."""
    if header is None:
        return body_length
    try:
        length = int(header)
    except ValueError as exc:
        raise _malformed(f"the {INFERENCE_CONTENT_LENGTH_HEADER} header is not a byte count ({exc})") from exc
    if not 0 <= length <= body_length:
        raise PayloadError("bad_json", f"Unrecognized request format: the {INFERENCE_CONTENT_LENGTH_HEADER} header "
                                       f"says {length} bytes of JSON, but the body has {body_length} bytes")
    return length


def split_bytes_tensor(raw: memoryview, label: str) -> list[bytes]:
    """The elements of a binary ``BYTES`` tensor: each is a 4-byte little-endian length, then that many bytes."""
    elements = []
    offset = 0
    while offset < len(raw):
        if offset + LENGTH_PREFIX > len(raw):
            raise _malformed(f"the binary data of {label} ends inside the length of element {len(elements)}")
        size = int.from_bytes(raw[offset:offset + LENGTH_PREFIX], "little")
        offset += LENGTH_PREFIX
        if offset + size > len(raw):
            raise _malformed(f"element {len(elements)} of {label} is {size} bytes long, but only "
                             f"{len(raw) - offset} bytes of its binary data are left")
        elements.append(bytes(raw[offset:offset + size]))
        offset += size
    return elements


def _binary_size(spec: Any) -> int | None:
    """The input's ``binary_data_size`` when it has no ``data``; None for an input whose data is in the JSON."""
    if not isinstance(spec, dict) or "data" in spec:
        return None
    parameters = spec.get("parameters")
    if not isinstance(parameters, dict) or "binary_data_size" not in parameters:
        return None
    size = parameters["binary_data_size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise _malformed(f"the binary_data_size of {_label(spec)} is not a byte count")
    return size


def attach_binary_data(inputs: Any, binary: memoryview) -> None:
    """Give each binary input of the JSON request (``inputs``) its elements, as ``data``, from ``binary``."""
    if not isinstance(inputs, list):
        return  # the schema check names it
    offset = 0
    for spec in inputs:
        size = _binary_size(spec)
        if size is None:
            continue
        if str(spec.get("datatype")).upper() != "BYTES":
            raise _malformed(f"{_label(spec)} is binary data of datatype {str(spec.get('datatype'))[:_NAME_CHARS]}; "
                             f"expected {V2_FORM}")
        if offset + size > len(binary):
            raise _malformed(f"{_label(spec)} has binary_data_size {size}, but only {len(binary) - offset} bytes of "
                             f"binary data are left after the JSON")
        spec["data"] = split_bytes_tensor(binary[offset:offset + size], _label(spec))
        offset += size
    if offset != len(binary):
        raise _malformed(f"{len(binary) - offset} bytes follow the JSON and the binary inputs' binary_data_size; "
                         f"the body and the sizes do not match")


def request_from_body(body: bytes, length_header: str | None, model_name: str) -> InferRequest:
    """The V2 request of a body left as bytes (see the module docstring)."""
    length = json_length(length_header, len(body))
    request = json_body(body[:length])  # the whole body: the same object, not a copy
    # a request that is no object, or has no "inputs", fails here with KServe's own 400 (malformed request: KeyError)
    attach_binary_data(request["inputs"], memoryview(body)[length:])
    try:
        validated = InferenceRequest.model_validate(request)
    except ValidationError as exc:
        raise PayloadError("invalid_schema", schema_summary(exc.errors(include_input=False)), status=422) from exc
    return InferRequest.from_inference_request(validated, model_name)
