"""Epochs lost when a training pod is killed: the training Job with resume (training_job/resume.py) against a restart.

Each round starts ``python -m training_job`` for one TrainingRun identity, waits until the run has logged a chosen
epoch, kills the process with SIGKILL (a drain, a preemption, an OOM kill), and starts it again. Epochs lost = the
epochs trained before the kill that the retried pod trains again: with resume, those after the last checkpoint
(goal: at most the one in progress); before resume existed, a retried pod started from epoch 0, so it lost every
epoch trained (the baseline column, computed from the same kill). Not a test:

    .venv/bin/python bench/bench_resume.py --epochs 10 --kills 3,5,8
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--imgsz", type=int, default=64)
    parser.add_argument("--kills", default="3,5,8", help="kill once the run logged this epoch (one round each)")
    args = parser.parse_args(argv)

    from mlflow.tracking import MlflowClient

    from visionops.data.synth import generate
    from visionops.local_mlflow import free_port, start_mlflow_server

    work = Path(tempfile.mkdtemp(prefix="bench-resume-"))
    dataset = generate(work / "vision", products=["Casting"])
    server, uri = start_mlflow_server(work / "mlflow", port=free_port())
    client = MlflowClient(uri)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    rows = []
    try:
        for kill_at in (int(k) for k in args.kills.split(",")):
            uid, experiment = uuid.uuid4().hex, f"bench-{uuid.uuid4().hex[:6]}"
            round_dir = work / uid[:8]
            command = [sys.executable, "-m", "training_job", "--dataset", str(dataset), "--workdir",
                       str(round_dir / "work"), "--epochs", str(args.epochs), "--imgsz", str(args.imgsz),
                       "--patience", "0", "--no-int8", "--tracking-uri", uri, "--experiment", experiment,
                       "--uid", uid, "--name", "bench", "--result-file", str(round_dir / "result.json")]
            round_dir.mkdir()
            first = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
            logged = 0
            while logged < kill_at:
                if first.poll() is not None:
                    sys.exit(f"the first pod ended before epoch {kill_at}")
                exp = client.get_experiment_by_name(experiment)
                runs = client.search_runs([exp.experiment_id]) if exp else []
                if runs:
                    logged = max((m.step for m in client.get_metric_history(runs[0].info.run_id, "epoch")),
                                 default=0)
                time.sleep(0.2)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
            started = time.perf_counter()
            subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)
            retried_s = time.perf_counter() - started
            result = json.loads((round_dir / "result.json").read_text())
            resumed = result.get("resumed_from_epoch") or 0
            rows.append((logged, resumed, logged - resumed, logged, retried_s, result["epochs_completed"]))
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"\n{args.epochs} epochs at {args.imgsz} px per run, killed with SIGKILL once the run logged the epoch "
          "shown\n")
    print(f"{'killed after epoch':>18} {'resumed from':>12} {'epochs lost':>11} {'lost by a restart':>17} "
          f"{'retried pod s':>13} {'epochs done':>11}")
    for logged, resumed, lost, restart, seconds, done in rows:
        print(f"{logged:>18} {resumed:>12} {lost:>11} {restart:>17} {seconds:>13.1f} {done:>11}")
    print(f"\nwork dir {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
