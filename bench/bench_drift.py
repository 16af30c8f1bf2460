"""Drift check cost with and without the model features, on the same images in the same run.

``python -m drift_job`` runs as a fresh subprocess (each run pays its imports) on N reference images
(the synthetic train split) against N current images (its inference split), at the demo's size (160 px
synthetic images, a YOLOv8n trained at 128 px): (a) the four image statistics only, the baseline;
(b) plus the model features (backbone embedding, confidence, detections, class mix) of a tiny YOLOv8n
trained here for one epoch (inference costs the same whatever the weights learned). The table shows the
wall and CPU time (user + system: steadier than wall time on a shared machine), the phases from the
job's own log lines and the peak RSS (``wait4``'s ``ru_maxrss``) of each; configurations are interleaved
``--repeat`` times and the fastest run is shown. Not a test:

    .venv/bin/python bench/bench_drift.py [--images 1000] [--imgsz 128] [--repeat 1]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from fixtures.models import train_tiny_model_dir  # noqa: E402

from visionops.data.prepare import prepare  # noqa: E402
from visionops.data.synth import DEFAULT_IMGSZ, DEFAULT_PRODUCTS, generate  # noqa: E402

PHASES = {"image": r"image statistics done in ([\d.]+) s", "model": r"model features done in ([\d.]+) s",
          "report": r"Evidently report done in ([\d.]+) s"}


def run(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run ``cmd``; return its wall and CPU seconds, peak RSS (MiB) and the phase seconds it logged."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        err.seek(0)
        log = err.read().decode(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"drift job failed ({proc.returncode}):\n{log[-3000:]}")
    out = {"wall": seconds, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024}
    for phase, pattern in PHASES.items():
        out[phase] = sum(float(v) for v in re.findall(pattern, log))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="reference images and current images (each)")
    parser.add_argument("--imgsz", type=int, default=128, help="training (= inference) size of the model")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration; the fastest is shown")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-drift-"))
    try:
        per_product = math.ceil(args.images / len(DEFAULT_PRODUCTS))
        count = per_product * len(DEFAULT_PRODUCTS)
        t0 = time.perf_counter()
        vision = generate(work / "vision", train_images=per_product, val_images=1, inference_images=per_product)
        print(f"synthetic data: {count} + {count} images of {DEFAULT_IMGSZ} px in {time.perf_counter() - t0:.0f} s")
        small = prepare(generate(work / "small"), work / "prepared")
        model = train_tiny_model_dir(small, work / "model", imgsz=args.imgsz) / "best.pt"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        base = [sys.executable, "-m", "drift_job", "--reference", str(vision), "--reference-split", "train",
                "--current", str(work / "current"), "--tracking-uri", ""]
        (work / "current").mkdir()
        for image in sorted(vision.glob("*/inference/*.*")):
            if image.suffix != ".json":
                os.link(image, work / "current" / f"{image.parent.parent.name}_{image.name}")
        configs = {"image statistics": [], "+ model features": ["--model-uri", str(model)]}
        best: dict[str, dict[str, float]] = {}
        for i in range(args.repeat):
            for name, extra in configs.items():
                result = run([*base, *extra, "--output-dir", str(work / f"out-{i}-{len(extra)}")], env)
                if name not in best or result["wall"] < best[name]["wall"]:
                    best[name] = result

        print(f"\n{count} current vs {count} reference images ({DEFAULT_IMGSZ} px), "
              f"model at {args.imgsz} px, CPU, fastest of {args.repeat}")
        print(f"{'configuration':<20}{'wall s':>9}{'CPU s':>8}{'image stats s':>15}{'model s':>10}{'report s':>10}"
              f"{'peak RSS MiB':>14}{'x wall':>8}{'x CPU':>7}")
        baseline = best["image statistics"]
        for name, r in best.items():
            print(f"{name:<20}{r['wall']:>9.1f}{r['cpu']:>8.1f}{r['image']:>15.1f}{r['model']:>10.1f}{r['report']:>10.1f}"
                  f"{r['rss']:>14.0f}{r['wall'] / baseline['wall']:>8.2f}{r['cpu'] / baseline['cpu']:>7.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
