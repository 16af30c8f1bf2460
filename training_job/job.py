"""The training Job: prepare data, train YOLOv8n offline, log everything to one MLflow run."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from training_job.metrics import SUMMARY_KEYS, per_class_ap50
from visionops import lineage, offline
from visionops.contract import (
    CLASS_MAP_FILE,
    DATA_CARD_FILE,
    EPOCHS_COMPLETED_TAG,
    EXPORT_FP32_MAP50,
    EXPORT_INT8_MAP50,
    IDENTITY_TAGS,
    KIND_TAG,
    MAP50,
    MODEL_ARTIFACT_PATH,
    ONNX_FILE,
    PER_CLASS_ARTIFACT,
    PLOTS_ARTIFACT_DIR,
    RESUMED_FROM_TAG,
    SERVING_PRECISION_TAG,
    SERVING_REASON_TAG,
    TRAINING_KIND,
    WEIGHTS_FILE,
)
from visionops.registry import class_metric_key

Say = Callable[[str], None]
PLOT_SUFFIXES = (".png", ".jpg")


class JobError(RuntimeError):
    """A failure with a message meant for the user (no traceback needed)."""


@dataclass
class TrainOptions:
    """Everything the job needs; the CLI fills it from flags, env and ``configs/training.yaml``."""

    dataset: Path
    workdir: Path
    tracking_uri: str
    experiment: str
    model: str
    epochs: int
    batch: int
    imgsz: int
    lr0: float
    patience: int
    seed: int
    device: str
    workers: int
    products: list[str] | None = None
    init_from: str | None = None  # registered version or weights file to start from (training_job.warm_start)
    int8: bool = True  # quantize the export, serve INT8 past its accuracy gate (training_job.quantize)
    int8_max_drop: float = 0.02
    identity: dict[str, str] = field(default_factory=dict)  # namespace / name / uid of the TrainingRun

    def validate(self) -> None:
        for name in ("epochs", "batch", "imgsz"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.imgsz % 32:
            raise ValueError(f"imgsz must be a multiple of 32 (the model stride), got {self.imgsz}")
        if not 0 < self.lr0 < 1:
            raise ValueError(f"lr0 must be in (0, 1), got {self.lr0}")
        if not 0 <= self.int8_max_drop <= 1:
            raise ValueError(f"int8_max_drop must be in [0, 1], got {self.int8_max_drop}")
        if self.patience < 0 or self.workers < 0:
            raise ValueError(f"patience and workers must be >= 0, got {self.patience} and {self.workers}")
        if not self.model.endswith(".yaml"):
            raise ValueError(f"model must be an architecture .yaml (--init-from sets starting weights), "
                             f"got {self.model!r}")


@dataclass
class JobState:
    """What a failure handler needs: the MLflow run once it exists."""

    client: MlflowClient | None = None
    run_id: str | None = None
    started: float = field(default_factory=time.monotonic)


def experiment_id(client: MlflowClient, name: str) -> str:
    """Id of experiment ``name``, created when missing (safe against a concurrent creator)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage != "active":
            raise JobError(f"MLflow experiment {name!r} is deleted; restore it or pick another --experiment")
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def prepare_dataset(opts: TrainOptions, say: Say) -> Any:
    """Convert the VISION tree into a YOLO dataset under the workdir (an already prepared one is reused)."""
    from visionops.data.prepare import PreparedDataset, is_prepared_dataset, prepare

    source = opts.dataset
    if not source.is_dir():
        raise JobError(f"dataset {source} is not a directory (expected a VISION root: <Product>/train/...)")
    if is_prepared_dataset(source):
        say(f"dataset {source} is already prepared; using it as is")
        return PreparedDataset.load(source)
    say(f"preparing {source} (products: {', '.join(opts.products) if opts.products else 'all'})")
    return prepare(source, opts.workdir / "data", opts.products, progress=say)


def train_images(data: Any) -> int:
    """How many images the prepared dataset's train split holds (its data card says)."""
    return int(data.data_card.get("splits", {}).get("train", {}).get("images") or 0)


