"""Predictor benchmark: the same N images through the model in-process and through KServe over HTTP.

(a) in-process ONNX: ``await DefectDetector.predict({"instances": [...]})`` on one event loop (the same
    parse + base64 decode + ONNX Runtime path the server runs, without HTTP/JSON/KServe);
(b) in-process ultralytics: the same, with inference by ultralytics on ``best.pt`` as the predictor did
    before ONNX Runtime (PyTorch; needs ultralytics, i.e. the dev venv; skipped without ``best.pt``);
(c) HTTP: ``python -m predictor`` (the real KServe ModelServer) on loopback, V1 ``:predict`` and
    V2 ``/infer`` with a BYTES base64 input, one request at a time from one client.
Reports p50/p95 latency per request, images/s and the ratios to (a), all from one run.

    .venv/bin/python bench/bench_predictor.py [--images 64] [--batch 1] [--imgsz 640] [--model-dir DIR]

Without --model-dir it generates a synthetic VISION dataset, trains a tiny YOLOv8n (1 epoch, 64 px, a
few seconds) and exports it to ONNX at --imgsz (default 64; 640 costs what the real model costs per
image); the images are the dataset's own (160 px, PNG/JPEG). A --model-dir is served as it is (its
best.onnx fixes the input size).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from fixtures.models import train_tiny_model_dir  # noqa: E402
from test_predictor_onnx import export_onnx_model_dir  # noqa: E402

from predictor.detections import image_prediction  # noqa: E402
from predictor.model import DefectDetector  # noqa: E402
from predictor.settings import ServingSettings  # noqa: E402
from visionops.data.prepare import prepare  # noqa: E402
from visionops.data.synth import generate  # noqa: E402
from visionops.local_mlflow import free_port  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def load_images(root: Path, count: int) -> list[bytes]:
    """``count`` image files under ``root`` (sorted, cycled when there are fewer)."""
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    if not paths:
        raise SystemExit(f"no images under {root}")
    return [paths[i % len(paths)].read_bytes() for i in range(count)]


def run_timed(call: Callable[[list[str]], None], batches: list[list[str]]) -> tuple[list[float], float]:
    """Per-request latencies (ms) and total wall time (s) of calling ``call`` on each batch in turn."""
    latencies = []
    started = time.perf_counter()
    for batch in batches:
        t0 = time.perf_counter()
        call(batch)
        latencies.append((time.perf_counter() - t0) * 1000)
    return latencies, time.perf_counter() - started


class UltralyticsDetector(DefectDetector):
    """The predictor before ONNX Runtime: same parsing, decoding and responses; ``YOLO(best.pt).predict``."""

    _yolo = None

    def load(self) -> bool:
        super().load()  # checks the dir; settings (the ONNX model's imgsz) and class names
        from visionops import offline

        offline.configure()
        from ultralytics import YOLO

        self._yolo = YOLO(str(self.model_dir / "best.pt"))
        self._infer([Image.new("RGB", (self.settings.imgsz, self.settings.imgsz))])  # warm up
        return self.ready

    def _infer(self, images: list[Image.Image]) -> list[dict]:
        if self._yolo is None:  # the ONNX warm-up of DefectDetector.load
            return super()._infer(images)
        settings = self.settings
        results = self._yolo.predict(images, conf=settings.confidence, iou=settings.iou, imgsz=settings.imgsz,
                                     device="cpu", verbose=False)
        return [image_prediction(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist(), image.size,
                                 self.class_names, inference_time_ms=sum(r.speed.values()))
                for image, r in zip(images, results, strict=True)]


class Server:
    """``python -m predictor`` on a free loopback port."""

    def __init__(self, model_dir: Path, settings: ServingSettings, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "predictor", "--model-dir", str(model_dir), "--http_port", str(self.port),
               "--grpc_port", str(free_port()), "--imgsz", str(settings.imgsz), "--confidence",
               str(settings.confidence), "--max-images-per-request", str(settings.max_images_per_request),
               "--enable_latency_logging", "false"]
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"predictor exited:\n{log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.3)
        self.stop()
        raise SystemExit(f"predictor not ready in 180 s:\n{log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64, help="images sent through each path")
    parser.add_argument("--batch", type=int, default=1, help="images per request")
    parser.add_argument("--model-dir", type=Path, help="serve this model dir instead of training a tiny one")
    parser.add_argument("--imgsz", type=int, default=64, help="ONNX export size of the tiny model (px)")
    parser.add_argument("--no-ultralytics", action="store_true", help="skip the in-process ultralytics baseline")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests per path first")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-predictor-"))
    try:
        return bench(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench(args: argparse.Namespace, work: Path) -> int:
    vision = generate(work / "vision")
    if args.model_dir is None:
        print(f"training a tiny YOLOv8n (1 epoch, 64 px), ONNX export at {args.imgsz} px...", flush=True)
        trained = train_tiny_model_dir(prepare(vision, work / "dataset"), work / "train")
        args.model_dir = export_onnx_model_dir(trained, work / "model", imgsz=args.imgsz)
    settings = ServingSettings.from_config({"imgsz": args.imgsz, "max_images_per_request": max(args.batch, 1)})
    images = [base64.b64encode(raw).decode() for raw in load_images(vision, args.images)]
    batches = [images[i:i + args.batch] for i in range(0, len(images), args.batch)]

    model = DefectDetector("bench", model_dir=args.model_dir, settings=settings)
    model.load()
    settings = model.settings  # imgsz: the ONNX model's
    loop = asyncio.new_event_loop()

    def in_process(batch: list[str]) -> None:
        loop.run_until_complete(model.predict({"instances": batch}))

    paths = {"in-process ONNX": in_process}
    if not args.no_ultralytics and (args.model_dir / "best.pt").is_file():
        old = UltralyticsDetector("bench-ultralytics", model_dir=args.model_dir, settings=settings)
        old.load()

        def in_process_ultralytics(batch: list[str]) -> None:
            loop.run_until_complete(old.predict({"instances": batch}))

        paths["in-process ultralytics"] = in_process_ultralytics

    server = Server(args.model_dir, settings, work / "server.log")
    session = requests.Session()
    v1_url = f"{server.url}/v1/models/{settings.model_name}:predict"
    v2_url = f"{server.url}/v2/models/{settings.model_name}/infer"

    def http_v1(batch: list[str]) -> None:
        session.post(v1_url, json={"instances": batch}, timeout=60).raise_for_status()

    def http_v2(batch: list[str]) -> None:
        body = {"inputs": [{"name": "image", "shape": [len(batch)], "datatype": "BYTES", "data": batch}]}
        session.post(v2_url, json=body, timeout=60).raise_for_status()

    paths |= {"HTTP V1": http_v1, "HTTP V2": http_v2}
    results = {}
    try:
        for name, call in paths.items():
            run_timed(call, batches[: args.warmup])
            results[name] = run_timed(call, batches)
    finally:
        server.stop()
        loop.close()

    base_lat, base_total = results["in-process ONNX"]
    base_p50 = percentile(base_lat, 0.5)
    model_label = "tiny YOLOv8n" if args.model_dir.is_relative_to(work) else args.model_dir
    print(f"\n{len(images)} images ({model_label}; imgsz {settings.imgsz}; {args.batch} image(s) per request; "
          f"{os.cpu_count()} CPUs)")
    print(f"{'path':<24}{'p50 ms':>9}{'p95 ms':>9}{'images/s':>10}{'p50 ratio':>11}{'img/s ratio':>13}")
    for name, (lat, total) in results.items():
        rate = len(images) / total
        print(f"{name:<24}{percentile(lat, 0.5):>9.1f}{percentile(lat, 0.95):>9.1f}{rate:>10.1f}"
              f"{percentile(lat, 0.5) / base_p50:>11.2f}{rate / (len(images) / base_total):>13.2f}")
    print("ratios: path / in-process ONNX (p50 latency: >1 is slower; images/s: <1 is slower)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
