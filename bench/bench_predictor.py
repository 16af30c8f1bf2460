"""Predictor benchmark: the same N images through every runtime, in-process and through KServe over HTTP.

Baseline, measured in the same run: in-process ultralytics, ``YOLO(best.pt).predict`` behind the same parsing and
responses, as the predictor did before ONNX (PyTorch; needs the dev venv; skipped without ``best.pt``). For each
runtime (``--runtimes``, default every one the predictor has):
- forward pass alone: the runtime's ``run`` on one preprocessed image (no decoding, no NMS), against ONNX Runtime's;
- in-process: ``await DefectDetector.predict({"instances": [...]})`` (parse + base64 + decode + model + NMS);
- HTTP V1 / V2: ``python -m predictor --runtime <runtime>`` (the real KServe ModelServer) on loopback, one client,
  one request at a time: V1 against the ultralytics baseline and against in-process on the same runtime;
- HTTP V1 with ``--clients`` (4) concurrent clients, each sending every image: images/s against one client's,
  measured right before;
- HTTP V1 with a CPU-bound process beside the server (one busy Python process): p50 against quiet.
With ``--int8`` one more variant, ``openvino-int8``: the model quantized the way the training Job does it
(training_job.quantize: NNCF, calibrated on the synthetic train split) served by OpenVINO from a copy of the model
dir that carries it, through every path above; and the val map50 of the FP32 ONNX export and of the INT8 model
(the training Job's INT8 gate, same validator), printed with their difference.
The one-client paths take turns request by request (every path sees image i before any sees image i + 1), so a
load that comes and goes on a shared machine falls on each path alike; then the concurrency and CPU-bound rounds.
Each row prints its ratio, what it is against and the target (issue 16), and the CPU time per request of the process
doing the work (steadier than wall time on a shared machine); all from one run.

    .venv/bin/python bench/bench_predictor.py [--images 64] [--batch 1] [--imgsz 640] [--model-dir DIR] [--int8]

Without --model-dir it generates a synthetic VISION dataset, trains a tiny YOLOv8n (1 epoch, 64 px, a
few seconds) and exports it to ONNX at --imgsz (default 64; 640 costs what the real model costs per
image); the images are the dataset's own (160 px, PNG/JPEG). A --model-dir is served as it is (its
best.onnx fixes the input size).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import requests
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from fixtures.models import train_tiny_model_dir  # noqa: E402
from fixtures.predictor_process import Predictor, export_onnx_model_dir  # noqa: E402

from predictor.artifacts import int8_model  # noqa: E402
from predictor.detections import image_prediction  # noqa: E402
from predictor.model import DefectDetector  # noqa: E402
from predictor.onnx_yolo import YoloOnnx, preprocess  # noqa: E402
from predictor.runtimes import ONNXRUNTIME, OPENVINO, RUNTIMES, cpu_budget  # noqa: E402
from predictor.settings import ServingSettings  # noqa: E402
from visionops.contract import INT8_FILES  # noqa: E402
from visionops.data.prepare import prepare  # noqa: E402
from visionops.data.synth import generate  # noqa: E402


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


class Server(Predictor):
    """``python -m predictor`` on a free loopback port (the tests' :class:`Predictor`), ready or the bench stops."""

    def __init__(self, model_dir: Path, settings: ServingSettings, log: Path):
        super().__init__(["--model-dir", str(model_dir), "--imgsz", str(settings.imgsz), "--confidence",
                          str(settings.confidence), "--max-images-per-request", str(settings.max_images_per_request),
                          "--runtime", settings.runtime, "--enable_latency_logging", "false"], log)
        try:
            self.wait_ready()
        except RuntimeError as exc:
            self.stop()
            raise SystemExit(str(exc)) from None

    def cpu_seconds(self) -> float:
        """CPU time the server process's threads have run so far (Linux schedstat: nanoseconds, unlike the 10 ms
        ticks of cpu_times)."""
        total = 0
        for stat in Path(f"/proc/{self.proc.pid}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                total += int(stat.read_text().split()[0])
        return total / 1e9


BASELINE, FORWARD, IN_PROCESS, HTTP_V1, HTTP_V2 = (
    "in-process ultralytics", "forward pass alone", "in-process", "HTTP V1", "HTTP V2")


@dataclass(frozen=True)
class Row:
    """One line of the table: a path on a runtime, its numbers, and its ratio to what it is compared with."""

    path: str
    runtime: str
    p50: float | None = None
    p95: float | None = None
    cpu: float | None = None  # CPU ms per request (p50) of the process doing the work
    rate: float | None = None
    ratio: float | None = None
    against: str = ""
    target: str = ""


Timings = tuple[list[float], list[float]]  # wall ms and CPU ms of each request


def latency_row(path: str, runtime: str, timings: Timings, batch: int) -> Row:
    """p50, p95, CPU ms and images/s (``batch`` images per request, one request at a time) of one path."""
    wall, cpu = timings
    return Row(path, runtime, percentile(wall, 0.5), percentile(wall, 0.95), percentile(cpu, 0.5),
               1000 * batch * len(wall) / sum(wall))


def take_turns(paths: dict[tuple[str, str], Callable[[list[str]], None]], clocks: dict[tuple[str, str], Callable],
               batches: list[list[str]], warmup: int) -> dict[tuple[str, str], Timings]:
    """Wall and CPU milliseconds (``clocks[key]()``: CPU seconds of the process that does the work) of each path
    on each batch, the paths taking turns batch by batch (after ``warmup`` untimed batches each)."""
    timings: dict[tuple[str, str], Timings] = {key: ([], []) for key in paths}
    for i, batch in enumerate(batches[:warmup] + batches):
        for key, call in paths.items():
            cpu, started = clocks[key](), time.perf_counter()
            call(batch)
            if i >= warmup:
                timings[key][0].append((time.perf_counter() - started) * 1000)
                timings[key][1].append((clocks[key]() - cpu) * 1000)
    return timings


def concurrent_clients(url: str, bodies: list[dict], clients: int) -> tuple[float, int]:
    """``clients`` threads, each with its own connection, each posting every body in turn: (wall s, errors)."""

    def client(_: int) -> int:
        errors = 0
        with requests.Session() as session:
            for body in bodies:
                try:
                    errors += not session.post(url, json=body, timeout=120).ok
                except requests.RequestException:
                    errors += 1
        return errors

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        errors = sum(pool.map(client, range(clients)))
    return time.perf_counter() - started, errors


@contextlib.contextmanager
def cpu_hog() -> Iterator[None]:
    """One CPU-bound process beside whatever runs meanwhile (a busy Python loop)."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        proc.kill()
        proc.wait()


def forward_pass(detector: YoloOnnx, image: bytes) -> Callable[[list[str]], None]:
    """A path running only ``detector``'s model on one preprocessed image (whatever batch it is given)."""
    batch, _ = preprocess(Image.open(io.BytesIO(image)).convert("RGB"), detector.input_size)
    return lambda _: detector.run(batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64, help="images sent through each path")
    parser.add_argument("--batch", type=int, default=1, help="images per request")
    parser.add_argument("--model-dir", type=Path, help="serve this model dir instead of training a tiny one")
    parser.add_argument("--imgsz", type=int, default=64, help="ONNX export size of the tiny model (px)")
    parser.add_argument("--no-ultralytics", action="store_true", help="skip the in-process ultralytics baseline")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests per path first")
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES), help="runtimes to run")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients of the concurrency row")
    parser.add_argument("--int8", action="store_true", help="also the INT8 model on OpenVINO, and its accuracy delta")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-predictor-"))
    try:
        return bench(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def in_workdir(prefix: str, run: Callable[[Path], int]) -> int:
    """``run(folder)`` in a new temporary folder, removed afterwards (the benches' scratch space)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        return run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def tiny_vision_model(work: Path, model_dir: Path | None) -> tuple[Path, Path]:
    """A synthetic VISION tree under ``work`` and ``model_dir``, or a tiny YOLOv8n trained on it (1 epoch, 64 px)."""
    vision = generate(work / "vision")
    if model_dir is None:
        print("training a tiny YOLOv8n (1 epoch, 64 px)...", flush=True)
        model_dir = train_tiny_model_dir(prepare(vision, work / "dataset"), work / "train")
    return vision, model_dir


def bench(args: argparse.Namespace, work: Path) -> int:
    vision = generate(work / "vision")
    dataset = prepare(vision, work / "dataset")
    if args.model_dir is None:
        print(f"training a tiny YOLOv8n (1 epoch, 64 px), ONNX export at {args.imgsz} px...", flush=True)
        trained = train_tiny_model_dir(dataset, work / "train")
        args.model_dir = export_onnx_model_dir(trained, work / "model", imgsz=args.imgsz)
    if int8_model(args.model_dir) is not None:  # the FP32 rows serve best.onnx: a copy without the INT8 model
        fp32_dir = work / "model-fp32"
        shutil.copytree(args.model_dir, fp32_dir, ignore=shutil.ignore_patterns(*INT8_FILES))
        args.model_dir = fp32_dir
    variants = {runtime: (runtime, args.model_dir) for runtime in args.runtimes}  # label -> runtime, model dir
    accuracy = None
    if args.int8:
        int8_dir, accuracy = int8_variant(args.model_dir, dataset, work)
        variants[INT8_VARIANT] = (OPENVINO, int8_dir)
    settings = ServingSettings.from_config({"imgsz": args.imgsz, "max_images_per_request": max(args.batch, 1)})
    raw_images = load_images(vision, args.images)
    images = [base64.b64encode(raw).decode() for raw in raw_images]
    batches = [images[i:i + args.batch] for i in range(0, len(images), args.batch)]
    loop = asyncio.new_event_loop()
    servers: dict[str, Server] = {}
    session = requests.Session()

    def in_process(model: DefectDetector) -> Callable[[list[str]], None]:
        return lambda batch: loop.run_until_complete(model.predict({"instances": batch}))

    def http_v1(url: str) -> Callable[[list[str]], None]:
        return lambda batch: session.post(url, json={"instances": batch}, timeout=120).raise_for_status()

    def http_v2(url: str) -> Callable[[list[str]], None]:
        def call(batch: list[str]) -> None:
            body = {"inputs": [{"name": "image", "shape": [len(batch)], "datatype": "BYTES", "data": batch}]}
            session.post(url, json=body, timeout=120).raise_for_status()
        return call

    try:
        paths: dict[tuple[str, str], Callable[[list[str]], None]] = {}
        if not args.no_ultralytics and (args.model_dir / "best.pt").is_file():
            old = UltralyticsDetector("bench-ultralytics", model_dir=args.model_dir,
                                      settings=replace(settings, runtime=ONNXRUNTIME))
            old.load()
            paths[(BASELINE, "torch")] = in_process(old)
        for label, (runtime, model_dir) in variants.items():
            runtime_settings = replace(settings, runtime=runtime)
            model = DefectDetector(f"bench-{label}", model_dir=model_dir, settings=runtime_settings)
            model.load()
            settings = model.settings  # imgsz: the ONNX model's
            servers[label] = Server(model_dir, runtime_settings, work / f"server-{label}.log")
            base = f"{servers[label].url}/v{{}}/models/{settings.model_name}"
            served = (int8_model(model_dir) if runtime == OPENVINO else None) or model_dir / "best.onnx"
            paths |= {(FORWARD, label): forward_pass(YoloOnnx(served, runtime), raw_images[0]),
                      (IN_PROCESS, label): in_process(model),
                      (HTTP_V1, label): http_v1(base.format(1) + ":predict"),
                      (HTTP_V2, label): http_v2(base.format(2) + "/infer")}
        clocks = {key: servers[key[1]].cpu_seconds if key[0] in (HTTP_V1, HTTP_V2) else time.process_time
                  for key in paths}
        print(f"{len(paths)} paths taking turns over {len(batches)} requests each...", flush=True)
        quiet = take_turns(paths, clocks, batches, args.warmup)
        concurrency = {}
        for label in variants:
            print(f"{label}: 1 client, then {args.clients} concurrent clients...", flush=True)
            url = f"{servers[label].url}/v1/models/{settings.model_name}:predict"
            _, one = run_timed(paths[(HTTP_V1, label)], batches)
            wall, errors = concurrent_clients(url, [{"instances": b} for b in batches], args.clients)
            concurrency[label] = (len(images) / one, args.clients * len(images) / wall, errors)
        print("HTTP V1 beside a CPU-bound process, runtimes taking turns...", flush=True)
        with cpu_hog():
            loaded = take_turns({key: call for key, call in paths.items() if key[0] == HTTP_V1}, clocks, batches, 1)
    finally:
        for server in servers.values():
            server.stop()
        session.close()
        loop.close()
    rows = table_rows(quiet, concurrency, loaded, list(variants), args)
    print_table(rows, args, settings, work, len(images))
    if accuracy is not None:
        fp32, int8 = accuracy
        print(f"accuracy (val map50 of the synthetic dataset at {settings.imgsz} px, the training Job's INT8 gate): "
              f"FP32 ONNX {fp32:.3f}, INT8 {int8:.3f}, delta {int8 - fp32:+.3f}")
    return 0


INT8_VARIANT = "openvino-int8"


def int8_variant(model_dir: Path, dataset: Any, work: Path) -> tuple[Path, tuple[float, float]]:
    """A copy of ``model_dir`` carrying the INT8 model (quantized at the ONNX model's input size), and the val
    map50 of FP32 and INT8."""
    from training_job.quantize import add_to_model_dir, export_int8, val_map50

    imgsz = YoloOnnx(model_dir / "best.onnx", ONNXRUNTIME).input_size[0]
    print(f"quantizing to INT8 at {imgsz} px (NNCF, calibrated on the synthetic train split)...", flush=True)
    export = work / "int8-export"
    export.mkdir()
    shutil.copyfile(model_dir / "best.pt", export / "best.pt")
    xml = export_int8(export / "best.pt", dataset.dataset_yaml, imgsz)
    out = work / "model-int8"
    shutil.copytree(model_dir, out)
    add_to_model_dir(xml, out)
    fp32 = val_map50(model_dir / "best.onnx", dataset.dataset_yaml, imgsz, work / "val", "fp32")
    int8 = val_map50(xml.parent, dataset.dataset_yaml, imgsz, work / "val", "int8")
    return out, (fp32, int8)


def table_rows(quiet: dict[tuple[str, str], Timings], concurrency: dict[str, tuple[float, float, int]],
               loaded: dict[tuple[str, str], Timings], variants: list[str], args: argparse.Namespace) -> list[Row]:
    """The table: the baseline, then each runtime's rows with their ratios and targets."""
    stats = {key: latency_row(key[0], key[1], timings, args.batch) for key, timings in quiet.items()}
    baseline = next((row for (path, _), row in stats.items() if path == BASELINE), None)
    forward_ort = stats.get((FORWARD, ONNXRUNTIME))
    rows = [replace(baseline, against="baseline")] if baseline else []
    for runtime in variants:
        forward, in_proc = stats[(FORWARD, runtime)], stats[(IN_PROCESS, runtime)]
        v1, v2 = stats[(HTTP_V1, runtime)], stats[(HTTP_V2, runtime)]
        if forward_ort:
            forward = replace(forward, ratio=forward.p50 / forward_ort.p50, against="p50, forward pass on onnxruntime",
                              target="report")
        rows += [forward, in_proc]
        if baseline:
            rows.append(replace(v1, ratio=v1.p50 / baseline.p50, against="p50, in-process ultralytics",
                                target="<= 0.45"))
        rows += [replace(v1, ratio=v1.p50 / in_proc.p50, against=f"p50, in-process {runtime}", target="<= 1.10"),
                 replace(v2, ratio=v2.p50 / in_proc.p50, against=f"p50, in-process {runtime}")]
        one, many, errors = concurrency[runtime]
        rows.append(Row(f"HTTP V1, {args.clients} clients ({errors} errors)", runtime, rate=many, ratio=many / one,
                        against=f"images/s, 1 client ({one:.1f})", target=">= 1.00, 0 errors"))
        beside = latency_row(f"{HTTP_V1}, CPU-bound process beside", runtime, loaded[(HTTP_V1, runtime)], args.batch)
        rows.append(replace(beside, ratio=beside.p50 / v1.p50, against="p50, quiet", target="report"))
    return rows


def print_table(rows: list[Row], args: argparse.Namespace, settings: ServingSettings, work: Path, images: int) -> None:
    model_label = "tiny YOLOv8n" if args.model_dir.is_relative_to(work) else args.model_dir
    print(f"\n{images} images ({model_label}; imgsz {settings.imgsz}; {args.batch} image(s) per request; "
          f"{os.cpu_count()} CPUs, {cpu_budget()} threads per inference)")
    print(f"{'path':<40}{'runtime':<13}{'p50 ms':>8}{'p95 ms':>8}{'cpu ms':>8}{'img/s':>8}{'ratio':>8}  "
          f"{'against':<34}target")

    def number(value: float | None) -> str:
        return f"{value:>8.1f}" if value is not None else f"{'':>8}"

    for row in rows:
        ratio = f"{row.ratio:>8.2f}" if row.ratio is not None else f"{'':>8}"
        numbers = "".join(number(value) for value in (row.p50, row.p95, row.cpu, row.rate))
        print(f"{row.path:<40}{row.runtime:<13}{numbers}{ratio}  {row.against:<34}{row.target}")
    print("ratios: p50 latency ratio < 1 is faster; images/s ratio > 1 is faster. cpu ms: CPU time per request of the "
          "process doing the work (the bench for in-process paths, the server for HTTP), p50")


if __name__ == "__main__":
    sys.exit(main())