def run_params(opts: TrainOptions, data: Any, init: Any = None) -> dict[str, str]:
    """Parameters logged on the run (strings, as MLflow stores them)."""
    from training_job.recipe import nominal_batch
    from training_job.warm_start import transfer_mode

    card = data.data_card
    params = {
        "init_from": init.source if init else None,
        "init_version": init.version if init else None,
        "init_transfer": transfer_mode(init.names, data.names) if init else None,
        "model": opts.model, "epochs": opts.epochs, "batch": opts.batch, "imgsz": opts.imgsz,
        "lr0": opts.lr0, "patience": opts.patience, "seed": opts.seed, "device": opts.device,
        "nbs": nominal_batch(train_images(data), opts.batch),
        "int8": opts.int8, "int8_max_drop": opts.int8_max_drop,
        "products": ",".join(card.get("products", opts.products or [])), "nc": len(data.names),
        "dataset": str(opts.dataset),
        "train_images": card.get("splits", {}).get("train", {}).get("images"),
        "val_images": card.get("splits", {}).get("val", {}).get("images"),
    }
    return {k: str(v)[:6000] for k, v in params.items() if v is not None}


def connect(opts: TrainOptions, state: JobState, say: Say) -> str:
    """Reach MLflow before any long work; return the experiment id (MLflow's own retries apply)."""
    say(f"connecting to MLflow at {opts.tracking_uri} (experiment {opts.experiment!r})")
    state.client = MlflowClient(tracking_uri=opts.tracking_uri)
    try:
        return experiment_id(state.client, opts.experiment)
    except MlflowException as error:
        raise JobError(f"MLflow at {opts.tracking_uri} failed: {error.message[:400]}") from error


def start_run(opts: TrainOptions, state: JobState, exp_id: str, data: Any, init: Any, say: Say) -> str:
    client = state.client
    assert client is not None
    tags = {KIND_TAG: TRAINING_KIND}
    tags.update({IDENTITY_TAGS[k]: v for k, v in opts.identity.items() if v})
    run_name = opts.identity.get("name") or f"train-{time.strftime('%Y%m%d-%H%M%S')}"
    run = client.create_run(exp_id, tags=tags, run_name=run_name)
    state.run_id = run.info.run_id
    params = run_params(opts, data, init)
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    say(f"MLflow run {run.info.run_id} started")
    return run.info.run_id


def train(opts: TrainOptions, data: Any, client: MlflowClient, run_id: str, init: Any,
          say: Say, resumed: Any = None) -> tuple[Any, Any]:
    """Train from scratch, or from ``init`` (training_job.warm_start), or continue ``resumed`` (a
    ``(Resumable, last.pt)`` pair: training_job.resume); return ``(trainer, epoch_logger)``."""
    from training_job import warm_start
    from training_job.epoch_logger import EpochLogger
    from training_job.recipe import nominal_batch
    from training_job.resume import CheckpointUploader

    if resumed is not None:
        return continue_training(opts, data, client, run_id, resumed, say)
    model, mode = warm_start.model(opts.model, init, data.names)
    logger = EpochLogger(client, run_id, opts.epochs, say)
    logger.register(model)
    CheckpointUploader(client, run_id).register(model)
    start = "from scratch" if init is None else (
        f"from {init.source}" + (f" (version {init.version})" if init.version else "")
        + (": all layers" if mode == warm_start.FULL else ": backbone, neck and box head; other classes, so the "
           "class layers start fresh"))
    nbs = nominal_batch(train_images(data), opts.batch)
    per_step = nbs // opts.batch
    steps = "an optimizer step per batch" if per_step == 1 else f"an optimizer step per {per_step} batches"
    say(f"training {opts.model} {start}: {opts.epochs} epochs, imgsz {opts.imgsz}, batch {opts.batch} ({steps}), "
        f"{len(data.names)} classes, device {opts.device}")
    try:
        model.train(
            data=str(data.dataset_yaml), epochs=opts.epochs, batch=opts.batch, nbs=nbs, imgsz=opts.imgsz,
            lr0=opts.lr0,
            patience=opts.patience, seed=opts.seed, deterministic=True, device=opts.device, workers=opts.workers,
            amp=False, plots=True, val=True, project=str(opts.workdir / "runs"), name="train", exist_ok=True,
            verbose=False,
        )
    finally:
        logger.on_train_end(None)  # a terminal's epoch bar is closed before any error line
    trainer = model.trainer
    if not Path(trainer.best).is_file():
        raise JobError(f"training produced no {trainer.best}")
    return trainer, logger


