"""What requests may hold in memory together, and the gate that keeps them under it.

One request adds at most :func:`request_memory_bound` to the idle server: its body, held about
:data:`BODY_COPIES` times while it is read and parsed, and one image being decoded. Images are decoded
``max_parallel_images`` at a time over all requests, so what grows with concurrency is the bodies. The
:class:`InflightBudget` caps the bytes of request bodies in flight (received or announced, not yet answered) at
``max_inflight_body_bytes``; a request that would go past it is answered **503** with ``Retry-After`` before its
body is read (:mod:`predictor.transport`), counted as ``visionops_requests_total{code="503", reason="busy"}``. One
request is always admitted, however large, so that the limit never refuses what ``max_body_bytes`` allows.

``max_inflight_body_bytes: 0`` (the default) derives the budget from the container's memory limit (cgroup v2
``memory.max``, or v1 ``memory.limit_in_bytes``): what is left after the idle server and the parallel decodes,
divided by :data:`BODY_COPIES`. Without a limit it is :data:`UNLIMITED_BODIES` bodies of ``max_body_bytes``.
"""

from __future__ import annotations

from pathlib import Path

from predictor import images
from predictor.settings import ServingSettings

BODY_COPIES = 4  # a body is held about this many times while it is read and parsed (bytes, joined, JSON strings)
IDLE_ALLOWANCE = 768 << 20  # the idle server with its model loaded (bench/bench_predictor_memory.py: ~400 MiB)
UNLIMITED_BODIES = 4  # the budget in bodies of max_body_bytes when the container has no memory limit
RETRY_AFTER_SECONDS = 1
CGROUP_V2_MEMORY_MAX = Path("/sys/fs/cgroup/memory.max")
CGROUP_V1_MEMORY_LIMIT = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")


def request_memory_bound(settings: ServingSettings) -> int:
    """Most memory one request can add to the idle server: its body (``max_body_bytes``, held about
    :data:`BODY_COPIES` times) and one image of ``max_image_pixels`` being decoded
    (:data:`~predictor.images.PEAK_BYTES_PER_PIXEL` each)."""
    return BODY_COPIES * settings.max_body_bytes + images.PEAK_BYTES_PER_PIXEL * settings.max_image_pixels


def memory_limit(v2: Path = CGROUP_V2_MEMORY_MAX, v1: Path = CGROUP_V1_MEMORY_LIMIT) -> int | None:
    """The container's memory limit in bytes, or None when it has none (or this is not Linux)."""
    for path in (v2, v1):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # v1 says "no limit" with a huge number, v2 with "max"
            return int(text)
        return None
    return None


def inflight_budget(settings: ServingSettings, limit: int | None) -> int:
    """The bytes of request bodies that may be in flight at once: ``max_inflight_body_bytes`` when set, else from
    the memory ``limit`` (see the module docstring); never less than one body of ``max_body_bytes``."""
    if settings.max_inflight_body_bytes:
        return settings.max_inflight_body_bytes
    if limit is None:
        return UNLIMITED_BODIES * settings.max_body_bytes
    decoding = settings.max_parallel_images * images.PEAK_BYTES_PER_PIXEL * settings.max_image_pixels
    return max(settings.max_body_bytes, (limit - IDLE_ALLOWANCE - decoding) // BODY_COPIES)


class InflightBudget:
    """The bytes of request bodies admitted and not yet answered, over every connection of the server. Used from
    the event loop's thread only (uvicorn's protocol callbacks): no lock."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.held = 0

    def take(self, size: int) -> bool:
        """Admit a body of ``size`` bytes when it fits (or when nothing else is in flight)."""
        if self.held and self.held + size > self.capacity:
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        self.held = max(0, self.held - size)
