"""Log every epoch to MLflow while ultralytics trains (the operator reads progress from there); on a terminal
also an epoch bar (epoch k/N, elapsed, mAP50 of the last epoch) below the per-epoch lines."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient
from tqdm import tqdm

from training_job.metrics import epoch_metrics
from visionops.contract import EPOCH_METRIC, MAP50, MAP50_95, PROGRESS_TAG
from visionops.progress import meter

EPOCH_BAR_FORMAT = "{desc} |{bar:20}| epoch {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


class EpochLogger:
    """Ultralytics callbacks that log per-epoch metrics with ``step = epoch number`` (1-based).

    ``on_fit_epoch_end`` fires once per epoch and once more for the trainer's own final
    validation of ``best.pt``; that extra call is skipped (the job validates ``best.pt`` itself).
    ``tty`` forces whether the epoch bar is drawn (default: when stderr is a terminal). ``logged_through``: the
    epochs (1-based) the run has metrics for already (a resumed run, training_job.resume): not logged again.
    """

    def __init__(
        self, client: MlflowClient, run_id: str, planned_epochs: int, say: Callable[[str], None],
        tty: bool | None = None, logged_through: int = 0,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self.planned_epochs = planned_epochs
        self.say = say
        self.completed = 0
        self.logged_through = logged_through
        self.epoch_seconds: list[float] = []
        self._train_epoch: int | None = None
        self._started = time.monotonic()
        self._tty = tty
        self._bar: tqdm | None = None

    def register(self, model: Any) -> None:
        """Attach to an ultralytics ``YOLO`` model."""
        model.add_callback("on_train_epoch_start", self.on_train_epoch_start)
        model.add_callback("on_train_epoch_end", self.on_train_epoch_end)
        model.add_callback("on_fit_epoch_end", self.on_fit_epoch_end)
        model.add_callback("on_train_end", self.on_train_end)

    def on_train_epoch_start(self, trainer: Any) -> None:
        self._started = time.monotonic()
        if self._bar is None:  # elapsed counts from the first epoch
            self._bar = meter(self.planned_epochs, "training", "epoch", tty=self._tty, leave=True,
                              bar_format=EPOCH_BAR_FORMAT)

    def on_train_end(self, trainer: Any) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_train_epoch_end(self, trainer: Any) -> None:
        self._train_epoch = trainer.epoch

    def on_fit_epoch_end(self, trainer: Any) -> None:
        if trainer.epoch != self._train_epoch:
            return  # the trainer's final validation of best.pt, not an epoch
        step = trainer.epoch + 1
        losses = trainer.label_loss_items(trainer.tloss, prefix="train") if trainer.tloss is not None else {}
        values = epoch_metrics(trainer.metrics or {}, losses, getattr(trainer, "lr", {}) or {})
        values[EPOCH_METRIC] = float(step)
        now = int(time.time() * 1000)
        if step > self.logged_through:  # a resumed run has this epoch's metrics from the pod before: once only
            self.client.log_batch(
                self.run_id,
                metrics=[Metric(key, value, now, step) for key, value in values.items()],
                tags=[RunTag(PROGRESS_TAG, f"{step}/{self.planned_epochs}")],
            )
        seconds = time.monotonic() - self._started
        self.epoch_seconds.append(seconds)
        self.completed = step
        shown = " ".join(f"{k}={values[k]:.3f}" for k in (MAP50, MAP50_95, "train/box_loss") if k in values)
        self._show(f"epoch {step}/{self.planned_epochs} {shown} ({seconds:.1f} s)", values.get(MAP50))

    def _show(self, line: str, map50: float | None) -> None:
        """``line`` through ``say``; on a terminal above the epoch bar, which then advances."""
        if self._bar is None or self._bar.disable:
            self.say(line)
            return
        with tqdm.external_write_mode(file=sys.stderr):
            self.say(line)
        self._bar.set_postfix_str("" if map50 is None else f"mAP50 {map50:.3f}", refresh=False)
        self._bar.update()
