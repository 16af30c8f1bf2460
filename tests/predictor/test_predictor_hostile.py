"""Hostile and malformed requests against the real predictor (``python -m predictor``, KServe over HTTP).

Each case asserts the status, the message that names the problem, and that the refusal was counted in
``visionops_requests_total{code, reason}`` (also those refused before the model: transport limits, bad JSON,
unknown routes, schema errors); a good request works after each. Afterwards: good V1 and V2 requests still
work, the server's memory came back down, and its log holds no traceback (a 4xx logs one line).
"""

from __future__ import annotations

import io
import json
import re
import socket
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from fixtures.predictor_process import (
    MB,
    NAME,
    Predictor,
    ProcessMemory,
    b64,
    png_chunk,
    solid_image,
    start_predictor,
)
from PIL import Image

pytestmark = pytest.mark.slow

LIMITS = {"max_images_per_request": 4, "max_image_bytes": 1_000_000, "max_image_pixels": 1024 * 1024,
          "max_request_pixels": 2 * 1024 * 1024, "max_body_bytes": 2 * MB, "max_header_bytes": 8192,
          "max_header_count": 50, "read_timeout_seconds": 2}
IDLE_SECONDS = 2
V1 = f"/v1/models/{NAME}:predict"
V2 = f"/v2/models/{NAME}/infer"
CLOSED = 0  # "status" of a connection closed without an answer


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that only declares its size (no pixel data): what a decompression bomb shows before decoding."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"")) + \
        png_chunk(b"IEND", b"")


GOOD_PNG = _encode(Image.effect_noise((48, 32), 60).convert("RGB"), "PNG")
GOOD = b64(GOOD_PNG)
SIDE = 1024  # sqrt(max_image_pixels)


# -- how a case reaches the server -----------------------------------------------------------------------------

Send = Callable[[Predictor], tuple[int, str]]


def post(path: str, data: bytes | Iterator[bytes] | None = None, json_body: object = None,
         headers: dict | None = None, files: object = None) -> Send:
    def send(server: Predictor) -> tuple[int, str]:
        response = requests.post(server.url + path, data=data, json=json_body, headers=headers, files=files,
                                 timeout=30)
        return response.status_code, response.text
    return send


def request(method: str, path: str, headers: dict | None = None) -> Send:
    def send(server: Predictor) -> tuple[int, str]:
        response = requests.request(method, server.url + path, headers=headers, timeout=30)
        return response.status_code, response.text
    return send


def v1(body: object) -> Send:
    return post(V1, json_body=body)


def v2(inputs: object) -> Send:
    return post(V2, json_body={"inputs": inputs})


def v1_images(*images: bytes) -> Send:
    return v1({"instances": [b64(raw) for raw in images]})


def raw(data: bytes, drip_seconds: float = 0.0) -> Send:
    """Bytes written on a fresh connection (one at a time, ``drip_seconds`` apart, if set); the first answer."""
    def send(server: Predictor) -> tuple[int, str]:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            try:
                if drip_seconds:
                    for i in range(len(data)):
                        sock.send(data[i:i + 1])
                        time.sleep(drip_seconds)
                else:
                    sock.sendall(data)
            except OSError:  # the server answered and closed while we were still writing
                pass
            answer = b""
            try:
                while not _complete(answer) and (chunk := sock.recv(65536)):
                    answer += chunk
            except OSError:
                pass
        match = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
        if not match:
            return CLOSED, answer.decode(errors="replace")
        body = answer.partition(b"\r\n\r\n")[2]
        return int(match[1]), body.decode(errors="replace")
    return send


def _complete(answer: bytes) -> bool:
    """Whether ``answer`` holds a whole response with a Content-Length body."""
    head, found, body = answer.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    return bool(found and length and len(body) >= int(length[1]))


def chunked(total: int) -> Send:
    """A chunked (no Content-Length) V1 body of ``total`` bytes."""
    def body() -> Iterator[bytes]:
        for _ in range(total // 65536):
            yield b" " * 65536
    return post(V1, data=body(), headers={"content-type": "application/json"})


# -- the cases ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    send: Send
    status: int
    message: str
    reason: str | None  # label of visionops_requests_total; None: nothing to count (no request was made)


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(Image.new("RGB", (40, 20), (200, 30, 30)), "JPEG", exif=exif.tobytes())


def _text_bomb_png() -> bytes:
    """A valid PNG with a zTXt chunk that inflates to 50 MB."""
    bomb = png_chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b"a" * 50_000_000, 9))
    return GOOD_PNG[:33] + bomb + GOOD_PNG[33:]