def continue_training(opts: TrainOptions, data: Any, client: MlflowClient, run_id: str, resumed: Any,
                      say: Say) -> tuple[Any, Any]:
    """ultralytics' own resume of the checkpoint (optimizer state, epoch, the run's recipe), into the same run."""
    from ultralytics import YOLO

    from training_job.epoch_logger import EpochLogger
    from training_job.resume import CheckpointUploader

    point, checkpoint = resumed
    model = YOLO(str(checkpoint))
    logger = EpochLogger(client, run_id, opts.epochs, say, logged_through=point.logged_through)
    logger.register(model)
    CheckpointUploader(client, run_id).register(model)
    say(f"continuing from epoch {point.checkpoint_epochs}/{opts.epochs} (the checkpoint of the pod before)")
    try:
        model.train(resume=str(checkpoint), data=str(data.dataset_yaml), device=opts.device, workers=opts.workers)
    finally:
        logger.on_train_end(None)
    trainer = model.trainer
    if not Path(trainer.best).is_file():
        raise JobError(f"training produced no {trainer.best}")
    return trainer, logger


def resume_point(opts: TrainOptions, client: MlflowClient, exp_id: str, say: Say) -> Any:
    """``(Resumable, last.pt)`` when this TrainingRun (``--uid``) has an unfinished run to continue, else None."""
    from training_job import resume

    uid = opts.identity.get("uid")
    found = resume.find(client, exp_id, uid) if uid else None
    if found is None:
        return None
    point, checkpoint = resume.fetch(client, found[0], found[1], opts.workdir / "resume")
    if not resume.can_continue(point, opts.epochs):
        say(f"MLflow run {point.run_id} has a checkpoint of epoch {point.checkpoint_epochs}/{opts.epochs}: nothing "
            "to continue, starting a new run")
        return None
    return point, checkpoint


