"""Predictor memory benchmark: the server's peak RSS for an ordinary request vs the worst request the limits allow.

``python -m predictor`` (the real KServe ModelServer) runs with the limits of ``configs/serving.yaml`` (or the
``VISIONOPS_*`` variables, e.g. ``VISIONOPS_MAX_IMAGE_PIXELS``). In one run, each request below is sent and the
server's RSS high-water mark is read from ``/proc/<pid>/status`` (reset before each request via ``clear_refs``):

- ordinary: one image of the synthetic VISION dataset (160 px);
- camera: one 2448x2048 JPEG (5 Mpx, a typical inspection camera);
- worst: the most memory-hungry request the limits accept (as many images of ``max_image_pixels`` as
  ``max_request_pixels`` allows, EXIF-rotated RGBA PNGs, the body padded to ``max_body_bytes``);
- over: the issue's attack, 16 PNGs of ``max_image_pixels`` (refused with 413 from the headers);
- worst x4, x8, x16: that many worst requests at once. The bodies in flight are capped by
  ``max_inflight_body_bytes`` (predictor/admission.py; here set as a 2 GiB pod's limit would derive it): the ones
  past it get 503 + Retry-After before their body is read, so the peak stays flat as the clients multiply.

Reports status, seconds, peak RSS and its excess over the idle server, the bound the code documents
(``request_memory_bound``) and the RSS after each request. Linux only (``/proc``).

    .venv/bin/python bench/bench_predictor_memory.py [--model-dir DIR]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import requests
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bench_predictor import Server, in_workdir, load_images, tiny_vision_model  # noqa: E402
from fixtures.predictor_process import MB, ProcessMemory, over_limit_request, worst_request  # noqa: E402

from predictor.admission import inflight_budget, request_memory_bound  # noqa: E402
from predictor.cli import LIMIT_FLAGS, build_parser, limit_env  # noqa: E402
from predictor.settings import ServingSettings  # noqa: E402

POD_MEMORY_LIMIT = 2 << 30  # the chart's predictor.resources.limits.memory


def camera_image() -> bytes:
    """A 2448x2048 JPEG with some texture (what an inspection camera sends)."""
    image = Image.effect_noise((2448, 2048), 40).convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="serve this model dir instead of training a tiny one")
    args = parser.parse_args(argv)
    return in_workdir("bench-predictor-memory-", lambda work: bench(args, work))


def bench(args: argparse.Namespace, work: Path) -> int:
    vision, args.model_dir = tiny_vision_model(work, args.model_dir)
    defaults = ServingSettings.from_config()
    flags = build_parser(defaults).parse_args([])  # the server's limits: configs/serving.yaml and VISIONOPS_*
    settings = ServingSettings.from_config({"imgsz": 64, **{name: getattr(flags, name) for name in LIMIT_FLAGS}})
    if not settings.max_inflight_body_bytes:  # what the chart's predictor (a 2 GiB memory limit) derives
        settings = replace(settings, max_inflight_body_bytes=inflight_budget(settings, POD_MEMORY_LIMIT))
        os.environ[limit_env("max_inflight_body_bytes")] = str(settings.max_inflight_body_bytes)  # the server's
    b64 = [base64.b64encode(raw).decode() for raw in (load_images(vision, 1)[0], camera_image())]
    worst, over = worst_request(settings), over_limit_request(settings)
    requests_by_name = {"ordinary": [{"instances": [b64[0]]}], "camera 5 Mpx": [{"instances": [b64[1]]}],
                        "worst": [worst], "over (16 images)": [over], "worst x4 at once": [worst] * 4,
                        "worst x8 at once": [worst] * 8, "worst x16 at once": [worst] * 16}

    server = Server(args.model_dir, settings, work / "server.log")
    memory = ProcessMemory(server.proc.pid)
    url = f"{server.url}/v1/models/{settings.model_name}:predict"
    try:
        requests.post(url, json=requests_by_name["ordinary"][0], timeout=60).raise_for_status()  # warm up
        baseline = memory.rss()
        rows = []
        for name, bodies in requests_by_name.items():
            memory.reset_peak()
            started = time.perf_counter()
            with ThreadPoolExecutor(len(bodies)) as pool:
                statuses = list(pool.map(lambda body: requests.post(url, json=body, timeout=600).status_code, bodies))
            rows.append((name, "/".join(map(str, sorted(set(statuses)))), time.perf_counter() - started,
                         len(json.dumps(bodies[0])), memory.peak(), memory.rss()))
    finally:
        server.stop()

    bound = request_memory_bound(settings)
    print(f"\nlimits: max_image_pixels {settings.max_image_pixels}, max_request_pixels {settings.max_request_pixels}, "
          f"max_body_bytes {settings.max_body_bytes}, max_parallel_images {settings.max_parallel_images}, "
          f"max_inflight_body_bytes {settings.max_inflight_body_bytes}")
    print(f"idle server RSS {baseline / MB:.0f} MiB; documented bound per request above it "
          f"(request_memory_bound) {bound / MB:.0f} MiB\n")
    print(f"{'request':<18} {'status':>7} {'s':>6} {'body MiB':>9} {'peak MiB':>9} {'peak-idle':>10} {'after MiB':>10}")
    for name, status, seconds, body, peak, after in rows:
        print(f"{name:<18} {status:>7} {seconds:>6.1f} {body / MB:>9.1f} {peak / MB:>9.0f} "
              f"{(peak - baseline) / MB:>10.0f} {after / MB:>10.0f}")
    worst_excess = next(peak for name, *_, peak, _ in rows if name == "worst") - baseline
    print(f"\nworst request: {worst_excess / MB:.0f} MiB over idle, {worst_excess / bound:.0%} of the bound")
    return 0 if worst_excess <= bound else 1


if __name__ == "__main__":
    sys.exit(main())
