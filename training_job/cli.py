"""``visionops train`` / ``python -m training_job``: flags (env fallbacks, configs/training.yaml defaults).

Contract with the operator (:mod:`visionops.job_runner`, :class:`visionops.contract.TrainingResult`): exit
code 0 and the result JSON (``--result-file``, also on stdout) on success; on failure a non-zero exit, one
``error: <reason>`` line on stderr, ``{"error": reason}`` (and the ``run_id``, once the run started) in the
result file and the MLflow run marked FAILED. Progress lines go to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from visionops import config
from visionops.contract import (
    DATASET_ENV,
    EXPERIMENT_ENV,
    INIT_FROM_ENV,
    PRODUCTS_ENV,
    TRACKING_URI_ENV,
    WEIGHTS_FILE,
    WORKDIR_ENV,
    TrainingResult,
)
from visionops.job_runner import Attempt, JobCli, add_identity_flags, one_line


def _env(name: str, default: Any = None) -> Any:
    return os.environ.get(name) or default


def products_list(text: str | None) -> list[str] | None:
    """``"Casting, Ring"`` -> ``["Casting", "Ring"]``; empty -> ``None`` (all products)."""
    if not text:
        return None
    items = [p.strip() for p in text.split(",") if p.strip()]
    return items or None


def build_parser() -> argparse.ArgumentParser:
    d = config.load("training")
    p = argparse.ArgumentParser(
        prog="visionops train",
        description="Prepare a VISION dataset, train YOLOv8n offline (from scratch or --init-from), log to MLflow.",
    )
    p.add_argument("--dataset", default=_env(DATASET_ENV), help=f"VISION root (<Product>/train/...) (${DATASET_ENV})")
    p.add_argument("--products", default=_env(PRODUCTS_ENV),
                   help=f"comma-separated products, default all (${PRODUCTS_ENV})")
    p.add_argument("--workdir", default=_env(WORKDIR_ENV, str(Path(tempfile.gettempdir()) / "visionops-train")),
                   help=f"scratch folder for data, runs and the model (${WORKDIR_ENV}, default %(default)s)")
    p.add_argument("--epochs", type=int, default=d["epochs"], help="default %(default)s")
    p.add_argument("--batch", type=int, default=d["batch"], help="default %(default)s")
    p.add_argument("--imgsz", type=int, default=d["imgsz"], help="default %(default)s")
    p.add_argument("--lr0", type=float, default=d["lr0"], help="default %(default)s")
    p.add_argument("--patience", type=int, default=d["patience"], help="default %(default)s")
    p.add_argument("--seed", type=int, default=d["seed"], help="default %(default)s")
    p.add_argument("--device", default=str(d["device"]), help="cpu, 0, ... (default %(default)s)")
    p.add_argument("--model", default=d["model"], help="architecture yaml (default %(default)s)")
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=bool(d["int8"]),
                   help="quantize the export to INT8 and serve it when it passes its accuracy gate "
                        "(default %(default)s)")
    p.add_argument("--int8-max-drop", type=float, default=d["int8_max_drop"],
                   help="the INT8 gate: how far below the FP32 export's val mAP50 INT8's may be (default %(default)s)")
    p.add_argument("--init-from", default=_env(INIT_FROM_ENV),
                   help="start from these weights instead of scratch: models:/<name>/<N>, models:/<name>@<alias> or "
                        f"a {WEIGHTS_FILE} file (${INIT_FROM_ENV})")
    p.add_argument("--tracking-uri", default=_env(TRACKING_URI_ENV), help=f"MLflow tracking URI (${TRACKING_URI_ENV})")
    p.add_argument("--experiment", default=_env(EXPERIMENT_ENV, d["experiment"]),
                   help=f"MLflow experiment (${EXPERIMENT_ENV}, default %(default)s)")
    add_identity_flags(p, "TrainingRun")
    p.set_defaults(workers=int(d.get("workers", 0)))
    return p


def options_from(args: argparse.Namespace) -> Any:
    from training_job.job import JobError, TrainOptions

    if not args.dataset:
        raise JobError(f"no dataset: pass --dataset DIR or set {DATASET_ENV}")
    if not args.tracking_uri:
        raise JobError(f"no MLflow tracking URI: pass --tracking-uri or set {TRACKING_URI_ENV}")
    identity = {k: getattr(args, k) for k in ("namespace", "name", "uid") if getattr(args, k)}
    return TrainOptions(
        dataset=Path(args.dataset).absolute(), workdir=Path(args.workdir).absolute(),
        tracking_uri=args.tracking_uri, experiment=args.experiment, model=args.model, epochs=args.epochs,
        batch=args.batch, imgsz=args.imgsz, lr0=args.lr0, patience=args.patience, seed=args.seed,
        device=args.device, workers=args.workers, products=products_list(args.products), identity=identity,
        init_from=args.init_from or None, int8=args.int8, int8_max_drop=args.int8_max_drop,
    )


def say(message: str) -> None:
    print(f"[train] {message}", file=sys.stderr, flush=True)


def error_reason(error: BaseException) -> str:
    """One line for the user: our own errors as they are, others prefixed with their type."""
    from training_job.job import JobError

    return one_line(error, (JobError, ValueError, FileNotFoundError))


def train(args: argparse.Namespace, attempt: Attempt) -> dict[str, Any]:
    """The job; on a failure the MLflow run (if started) is marked FAILED and named in ``attempt``."""
    from training_job.job import JobState, mark_failed, run_job, summary_line

    state = JobState()
    try:
        result = run_job(options_from(args), state, say)
    except BaseException:
        mark_failed(state)
        attempt.run_id = state.run_id
        raise
    say(f"done in {result['duration_s']:.1f} s: {summary_line(result)}")
    return result


JOB = JobCli(build_parser, train, TrainingResult, reason=error_reason)


def main(argv: list[str] | None = None) -> int:
    return JOB.main(argv)
