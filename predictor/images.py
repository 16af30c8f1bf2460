"""Image bytes -> the 8-bit pixels the model was trained on, upright; or a clear refusal.

Formats: PNG and JPEG (and MPO, a camera JPEG with extra frames: its first frame), what the VISION data
uses. Every other format is refused from its first bytes, before any Pillow plugin parses it (EPS, TIFF, ...).
Pixels are read the way ultralytics reads files (OpenCV ``imdecode``), so the model sees what it saw in
training: 16-bit samples keep their high byte, grayscale is repeated on three channels, alpha is dropped,
the EXIF orientation is applied. The pixel count is checked from the header, before anything is decoded.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from predictor.payload import PayloadError
from visionops.images import ImageTooLarge, check_pixels

ACCEPTED = "PNG or JPEG"
_PIL_FORMATS = ("PNG", "JPEG")  # the JPEG opener also opens MPO
_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}
# other formats, named in the refusal
_OTHER_SIGNATURES = {
    b"GIF87a": "GIF", b"GIF89a": "GIF", b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"BM": "BMP", b"%!PS": "PostScript",
    b"\xc5\xd0\xd3\xc6": "EPS", b"%PDF": "PDF", b"\x00\x00\x01\x00": "ICO", b"\x00\x00\x00\x0cjP  ": "JPEG 2000",
    b"\xffO\xffQ": "JPEG 2000", b"8BPS": "Photoshop", b"qoif": "QOI", b"DDS ": "DDS",
}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}  # 16-bit grayscale PNG (Pillow reads some as "I")
_STRIP_ROWS = 256
# most bytes per pixel held while one image is decoded: 4 (RGBA, CMYK: Pillow's widest 8-bit storage) + 4 (the
# rotated copy of an EXIF orientation); rows are converted to RGB a few at a time (bench/bench_predictor_memory.py)
PEAK_BYTES_PER_PIXEL = 8


def image_format(raw: bytes) -> str | None:
    """``"PNG"`` or ``"JPEG"`` from the file signature, else ``None``."""
    return next((name for magic, name in _SIGNATURES.items() if raw.startswith(magic)), None)


def _other_format(raw: bytes) -> str | None:
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "WebP"
    if raw[4:8] == b"ftyp":
        return "HEIF/AVIF"
    return next((name for magic, name in _OTHER_SIGNATURES.items() if raw.startswith(magic)), None)


def _not_readable(raw: bytes, index: int, reason: str) -> PayloadError:
    return PayloadError("not_an_image", f"image {index} ({len(raw)} bytes) is not a readable image: {reason}; "
                                        f"send base64 of {ACCEPTED} bytes")


def _open(raw: bytes, index: int, max_pixels: int) -> Image.Image:
    """The lazily opened image (header read, nothing decoded) after the format and pixel checks."""
    kind = image_format(raw)
    if kind is None:
        other = _other_format(raw)
        if other:
            raise PayloadError("unsupported_format", f"image {index} is in {other} format; the accepted formats are "
                                                     "PNG and JPEG", status=415)
        raise _not_readable(raw, index, "unknown image format")
    try:
        image = Image.open(io.BytesIO(raw), formats=_PIL_FORMATS)
    except Image.DecompressionBombError as exc:
        raise PayloadError("image_too_large", f"image {index}: over the limit of {max_pixels} pixels "
                                              f"(max_image_pixels): {exc}", status=413) from exc
    except (UnidentifiedImageError, ImportError) as exc:
        # ImportError: ultralytics, when imported in the same process, patches Image.open to retry with pi_heif
        raise _not_readable(raw, index, f"its {kind} header is broken") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise _not_readable(raw, index, str(exc)) from exc
    try:
        check_pixels(image.size, max_pixels)  # a 65 KB PNG can decode to 256 MB
    except ImageTooLarge as exc:
        raise PayloadError("image_too_large", f"image {index}: {exc}", status=413) from exc
    return image


def probe(raw: bytes, index: int, max_pixels: int) -> int:
    """Pixel count of an accepted image, read from its header; refuses other formats and images over the cap."""
    width, height = _open(raw, index, max_pixels).size
    return width * height


def to_8bit(image: Image.Image, index: int = 0) -> Image.Image:
    """An image whose ``convert("RGB")`` gives the pixels of OpenCV's ``imdecode(..., IMREAD_COLOR)`` of the same
    file: 8-bit modes as they are (converted later, a few rows at a time, by the preprocessing), 16-bit grayscale
    as its high bytes (mode ``L``); floating-point pixels are refused (their range is not defined)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        return _high_bytes(image)
    if image.mode == "F" or image.mode.startswith(("I;", "F;")):
        raise PayloadError("unsupported_pixels", f"image {index} has {image.mode} pixels (floating point or wider "
                                                 f"than 16 bits) whose range is not defined; send 8- or 16-bit "
                                                 f"{ACCEPTED}", status=415)
    return image


def _high_bytes(image: Image.Image) -> Image.Image:
    """16-bit grayscale -> ``L`` holding each sample's high byte, a strip of rows at a time (no wide temporaries)."""
    width, height = image.size
    out = np.empty((height, width), dtype=np.uint8)
    for top in range(0, height, _STRIP_ROWS):
        strip = np.asarray(image.crop((0, top, width, min(top + _STRIP_ROWS, height))))
        out[top:top + strip.shape[0]] = strip.clip(0, 65535) >> 8
    return Image.fromarray(out, "L")


def decode(raw: bytes, index: int, max_pixels: int) -> Image.Image:
    """The upright 8-bit pixels of one accepted image (see :func:`to_8bit` and the module docstring)."""
    image = _open(raw, index, max_pixels)
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        raise _not_readable(raw, index, str(exc)) from exc
    return to_8bit(image, index)