def evaluate(opts: TrainOptions, data: Any, best: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Validate ``best`` on the val split; return summary metrics and AP50 by class name."""
    from ultralytics import YOLO

    m = YOLO(str(best)).val(
        data=str(data.dataset_yaml), imgsz=opts.imgsz, batch=opts.batch, device=opts.device,
        workers=opts.workers, plots=False, split="val", project=str(opts.workdir / "runs"), name="val",
        exist_ok=True, verbose=False,
    )
    summary = dict(zip(SUMMARY_KEYS, (m.box.map50, m.box.map, m.box.mp, m.box.mr), strict=True))
    per_class = per_class_ap50(list(m.box.ap50), list(m.box.ap_class_index), m.names)
    return {k: float(v) for k, v in summary.items()}, per_class


def export_onnx(opts: TrainOptions, best: Path) -> Path:
    from ultralytics import YOLO

    out = Path(YOLO(str(best)).export(format="onnx", imgsz=opts.imgsz, device="cpu", simplify=True,
                                      verbose=False))
    if not out.is_file():
        raise JobError(f"ONNX export wrote no file at {out}")
    return out


def resolve_init(opts: TrainOptions, say: Say) -> Any:
    """The starting weights of ``--init-from`` (None: from scratch); a :class:`JobError` when unusable."""
    from training_job.warm_start import WarmStartError, resolve

    if not opts.init_from:
        return None
    say(f"fetching the starting weights {opts.init_from}")
    try:
        return resolve(opts.init_from, opts.tracking_uri, opts.workdir / "init")
    except WarmStartError as error:
        raise JobError(str(error)) from error


def log_plots(client: MlflowClient, run_id: str, save_dir: Path) -> list[str]:
    """Log ultralytics' plots of the run (results curves, PR/F1/P/R curves, confusion matrices, label and batch
    previews) under ``plots/``; return their names."""
    files = sorted(p for p in save_dir.iterdir() if p.is_file() and p.suffix.lower() in PLOT_SUFFIXES)
    for path in files:
        client.log_artifact(run_id, str(path), PLOTS_ARTIFACT_DIR)
    return [p.name for p in files]


def log_dataset(opts: TrainOptions, data: Any, client: MlflowClient, run_id: str, digest: str, say: Say) -> None:
    """The dataset version: an MLflow dataset input with its digest, plus the data card and an annotated
    sample grid under ``dataset/``."""
    from visionops.data.samples import sample_grid

    products = list(data.data_card.get("products", opts.products or []))
    lineage.log_dataset_input(client, run_id, digest=digest, source=str(opts.dataset), products=products,
                              card=data.data_card)
    folder = opts.workdir / lineage.DATASET_ARTIFACT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data.data_card_path, folder / DATA_CARD_FILE)
    try:
        sample_grid(data, folder / "samples.png", split="val", seed=opts.seed)
    except ValueError as error:  # DataError: no val image to show; the card is still logged
        say(f"no sample grid: {error}")
    client.log_artifacts(run_id, str(folder), lineage.DATASET_ARTIFACT_DIR)
    say(f"dataset {lineage.dataset_name(products)} digest {digest}")


def log_analysis(opts: TrainOptions, data: Any, client: MlflowClient, run_id: str, best: Path,
                 summary: dict[str, float], per_class: dict[str, float], say: Say) -> dict[str, Any]:
    """What ``visionops analyze --log`` makes, at the end of every run: per-class AP50 in bands (JSON and a
    chart) and the hardest val images, GT against predictions, under ``analysis/``."""
    from visionops import analysis, config

    serving = config.load("serving")
    rows = analysis.class_rows(per_class)
    out = opts.workdir / analysis.ARTIFACT_DIR
    report: dict[str, Any] = {"run_id": run_id, MAP50: summary[MAP50], "bands": analysis.band_counts(rows),
                              "per_class": rows, "artifact_path": f"{analysis.ARTIFACT_DIR}/"}
    report["analysis"] = analysis.analyze_weights(
        weights=best, class_names=data.names, dataset=data.root, out=out, count=analysis.DEFAULT_HARDEST,
        imgsz=opts.imgsz, conf=float(serving["confidence"]), nms_iou=float(serving["iou"]), device=opts.device,
        say=say)
    for path in analysis.write_report(report, out):
        client.log_artifact(run_id, str(path), analysis.ARTIFACT_DIR)
    return report


def model_dir(opts: TrainOptions, data: Any, best: Path, onnx: Path, int8_xml: Path | None = None) -> Path:
    """Assemble the ``model/`` artifact folder (the layout the registry and predictor rely on), which is also an
    MLflow pyfunc model on ``best.onnx`` (``MLmodel`` and its files: :mod:`visionops.mlflow_model`), with the INT8
    IR when it passed its gate."""
    from training_job.quantize import add_to_model_dir
    from visionops import mlflow_model

    out = opts.workdir / MODEL_ARTIFACT_PATH
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shutil.copyfile(best, out / WEIGHTS_FILE)
    shutil.copyfile(onnx, out / ONNX_FILE)
    shutil.copyfile(data.class_map_path, out / CLASS_MAP_FILE)
    shutil.copyfile(data.data_card_path, out / DATA_CARD_FILE)
    if int8_xml is not None:
        add_to_model_dir(int8_xml, out)
    mlflow_model.save(out)
    return out


def serving_precision(opts: TrainOptions, data: Any, best: Path, onnx: Path, client: MlflowClient, run_id: str,
                      say: Say) -> tuple[Any, Path | None]:
    """The INT8 gate (training_job.quantize), logged on the run: both scores as metrics, the precision and the
    reason as tags. Returns the decision and the INT8 ``.xml`` to ship (None: FP32)."""
    from training_job import quantize

    if not opts.int8:
        decision, xml = quantize.disabled(), None
    else:
        decision, xml = quantize.quantize_and_gate(best, onnx, data.dataset_yaml, opts.imgsz,
                                                   opts.int8_max_drop, opts.workdir / "runs", say)
    now = int(time.time() * 1000)
    scores = {EXPORT_FP32_MAP50: decision.fp32_score, EXPORT_INT8_MAP50: decision.int8_score}
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in scores.items() if v is not None],
                     tags=[RunTag(SERVING_PRECISION_TAG, decision.precision),
                           RunTag(SERVING_REASON_TAG, decision.reason[:5000])])
    return decision, xml


class Phases:
    """Wall seconds per phase of the job (reported in the result as ``phase_seconds``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._name: str | None = None
        self._start = time.monotonic()

    def __call__(self, name: str | None) -> None:
        now = time.monotonic()
        if self._name is not None:
            self.seconds[self._name] = round(self.seconds.get(self._name, 0.0) + now - self._start, 3)
        self._name, self._start = name, now


def log_final(client: MlflowClient, run_id: str, step: int, summary: dict[str, float],
              per_class: dict[str, float], completed: int) -> None:
    """Final metrics at the last epoch's step (so they are the run's latest values) + per-class JSON."""
    now = int(time.time() * 1000)
    finals = {**summary, **{class_metric_key(name): ap for name, ap in per_class.items()}}
    client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in finals.items()],
                     tags=[RunTag(EPOCHS_COMPLETED_TAG, str(completed))])
    client.log_dict(run_id, per_class, PER_CLASS_ARTIFACT)


