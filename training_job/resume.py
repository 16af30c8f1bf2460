"""Training resumes, it does not restart: a retried pod of the same TrainingRun continues the run it left.

After each epoch (its metrics logged first) the Job uploads ultralytics' ``last.pt`` (weights, EMA, optimizer
state, epoch) to the MLflow run's ``checkpoint/`` (visionops.contract.CHECKPOINT_*): it outlives the pod, and a
TrainingRun needs no volume for it. A pod that starts for a TrainingRun (``--uid``) first looks for that
TrainingRun's unfinished run with a checkpoint (:func:`find`); when there is one it downloads the checkpoint,
continues from the epoch after it with ultralytics' own resume, and logs into the **same** run: the epochs that run
already logged are not logged again (:class:`~training_job.epoch_logger.EpochLogger`'s ``logged_through``), so
its metrics have each epoch once. The run is tagged ``visionops.io/resumed-from-epoch`` and the result says
``resumed_from_epoch``. A run whose checkpoint is its last epoch (killed while finishing) starts over: there is
no epoch left to continue.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from visionops.contract import (
    CHECKPOINT_ARTIFACT_DIR,
    CHECKPOINT_FILE,
    EPOCH_METRIC,
    KIND_TAG,
    TRAINING_KIND,
    UID_TAG,
)

UNFINISHED = ("RUNNING", "FAILED", "KILLED")  # a pod killed mid-run leaves RUNNING; a failed one FAILED


@dataclass(frozen=True)
class Resumable:
    """A TrainingRun's unfinished MLflow run and the epochs it has: the checkpoint's, and those with metrics."""

    run_id: str
    checkpoint_epochs: int  # epochs completed in checkpoint/last.pt
    logged_through: int  # the highest epoch (1-based step) whose metrics the run has


def find(client: MlflowClient, experiment_id: str, uid: str) -> tuple[str, int] | None:
    """``(run id, epochs it logged)`` of the newest unfinished training run of TrainingRun ``uid`` that holds a
    checkpoint, or None."""
    runs = client.search_runs(
        [experiment_id], f"tags.`{UID_TAG}` = '{uid}' and tags.`{KIND_TAG}` = '{TRAINING_KIND}'",
        order_by=["attributes.start_time DESC"], max_results=5)
    for run in runs:
        if run.info.status not in UNFINISHED:
            continue
        names = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, CHECKPOINT_ARTIFACT_DIR)}
        if CHECKPOINT_FILE in names:
            history = client.get_metric_history(run.info.run_id, EPOCH_METRIC)
            return run.info.run_id, max((m.step for m in history), default=0)
    return None


def checkpoint_epochs(path: Path) -> int:
    """Epochs completed in an ultralytics checkpoint (its 0-based ``epoch`` + 1; 0 when it has none)."""
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    return int(checkpoint.get("epoch", -1)) + 1


def fetch(client: MlflowClient, run_id: str, logged_through: int, dst: Path) -> tuple[Resumable, Path]:
    """Download the run's checkpoint into ``dst``; the run as :class:`Resumable` and the local ``last.pt``."""
    dst.mkdir(parents=True, exist_ok=True)
    local = Path(client.download_artifacts(run_id, f"{CHECKPOINT_ARTIFACT_DIR}/{CHECKPOINT_FILE}", str(dst)))
    return Resumable(run_id, checkpoint_epochs(local), logged_through), local


def can_continue(resumable: Resumable, planned_epochs: int) -> bool:
    """Whether epochs are left after the checkpoint (ultralytics refuses to resume a finished training)."""
    return 0 < resumable.checkpoint_epochs < planned_epochs


class CheckpointUploader:
    """An ultralytics callback: after each epoch (registered after the epoch logger, so its metrics go first),
    upload ``last.pt`` to the run's ``checkpoint/``."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client, self.run_id = client, run_id
        self._train_epoch: int | None = None

    def register(self, model: Any) -> None:
        model.add_callback("on_train_epoch_end", self.on_train_epoch_end)
        model.add_callback("on_fit_epoch_end", self.on_fit_epoch_end)

    def on_train_epoch_end(self, trainer: Any) -> None:
        self._train_epoch = trainer.epoch

    def on_fit_epoch_end(self, trainer: Any) -> None:
        last = Path(trainer.last)
        if trainer.epoch != self._train_epoch or not last.is_file():
            return  # the trainer's final validation of best.pt, or no checkpoint written this epoch
        self.client.log_artifact(self.run_id, str(last), CHECKPOINT_ARTIFACT_DIR)
