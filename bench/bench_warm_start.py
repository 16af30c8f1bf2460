"""Warm start vs from scratch, same data, same seed, same epoch budget (issue: better models).

A first model trains N epochs from scratch and is registered; then, on the same data with the same seed,
a second run trains N more epochs from scratch and a third starts from that registered version
(``--init-from models:/<name>/1``). Prints mAP50 / mAP50-95 of each.

    .venv/bin/python bench/bench_warm_start.py [--epochs 10] [--imgsz 128] [--workdir /tmp/bench-warm]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


def train(workdir: Path, dataset: Path, uri: str, name: str, epochs: int, imgsz: int,
          init_from: str | None = None) -> dict:
    result = workdir / f"{name}.json"
    argv = [sys.executable, "-m", "training_job", "--dataset", str(dataset), "--workdir", str(workdir / name),
            "--epochs", str(epochs), "--imgsz", str(imgsz), "--tracking-uri", uri, "--experiment", "bench-warm",
            "--name", name, "--result-file", str(result)]
    started = time.monotonic()
    subprocess.run(argv + (["--init-from", init_from] if init_from else []), check=True,
                   stderr=subprocess.DEVNULL)
    out = json.loads(result.read_text())
    out["wall_s"] = time.monotonic() - started
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench-warm"))
    args = parser.parse_args(argv)
    from mlflow.tracking import MlflowClient

    from visionops import registry
    from visionops.data.synth import generate
    from visionops.local_mlflow import start_mlflow_server

    shutil.rmtree(args.workdir, ignore_errors=True)
    dataset = generate(args.workdir / "vision", seed=0)
    server, uri = start_mlflow_server(args.workdir / "mlflow")
    try:
        first = train(args.workdir, dataset, uri, "first", args.epochs, args.imgsz)
        client = MlflowClient(uri)
        version = registry.register_version(client, "bench-warm", first["run_id"]).version
        scratch = train(args.workdir, dataset, uri, "scratch", args.epochs, args.imgsz)
        warm = train(args.workdir, dataset, uri, "warm", args.epochs, args.imgsz, f"models:/bench-warm/{version}")
    finally:
        server.terminate()
    print(f"\n{args.epochs} epochs each at {args.imgsz} px, seed 0, synthetic VISION (3 products)\n")
    print("| run | start | mAP50 | mAP50-95 | wall s |\n|---|---|---|---|---|")
    for label, start, res in (("first", "scratch", first), ("second", "scratch", scratch),
                              ("second", f"models:/bench-warm/{version} (first)", warm)):
        m = res["metrics"]
        print(f"| {label} | {start} | {m['map50']:.3f} | {m['map50_95']:.3f} | {res['wall_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