def run_job(opts: TrainOptions, state: JobState, say: Say) -> dict[str, Any]:
    """The whole job; returns the result dict. ``state`` tracks the run for the failure path."""
    opts.validate()
    opts.workdir.mkdir(parents=True, exist_ok=True)
    phase = Phases()
    phase("setup")
    offline.configure()
    exp_id = connect(opts, state, say)
    phase("prepare")
    data = prepare_dataset(opts, say)
    digest = lineage.dataset_digest(data.root)
    phase("setup")
    init = resolve_init(opts, say)
    client = state.client
    assert client is not None
    resumed = resume_point(opts, client, exp_id, say)
    if resumed is None:
        run_id = start_run(opts, state, exp_id, data, init, say)
        phase("upload")
        log_dataset(opts, data, client, run_id, digest, say)
    else:
        point = resumed[0]
        run_id = state.run_id = point.run_id
        client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, RESUMED_FROM_TAG, str(point.checkpoint_epochs))
        say(f"resuming MLflow run {run_id} after epoch {point.checkpoint_epochs} (a retried pod of this TrainingRun)")
    phase("train")
    trainer, logger = train(opts, data, client, run_id, init, say, resumed)
    best = Path(trainer.best)
    phase("validate")
    say(f"validating {best}")
    summary, per_class = evaluate(opts, data, best)
    phase("upload")
    log_final(client, run_id, max(logger.completed, 1), summary, per_class, logger.completed)
    log_plots(client, run_id, Path(trainer.save_dir))
    phase("analyze")
    say("analysing the val images (per-class AP50, hardest images)")
    log_analysis(opts, data, client, run_id, best, summary, per_class, say)
    phase("export")
    say("exporting ONNX")
    onnx = export_onnx(opts, best)
    phase("quantize")
    serving, int8_xml = serving_precision(opts, data, best, onnx, client, run_id, say)
    phase("upload")
    folder = model_dir(opts, data, best, onnx, int8_xml)
    say(f"uploading {folder} to the run's artifacts")
    client.log_artifacts(run_id, str(folder), MODEL_ARTIFACT_PATH)
    csv = Path(trainer.csv)
    if csv.is_file():
        client.log_artifact(run_id, str(csv))
    client.set_terminated(run_id, "FINISHED")
    run = client.get_run(run_id)
    phase(None)
    seconds = logger.epoch_seconds
    return {
        "run_id": run_id,
        "experiment_id": run.info.experiment_id,
        "artifact_uri": run.info.artifact_uri,
        "model_uri": f"runs:/{run_id}/{MODEL_ARTIFACT_PATH}",
        "metrics": summary,
        "per_class_ap50": per_class,
        "dataset_digest": digest,
        "init_from": {"source": init.source, "version": init.version} if init else None,
        "serving": serving.as_dict(),
        "resumed_from_epoch": resumed[0].checkpoint_epochs if resumed else None,
        "epochs_completed": logger.completed,
        "seconds_per_epoch": round(sum(seconds) / len(seconds), 3) if seconds else None,
        "phase_seconds": phase.seconds,
        "duration_s": round(time.monotonic() - state.started, 3),
    }


def mark_failed(state: JobState) -> None:
    """Best effort: mark the run FAILED so MLflow does not show it RUNNING forever."""
    if state.client is not None and state.run_id is not None:
        with contextlib.suppress(Exception):  # the original error is what the user must see
            state.client.set_terminated(state.run_id, "FAILED")


def summary_line(result: dict[str, Any]) -> str:
    return json.dumps({k: result[k] for k in ("run_id", "metrics", "epochs_completed", "duration_s")})