def _float_tiff() -> bytes:
    return _encode(Image.new("F", (8, 8), 0.5), "TIFF")


def _binary_v2(json_length: str, body: bytes) -> Send:
    return post(V2, data=body, headers={"content-type": "application/octet-stream",
                                        "inference-header-content-length": json_length})


_V2_JSON = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [GOOD]}]}).encode()
_V2_BINARY_HEAD = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                          "parameters": {"binary_data_size": 8}}]}).encode()

CASES = [
    # -- the body is not what V1 expects ------------------------------------------------------------------------
    Case("v1-not-json", post(V1, b"\x89PNG not json", headers={"content-type": "application/json"}), 400,
         "Unrecognized request format", "bad_json"),
    Case("v1-truncated-json", post(V1, b'{"instances": [', headers={"content-type": "application/json"}), 400,
         "Unrecognized request format", "bad_json"),
    Case("v1-deeply-nested-json", post(V1, b"[" * 100_000 + b"]" * 100_000,
                                       headers={"content-type": "application/json"}), 400,
         "Unrecognized request format", "bad_json"),
    Case("v1-json-array", v1([1, 2]), 400, "must be a JSON object", "bad_request"),
    Case("v1-json-string", v1("just a string"), 400, "must be a JSON object", "bad_request"),
    Case("v1-json-null", post(V1, b"null", headers={"content-type": "application/json"}), 400,
         "must be a JSON object", "bad_request"),
    Case("v1-text-plain", post(V1, b"hello", headers={"content-type": "text/plain"}), 400,
         "must be JSON (content-type application/json)", "bad_request"),
    Case("v1-gzip-body", post(V1, zlib.compress(b"{}" * 1000), headers={"content-type": "application/json",
                                                                      "content-encoding": "gzip"}), 400,
         "Unrecognized request format", "bad_json"),
    Case("v1-no-instances", v1({"images": [GOOD]}), 400, "lacks the field 'instances'", "missing_field"),
    Case("v1-instances-object", v1({"instances": {"image": GOOD}}), 400, 'Expected "instances" to be a list',
         "bad_request"),
    Case("v1-instances-empty", v1({"instances": []}), 400, "holds no images", "no_images"),
    Case("v1-instance-number", v1({"instances": [42]}), 400, "instances[0] is a int", "bad_request"),
    Case("v1-instance-no-image", v1({"instances": [{"picture": GOOD}]}), 400, "instances[0] lacks the field 'image'",
         "missing_field"),
    Case("v1-image-no-b64", v1({"instances": [{"image": {"data": GOOD}}]}), 400, "lacks the field 'b64'",
         "missing_field"),
    Case("v1-b64-not-string", v1({"instances": [{"image": {"b64": 123}}]}), 400, "image 0 is a int",
         "not_base64"),
    Case("v1-too-many-images", v1({"instances": [GOOD] * 5}), 413, "more than the limit of 4 per request "
         "(max_images_per_request)", "too_many_images"),
    # -- base64 ------------------------------------------------------------------------------------------------
    Case("b64-invalid", v1({"instances": ["%%% not base64 %%%"]}), 400, "image 0 is not valid base64", "not_base64"),
    Case("b64-bad-padding", v1({"instances": [GOOD[:-3]]}), 400, "image 0 is not valid base64", "not_base64"),
    Case("b64-empty", v1({"instances": [""]}), 400, "image 0 is empty", "empty_image"),
    Case("b64-data-url-garbage", v1({"instances": ["data:image/png;base64,@@@"]}), 400, "not valid base64",
         "not_base64"),
    Case("b64-second-image-bad", v1({"instances": [GOOD, "!!"]}), 400, "image 1 is not valid base64", "not_base64"),
    Case("b64-over-max-image-bytes", v1({"instances": [b64(b"\0" * 1_000_001)]}), 413,
         "over the limit of 1000000 bytes (max_image_bytes)", "image_too_large"),
    # -- image formats -----------------------------------------------------------------------------------------
    Case("format-text", v1_images(b"GIF? no, just text"), 400, "image 0 (18 bytes) is not a readable image",
         "not_an_image"),
    Case("format-gif", v1_images(_encode(Image.new("RGB", (8, 8)), "GIF")), 415,
         "image 0 is in GIF format; the accepted formats are PNG and JPEG", "unsupported_format"),
    Case("format-tiff-float", v1_images(_float_tiff()), 415, "is in TIFF format", "unsupported_format"),
    Case("format-bmp", v1_images(_encode(Image.new("RGB", (8, 8)), "BMP")), 415, "is in BMP format",
         "unsupported_format"),
    Case("format-webp", v1_images(_encode(Image.new("RGB", (8, 8)), "WEBP")), 415, "is in WebP format",
         "unsupported_format"),
    Case("format-eps", v1_images(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n"), 415,
         "is in PostScript format", "unsupported_format"),
    Case("format-pdf", v1_images(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"), 415, "is in PDF format", "unsupported_format"),
    Case("format-ico", v1_images(_encode(Image.new("RGB", (16, 16)), "ICO")), 415, "is in ICO format",
         "unsupported_format"),
    Case("format-heif-brand", v1_images(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 16), 415, "is in HEIF/AVIF format",
         "unsupported_format"),
    Case("png-signature-only", v1_images(b"\x89PNG\r\n\x1a\n"), 400, "its PNG header is broken", "not_an_image"),
    Case("png-bad-crc", v1_images(GOOD_PNG[:29] + b"\0\0\0\0" + GOOD_PNG[33:]), 400, "its PNG header is broken",
         "not_an_image"),
    Case("png-truncated-pixels", v1_images(GOOD_PNG[:60]), 400, "is not a readable image", "not_an_image"),
    Case("png-text-bomb", v1_images(_text_bomb_png()), 400, "Decompressed data too large", "not_an_image"),
    Case("jpeg-soi-only", v1_images(b"\xff\xd8\xff"), 400, "its JPEG header is broken", "not_an_image"),
    Case("jpeg-truncated", v1_images(_exif_rotated_jpeg()[:300]), 400, "is not a readable image", "not_an_image"),
    # -- pixels: per image and per request ---------------------------------------------------------------------
    Case("pixels-bomb-header", v1_images(png_header(100_000, 100_000)), 413,
         "over the limit of 1048576 pixels (max_image_pixels)", "image_too_large"),
    Case("pixels-one-over-cap", v1_images(png_header(SIDE + 1, SIDE)), 413,
         f"image 0: {SIDE + 1}x{SIDE} pixels is over the limit of 1048576 pixels (max_image_pixels)",
         "image_too_large"),
    Case("pixels-8192-square-png", v1_images(png_header(8192, 8192)), 413, "(max_image_pixels)", "image_too_large"),
    Case("pixels-tall-thin", v1_images(png_header(1, 2_000_000)), 413, "(max_image_pixels)", "image_too_large"),
    Case("pixels-request-budget", v1_images(*[png_header(SIDE, SIDE)] * 3), 413,
         "images hold 3145728 pixels in all, over the limit of 2097152 pixels per request (max_request_pixels)",
         "request_too_large"),
    Case("pixels-budget-before-decoding", v1_images(png_header(SIDE, SIDE), png_header(SIDE, SIDE),
                                                     png_header(2, 2)), 413, "(max_request_pixels)",
         "request_too_large"),
    # -- the image as the body (image/*, octet-stream, multipart) ------------------------------------------------
    Case("body-gif", post(V1, _encode(Image.new("RGB", (8, 8)), "GIF"), headers={"content-type": "image/gif"}), 415,
         "image 0 is in GIF format", "unsupported_format"),
    Case("body-empty-image", post(V1, b"", headers={"content-type": "image/png"}), 400, "image 0 is empty",
         "empty_image"),
    Case("body-over-max-image-bytes", post(V1, b"\x89PNG" + b"\0" * 1_000_000, headers={"content-type": "image/png"}),
         413, "over the limit of 1000000 bytes (max_image_bytes)", "image_too_large"),
    Case("body-bomb-header", post(V1, png_header(50_000, 50_000), headers={"content-type": "image/png"}), 413,
         "(max_image_pixels)", "image_too_large"),
    Case("body-octet-stream-is-json", post(V1, GOOD_PNG, headers={"content-type": "application/octet-stream"}),
         400, "Unrecognized request format", "bad_json"),  # KServe reads octet-stream as JSON
    Case("body-image-not-an-image", post(V1, b"plain text", headers={"content-type": "image/png"}), 400,
         "image 0 (10 bytes) is not a readable image", "not_an_image"),
    Case("body-json-charset-broken", post(V1, b'{"instances": [', headers={"content-type":
                                                                       "application/json; charset=utf-8"}), 400,
         "Unrecognized request format", "bad_json"),
    Case("body-multipart-no-boundary", post(V1, b"abc", headers={"content-type": "multipart/form-data"}), 400,
         "names no boundary", "bad_request"),
    Case("body-multipart-no-files", post(V1, files={"note": (None, "hello")}), 400, "holds no images", "no_images"),
    Case("body-multipart-too-many", post(V1, files=[("file", (f"{i}.png", GOOD_PNG, "image/png")) for i in range(5)]),
         413, "(max_images_per_request)", "too_many_images"),
    Case("body-multipart-text-file", post(V1, files={"file": ("notes.txt", b"hello", "text/plain")}), 400,
         "is not a readable image", "not_an_image"),
    # -- V2 ----------------------------------------------------------------------------------------------------
    Case("v2-fp32", v2([{"name": "image", "shape": [1], "datatype": "FP32", "data": [1.0]}]), 400,
         "has datatype FP32", "bad_request"),
    Case("v2-two-inputs", v2([{"name": "a", "shape": [1], "datatype": "BYTES", "data": [GOOD]},
                              {"name": "b", "shape": [1], "datatype": "BYTES", "data": [GOOD]}]), 400,
         "expected exactly one input", "bad_request"),
    Case("v2-shape-mismatch", v2([{"name": "image", "shape": [2], "datatype": "BYTES", "data": [GOOD]}]), 400,
         "has shape [2] (2 elements)", "bad_request"),
    Case("v2-negative-shape", v2([{"name": "image", "shape": [-1], "datatype": "BYTES", "data": [GOOD]}]), 400,
         "has shape [-1]", "bad_request"),
    Case("v2-not-base64", v2([{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["not base64!"]}]), 400,
         "not valid base64", "not_base64"),
    Case("v2-object-element", v2([{"name": "image", "shape": [1], "datatype": "BYTES", "data": [{"b64": GOOD}]}]),
         400, "image 0 is a dict", "not_base64"),
    Case("v2-too-many", v2([{"name": "image", "shape": [5], "datatype": "BYTES", "data": [GOOD] * 5}]), 413,
         "(max_images_per_request)", "too_many_images"),
    Case("v2-no-inputs", post(V2, json_body={"instances": [GOOD]}), 422, "inputs: Field required",
         "invalid_schema"),
    Case("v2-inputs-not-list", post(V2, json_body={"inputs": {"name": "image"}}), 422,
         "does not match the endpoint's schema", "invalid_schema"),
    Case("v2-binary-length-not-a-number", _binary_v2("abc", _V2_JSON), 400, "invalid literal for int()",
         "bad_request"),
    Case("v2-binary-length-negative", _binary_v2("-5", _V2_JSON), 400, "Unrecognized request format", "bad_json"),
    Case("v2-binary-no-inputs", _binary_v2("2", b"{}"), 400, "malformed request: KeyError", "bad_request"),
    Case("v2-binary-data-size-too-large", _binary_v2(str(len(_V2_BINARY_HEAD)), _V2_BINARY_HEAD + b"\x00\x00\x00"),
         400, "malformed request", "bad_request"),
    # -- routes ------------------------------------------------------------------------------------------------
    Case("route-unknown-model-v1", post("/v1/models/nope:predict", json_body={"instances": [GOOD]}), 404,
         "Model with name nope does not exist", "model_not_found"),
    Case("route-unknown-model-v2", post("/v2/models/nope/infer", json_body={"inputs": []}), 404,
         "Model with name nope does not exist", "model_not_found"),
    Case("route-unknown-path", request("GET", "/admin"), 404, "Not Found", "not_found"),
    Case("route-get-on-v1-predict", request("GET", V1), 404,  # KServe reads it as GET /v1/models/{name}
         f"Model with name {NAME}:predict does not exist", "model_not_found"),
    Case("route-get-on-infer", request("GET", V2), 405, "Method Not Allowed", "method_not_allowed"),
    Case("route-put-on-infer", request("PUT", V2), 405, "Method Not Allowed", "method_not_allowed"),
    # -- HTTP transport ----------------------------------------------------------------------------------------
    Case("http-body-over-limit", post(V1, b" " * (3 * MB), headers={"content-type": "application/json"}), 413,
         "the request body is 3145728 bytes, over the limit of 2097152 bytes (max_body_bytes)", "body_too_large"),
    Case("http-chunked-body-over-limit", chunked(3 * MB), 413, "the chunked request body grew, over the limit",
         "body_too_large"),
    Case("http-expect-100-big-body", raw(f"POST {V1} HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                                         f"Content-Length: {3 * MB}\r\n\r\n".encode()), 413, "(max_body_bytes)",
         "body_too_large"),
    Case("http-too-many-headers", request("GET", "/v2/health/ready", {f"x-h{i}": "1" for i in range(60)}), 431,
         "more than 50 header fields (max_header_count)", "too_many_headers"),
    Case("http-huge-header", request("GET", "/v2/health/ready", {"x-big": "a" * 9000}), 431,
         "longer than 8192 bytes (max_header_bytes)", "headers_too_large"),
    Case("http-huge-url", request("GET", "/v2/health/ready?" + "q" * 9000), 431, "(max_header_bytes)",
         "headers_too_large"),
    Case("http-endless-header-line", raw(b"GET / HTTP/1.1\r\nX-Endless: " + b"a" * 20000), 431,
         "(max_header_bytes)", "headers_too_large"),
    Case("http-not-http", raw(b"HELLO\r\n\r\n"), 400, "Invalid HTTP request received", "bad_http"),
    Case("http-content-length-not-a-number", raw(f"POST {V1} HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n"
                                                 .encode()), 400, "Invalid HTTP request received", "bad_http"),
    Case("http-smuggling-cl-and-te", raw(f"POST {V1} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                                         f"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n".encode()), 400,
         "Invalid HTTP request received", "bad_http"),
    Case("http-two-content-lengths", raw(f"POST {V1} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                                         f"Content-Length: 6\r\n\r\n12345".encode()), 400,
         "Invalid HTTP request received", "bad_http"),
    Case("http-nul-in-header", raw(b"GET /v2/health/ready HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n"), 400,
         "Invalid HTTP request received", "bad_http"),
    Case("http-bad-chunk-size", raw(f"POST {V1} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
                                    .encode()), 400, "Invalid HTTP request received", "bad_http"),
    Case("http2-preface", raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 400, "Invalid HTTP request received",
         "bad_http"),
    Case("http-websocket-upgrade", raw(b"GET /v2/health/ready HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                                       b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                                       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"), 403, "",
         "websocket_refused"),
    Case("http-half-sent-head", raw(f"POST {V1} HTTP/1.1\r\nHost: a\r\n".encode()), 408,
         "not received whole within 2 s (read_timeout_seconds)", "read_timeout"),
    Case("http-half-sent-body", raw(f"POST {V1} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                                    f"Content-Length: 100\r\n\r\n{{".encode()), 408, "(read_timeout_seconds)",
         "read_timeout"),
    Case("http-slowloris-drip", raw(b"GET /v2/health/ready HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"b" * 40,
                                    drip_seconds=0.1), 408, "(read_timeout_seconds)", "read_timeout"),
    Case("http-idle-connection", raw(b""), CLOSED, "", None),
]


def _count(metrics: str, code: int, reason: str) -> float:
    match = re.search(rf'^visionops_requests_total{{code="{code}",reason="{reason}"}} (\S+)$', metrics, re.M)
    return float(match[1]) if match else 0.0


# -- fixtures -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hostile_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Predictor, int]]:
    """The predictor with small limits (:data:`LIMITS`) and its RSS after a first good request."""
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in LIMITS.items()]
    server = start_predictor(["--model-dir", str(model_dir), "--imgsz", "64", "--confidence", "0.0001",
                              f"--timeout-keep-alive={IDLE_SECONDS}", *flags],
                             tmp_path_factory.mktemp("predictor-hostile") / "server.log")
    assert server.v1({"instances": [GOOD]}).status_code == 200
    yield server, ProcessMemory(server.proc.pid).rss()
    server.stop()


# -- tests --------------------------------------------------------------------------------------------------------

def test_there_are_at_least_60_cases():
    assert len(CASES) >= 60 and len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_request_is_refused_clearly_and_counted(hostile_server: tuple[Predictor, int], case: Case):
    server, _ = hostile_server
    before = _count(server.metrics(), case.status, case.reason) if case.reason else 0.0
    started = time.monotonic()
    status, text = case.send(server)
    assert status == case.status, (case.id, status, text[:300])
    if case.status >= 400 and case.reason not in ("bad_http", "websocket_refused"):  # uvicorn's own answer: text
        text = json.loads(text)["error"]  # the app's and the transport's refusals: {"error": message}
    assert case.message in text, (case.id, text[:300])
    if case.reason:
        assert _count(server.metrics(), case.status, case.reason) >= before + 1, case.reason
    if case.id == "http-idle-connection":
        assert IDLE_SECONDS - 0.5 <= time.monotonic() - started <= IDLE_SECONDS + 5  # closed, not held for ever
    assert server.v1({"instances": [GOOD]}).status_code == 200, f"server broken after {case.id}"


def test_after_the_hostile_requests_the_server_answers_and_memory_is_back(hostile_server: tuple[Predictor, int],
                                                                           tiny_images: list[bytes]):
    server, baseline = hostile_server
    good = server.v1({"instances": [b64(image) for image in tiny_images[:2]]})
    assert good.status_code == 200 and len(good.json()["predictions"]) == 2
    v2 = server.v2({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [GOOD]}]})
    assert v2.status_code == 200
    # a decode at the per-image cap, then memory comes back down
    at_cap = server.v1({"instances": [b64(solid_image(SIDE, SIDE, "RGBA", orientation=6))] * 2})
    assert at_cap.status_code == 200, at_cap.text[:300]
    assert ProcessMemory(server.proc.pid).rss() - baseline < 64 * MB
    log = server.log.read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
    for case in CASES:  # one line each (uvicorn logs its own 400s; a WebSocket refusal is no error)
        if case.reason and case.reason not in ("bad_http", "websocket_refused"):
            assert f": {case.status} {case.reason}" in log, case.id


def _head(length: int, chunked_body: bool = False) -> bytes:
    framing = "Transfer-Encoding: chunked" if chunked_body else f"Content-Length: {length}"
    return (f"POST {V1} HTTP/1.1\r\nHost: predictor\r\nContent-Type: application/json\r\n{framing}\r\n\r\n").encode()


def test_bodies_in_flight_are_bounded_the_next_waits_for_a_503_with_retry_after(
        model_dir: Path, tmp_path: Path) -> None:
    """max_inflight_body_bytes (predictor/admission.py): what requests hold together is capped; the request that
    would go past it is answered 503 + Retry-After before its body is read, counted, and the server stays whole.
    One request is always admitted; a body that is answered gives its bytes back."""
    budget = 3 * MB
    server = start_predictor(["--model-dir", str(model_dir), "--imgsz", "64", "--max-body-bytes", str(2 * MB),
                              "--max-inflight-body-bytes", str(budget)], tmp_path / "server.log")
    try:
        assert "request bodies in flight at once: at most 3 MiB (max_inflight_body_bytes)" in server.log.read_text()
        holding = socket.create_connection(("127.0.0.1", server.port), timeout=20)
        holding.sendall(_head(2 * MB))  # announced, not sent: 2 MiB of the 3 taken
        time.sleep(0.5)
        for head in (_head(2 * MB), _head(0, chunked_body=True)):  # a chunked body may grow to max_body_bytes
            with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
                sock.sendall(head)
                answer = b""
                while not _complete(answer) and (chunk := sock.recv(65536)):
                    answer += chunk
            status_line, _, rest = answer.partition(b"\r\n")
            assert status_line == b"HTTP/1.1 503 Service Unavailable", answer[:300]
            assert re.search(rb"(?im)^retry-after: 1\r?$", rest), answer[:300]
            assert b"max_inflight_body_bytes" in answer and b"retry in 1 s" in answer
        assert server.v1({"instances": [GOOD]}).status_code == 200, "a small request fits beside the held one"
        assert _count(server.metrics(), 503, "busy") == 2
        holding.close()  # the held request goes: its bytes come back
        deadline = time.monotonic() + 10
        while (status := raw(_head(2 * MB) + b"x" * (2 * MB))(server)[0]) == 503 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == 400, status  # admitted now, then refused for what it is (not JSON)
        assert server.v1({"instances": [GOOD]}).status_code == 200
        assert "Traceback" not in server.log.read_text()
    finally:
        server.stop()
