"""The training recipe on the demo's data: ultralytics' nominal batch of 64 against ``training_job.recipe``.

Each configuration trains YOLOv8n from scratch in a fresh subprocess on one synthetic dataset (the demo's: 3
products, 20 train images each), then validates its best weights on the val split. Accuracy does not depend on
the machine's load, the seconds do (the fastest of ``--repeat`` runs is shown). Not a test:

    .venv/bin/python bench/bench_recipe.py                     # the demo's 30 epochs at 128 px
    .venv/bin/python bench/bench_recipe.py --epochs 20,30,40 --imgsz 128
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TRAIN = """
import json, sys
from visionops import offline
offline.configure()
from ultralytics import YOLO
data, project, epochs, imgsz, batch, nbs = sys.argv[1:7]
model = YOLO("yolov8n.yaml")
model.train(data=data, epochs=int(epochs), imgsz=int(imgsz), batch=int(batch), nbs=int(nbs), device="cpu", workers=0,
            amp=False, plots=False, seed=0, deterministic=True, project=project, name="t", exist_ok=True,
            verbose=False)
m = YOLO(str(model.trainer.best)).val(data=data, imgsz=int(imgsz), batch=int(batch), device="cpu", workers=0,
                                      plots=False, verbose=False, project=project, name="v", exist_ok=True)
print("RESULT " + json.dumps({"map50": m.box.map50, "map50_95": m.box.map, "recall": m.box.mr}))
"""


def train(data: Path, project: Path, epochs: int, imgsz: int, batch: int, nbs: int) -> tuple[dict, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env["PYTHONPATH"] = str(REPO)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", TRAIN, str(data), str(project), str(epochs), str(imgsz), str(batch),
                           str(nbs)], cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"training failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT ")), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", default="30", help="comma-separated epoch counts (default %(default)s)")
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration; the fastest is shown")
    args = parser.parse_args(argv)

    from training_job.recipe import ULTRALYTICS_NOMINAL_BATCH, nominal_batch
    from visionops.data.prepare import prepare
    from visionops.data.synth import generate

    work = Path(tempfile.mkdtemp(prefix="bench-recipe-"))
    data = prepare(generate(work / "vision", seed=0), work / "prepared")
    images = data.data_card["splits"]["train"]["images"]
    ours = nominal_batch(images, args.batch)
    val = data.data_card["splits"]["val"]["images"]
    print(f"\n{images} train images, {val} val images, {len(data.names)} classes; "
          f"imgsz {args.imgsz}, batch {args.batch}, CPU; fastest of {args.repeat} run(s) each\n")
    print(f"{'recipe':<34} {'epochs':>6} {'steps':>6} {'map50':>6} {'map50-95':>8} {'recall':>6} {'train s':>8}")
    batches = -(-images // args.batch)
    for epochs in (int(e) for e in args.epochs.split(",")):
        for label, nbs in ((f"ultralytics nbs {ULTRALYTICS_NOMINAL_BATCH}", ULTRALYTICS_NOMINAL_BATCH),
                           (f"recipe.nominal_batch -> nbs {ours}", ours)):
            runs = [train(data.dataset_yaml, work / f"{nbs}-{epochs}-{i}", epochs, args.imgsz, args.batch, nbs)
                    for i in range(args.repeat)]
            metrics, seconds = runs[0][0], min(s for _, s in runs)
            steps = epochs * max(1, batches // max(1, round(nbs / args.batch)))
            print(f"{label:<34} {epochs:>6} {steps:>6} {metrics['map50']:6.3f} {metrics['map50_95']:8.3f} "
                  f"{metrics['recall']:6.3f} {seconds:8.1f}", flush=True)
    print(f"\nwork dir {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
