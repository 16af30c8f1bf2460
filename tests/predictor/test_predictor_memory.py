"""Predictor memory: the worst request the limits allow stays under the documented bound, a request over the
limits costs nothing, and the server's RSS comes back down afterwards (the real server, measured from /proc).

The helpers (``ProcessMemory``, the request builders) are in ``fixtures.predictor_process``, shared with
``bench/bench_predictor_memory.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.predictor_process import (
    MB,
    Predictor,
    ProcessMemory,
    b64,
    over_limit_request,
    start_predictor,
    worst_request,
)

from predictor.admission import request_memory_bound
from predictor.settings import ServingSettings

pytestmark = pytest.mark.slow

LIMITS = {"max_image_pixels": 4096 * 4096, "max_request_pixels": 2 * 4096 * 4096, "max_body_bytes": 16 * MB,
          "max_parallel_images": 1}


@pytest.fixture(scope="module")
def small_limits_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Predictor]:
    """The predictor with limits scaled down (4096x4096 per image): the same code paths, a quarter of the CPU."""
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in LIMITS.items()]
    server = start_predictor(["--model-dir", str(model_dir), "--imgsz", "64", "--confidence", "0.0001", *flags],
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
