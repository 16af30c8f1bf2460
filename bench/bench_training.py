"""Training job overhead: ``python -m training_job`` vs raw ultralytics ``train`` on the same data.

Both run as fresh subprocesses (each pays its imports) on one prepared synthetic dataset with the
same epochs, image size, batch and seed, interleaved ``--repeat`` times; the fastest run of each
configuration is shown (this machine's load is shared and bursty). The job also validates best.pt
again, exports ONNX and logs to a local MLflow server; the table shows what that costs. Not a test:

    .venv/bin/python bench/bench_training.py --epochs 3 --imgsz 128
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

RAW = """
import sys, time
from visionops import offline
offline.configure()
from ultralytics import YOLO
data, project, epochs, imgsz, batch, device = sys.argv[1:7]
YOLO("yolov8n.yaml").train(data=data, epochs=int(epochs), imgsz=int(imgsz), batch=int(batch), device=device,
                           workers=0, amp=False, plots=False, seed=0, deterministic=True, project=project,
                           name="raw", exist_ok=True, verbose=False)
"""


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd[:4])}...\n{proc.stderr[-3000:]}")
    return seconds


def epoch_seconds(results_csv: Path) -> float:
    """Mean seconds per epoch from ultralytics' results.csv (cumulative ``time`` column)."""
    rows = list(csv.DictReader(results_csv.open()))
    return float(rows[-1]["time"]) / len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--products", default="Casting,PCB_1,Screw")
    parser.add_argument("--train-images", type=int, default=20, help="synthetic train images per product")
    parser.add_argument("--repeat", type=int, default=2, help="runs per configuration; the fastest is shown")
    args = parser.parse_args(argv)

    from visionops.data.prepare import prepare
    from visionops.data.synth import generate
    from visionops.local_mlflow import start_mlflow_server

    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    products = args.products.split(",")
    raw_root = generate(work / "vision", products=products, train_images=args.train_images)
    t0 = time.perf_counter()
    data = prepare(raw_root, work / "prepared")
    prepare_s = time.perf_counter() - t0
    server, uri = start_mlflow_server(work / "mlflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env["PYTHONPATH"] = str(REPO)
    job_args = ["--epochs", str(args.epochs), "--imgsz", str(args.imgsz), "--batch", str(args.batch),
                "--device", args.device, "--tracking-uri", uri, "--experiment", "bench"]
    commands = {
        "raw": lambda i: [sys.executable, "-c", RAW, str(data.dataset_yaml), str(work / f"runs{i}"),
                          str(args.epochs), str(args.imgsz), str(args.batch), args.device],
        "job": lambda i: [sys.executable, "-m", "training_job", "--dataset", str(data.root), "--workdir",
                          str(work / f"job{i}"), "--result-file", str(work / f"job{i}.json"), *job_args],
        "full": lambda i: [sys.executable, "-m", "training_job", "--dataset", str(raw_root), "--workdir",
                           str(work / f"full{i}"), "--result-file", str(work / f"full{i}.json"), *job_args],
    }
    walls: dict[str, list[float]] = {name: [] for name in commands}
    try:
        for i in range(args.repeat):  # interleaved, so a burst of load hits every configuration alike
            for name, command in commands.items():
                walls[name].append(timed(command(i), env))
    finally:
        server.terminate()
        server.wait(timeout=30)
    best = {name: min(range(args.repeat), key=lambda i, n=name: walls[n][i]) for name in walls}
    raw_s, job_s, full_s = (walls[n][best[n]] for n in ("raw", "job", "full"))
    result = json.loads((work / f"job{best['job']}.json").read_text())
    raw_epoch = epoch_seconds(work / f"runs{best['raw']}" / "raw" / "results.csv")
    job_epoch = epoch_seconds(work / f"job{best['job']}" / "runs" / "train" / "results.csv")

    images = data.data_card["totals"]["images"]
    print(f"\n{images} images ({args.products}), {args.epochs} epochs, imgsz {args.imgsz}, batch {args.batch}, "
          f"device {args.device}; prepare() alone: {prepare_s:.2f} s; fastest of {args.repeat} runs each\n")
    rows = [
        ("raw ultralytics train", raw_s, raw_epoch),
        ("training job, prepared data", job_s, job_epoch),
        ("training job, VISION tree (+prepare)", full_s, None),
    ]
    print(f"{'what':<38} {'wall s':>8} {'s/epoch':>8} {'vs raw':>7}")
    for label, seconds, per_epoch in rows:
        shown = f"{per_epoch:8.2f}" if per_epoch is not None else f"{'':>8}"
        print(f"{label:<38} {seconds:8.2f} {shown} {seconds / raw_s:6.2f}x")
    print(f"job phases (s): {result['phase_seconds']}")
    print(f"\njob overhead on prepared data: {job_s - raw_s:+.2f} s ({job_s / raw_s:.2f}x); "
          f"job's own duration_s {result['duration_s']:.2f} s; work dir {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
