"""Predictor memory: the worst request the limits allow stays under the documented bound, a request over the
limits costs nothing, and the server's RSS comes back down afterwards (the real server, measured from /proc).

The helpers (:class:`ProcessMemory`, the request builders) are shared with ``bench/bench_predictor_memory.py``.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from test_predictor_onnx import export_onnx_model_dir
from test_predictor_server import Predictor, _start

from predictor.admission import request_memory_bound
from predictor.settings import ServingSettings

pytestmark = pytest.mark.slow

MB = 1 << 20
EXIF_ROTATE_90 = 6  # the orientation that costs a transposed copy


class ProcessMemory:
    """Resident memory of a running process (Linux ``/proc``): now, and the peak since :meth:`reset_peak`."""

    def __init__(self, pid: int):
        self.pid = pid

    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
        raise KeyError(f"{key} not in /proc/{self.pid}/status")

    def rss(self) -> int:
        return self._status("VmRSS")

    def peak(self) -> int:
        return self._status("VmHWM")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def solid_image(width: int, height: int, mode: str = "RGB", fmt: str = "PNG", orientation: int = 1) -> bytes:
    """An image of one colour: tiny as a file, ``width * height`` pixels decoded."""
    image = Image.new(mode, (width, height), (90, 120, 150, 255)[: len(mode)] if len(mode) > 1 else 90)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    image.save(buf, format=fmt, exif=exif.tobytes(), **({"quality": 30} if fmt == "JPEG" else {}))
    return buf.getvalue()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def worst_request(settings: ServingSettings) -> dict:
    """The most memory-hungry V1 body the settings accept: as many images of ``max_image_pixels`` as
    ``max_request_pixels`` allows, each an EXIF-rotated RGBA PNG (4 bytes per pixel decoded, plus the rotated
    copy), the body padded with an ignored field up to ``max_body_bytes``."""
    side = math.isqrt(settings.max_image_pixels)
    count = max(1, min(settings.max_images_per_request, settings.max_request_pixels // (side * side)))
    image = b64(solid_image(side, side, "RGBA", orientation=EXIF_ROTATE_90))
    body = {"instances": [image] * count}
    padding = settings.max_body_bytes - len(json.dumps(body)) - len(', "padding": ""') - 64
    return {**body, "padding": "x" * max(0, padding)}


def over_limit_request(settings: ServingSettings, count: int = 16) -> dict:
    """The issue's attack scaled to the settings: ``count`` small PNGs of ``max_image_pixels`` each (too many pixels
    together), refused from the headers before any image is decoded."""
    side = math.isqrt(settings.max_image_pixels)
    return {"instances": [b64(solid_image(side, side))] * count}


# -- the test ------------------------------------------------------------------------------------------------

LIMITS = {"max_image_pixels": 4096 * 4096, "max_request_pixels": 2 * 4096 * 4096, "max_body_bytes": 16 * MB,
          "max_parallel_images": 1}


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx_model_dir(tiny_model_dir, tmp_path_factory.mktemp("onnx-model"))


@pytest.fixture(scope="module")
def small_limits_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Predictor]:
    """The predictor with limits scaled down (4096x4096 per image): the same code paths, a quarter of the CPU."""
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in LIMITS.items()]
    server = _start(["--model-dir", str(model_dir), "--imgsz", "64", "--confidence", "0.0001", *flags],
                    tmp_path_factory.mktemp("predictor-memory") / "server.log")
    yield server
    server.stop()


def test_worst_request_stays_under_the_bound_and_memory_comes_back(small_limits_server: Predictor,
                                                                    tiny_images: list[bytes]):
    server, settings = small_limits_server, ServingSettings.from_config(LIMITS)
    memory = ProcessMemory(server.proc.pid)
    ordinary = {"instances": [b64(tiny_images[0])]}
    assert server.v1(ordinary).status_code == 200  # warm
    baseline = memory.rss()

    memory.reset_peak()
    worst = server.v1(worst_request(settings))
    assert worst.status_code == 200, worst.text[:300]
    assert len(worst.json()["predictions"]) == 2
    worst_peak = memory.peak() - baseline
    assert worst_peak <= request_memory_bound(settings), (worst_peak / MB, request_memory_bound(settings) / MB)

    memory.reset_peak()
    refused = server.v1(over_limit_request(settings))
    assert refused.status_code == 413 and "(max_request_pixels)" in refused.json()["error"]
    assert memory.peak() - baseline < 64 * MB  # refused from the headers: nothing decoded

    assert server.v1(ordinary).status_code == 200
    assert memory.rss() - baseline < 64 * MB, (memory.rss() - baseline) / MB  # back down
