"""A killed training pod's retry continues the run (issue 25): the same MLflow run, every epoch's metrics once, the
epochs the spec asked for. The pod is played by the training Job's process, killed with SIGKILL mid-run (what a
drain, a preemption or an OOM kill does), then started again with the same TrainingRun identity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.mlflow, pytest.mark.slow]

EPOCHS = 8


def job(tmp_path: Path, dataset: Path, mlflow_uri: str, experiment: str, uid: str) -> list[str]:
    return [sys.executable, "-m", "training_job", "--dataset", str(dataset), "--products", "Casting",
            "--workdir", str(tmp_path / "work"), "--epochs", str(EPOCHS), "--imgsz", "64", "--batch", "8",
            "--patience", "0", "--no-int8", "--tracking-uri", mlflow_uri, "--experiment", experiment,
            "--namespace", "ml", "--name", "tr-resume", "--uid", uid, "--result-file", str(tmp_path / "result.json")]


def test_a_killed_pod_is_continued_in_the_same_run(tmp_path: Path, synth_vision_root: Path, mlflow_uri: str) -> None:
    client = MlflowClient(mlflow_uri)
    experiment, uid = f"resume-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    command = job(tmp_path, synth_vision_root, mlflow_uri, experiment, uid)
    log = (tmp_path / "first.log").open("wb")
    first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ),
                             start_new_session=True)

    def run_with_checkpoint() -> tuple[str, int] | None:
        exp = client.get_experiment_by_name(experiment)
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if not runs:
            return None
        run_id = runs[0].info.run_id
        epochs = [m.step for m in client.get_metric_history(run_id, "epoch")]
        names = [a.path for a in client.list_artifacts(run_id, "checkpoint")]
        return (run_id, max(epochs)) if epochs and max(epochs) >= 3 and names else None

    deadline, found = time.monotonic() + 600, None
    while found is None and time.monotonic() < deadline:
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        found = run_with_checkpoint()
        time.sleep(0.3)
    assert found, "the first pod never got to epoch 3"
    os.killpg(first.pid, signal.SIGKILL)  # the pod dies mid-run: no cleanup at all
    first.wait(timeout=30)
    run_id, logged = found
    assert logged < EPOCHS

    second = subprocess.run(command, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert second.returncode == 0, second.stderr[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["run_id"] == run_id, "the retried pod logs into the run it left"
    assert 3 <= result["resumed_from_epoch"] < EPOCHS and result["epochs_completed"] == EPOCHS
    assert f"resuming MLflow run {run_id} after epoch {result['resumed_from_epoch']}" in second.stderr

    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert [r.info.run_id for r in runs] == [run_id], "no second run"
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["visionops.io/resumed-from-epoch"] == str(result["resumed_from_epoch"])
    for key in ("epoch", "train/box_loss", "lr/pg0"):
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), f"{key}: each epoch once, got steps {sorted(steps)}"
    # the summary metrics also carry the final validation of best.pt at the last epoch's step (as any run does)
    steps = sorted(m.step for m in client.get_metric_history(run_id, "map50"))
    assert steps == [*range(1, EPOCHS + 1), EPOCHS], steps
