"""``visionops train`` / ``python -m training_job``: flags (env fallbacks, configs/training.yaml defaults).

Contract with the operator: exit code 0 and a result JSON (``--result-file``) on success; on
failure a non-zero exit, one ``error: <reason>`` line on stderr, ``{"error": reason}`` in the
result file and the MLflow run (if started) marked FAILED. Progress lines go to stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from visionops import config
from visionops.results import write_result

ENV = {
    "dataset": "VISIONOPS_DATASET",
    "products": "VISIONOPS_PRODUCTS",
    "workdir": "VISIONOPS_WORKDIR",
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "experiment": "VISIONOPS_EXPERIMENT",
    "namespace": "VISIONOPS_NAMESPACE",
    "name": "VISIONOPS_NAME",
    "uid": "VISIONOPS_UID",
    "result_file": "VISIONOPS_RESULT_FILE",
    "init_from": "VISIONOPS_INIT_FROM",
}


class Terminated(Exception):
    """SIGTERM arrived (the Pod is being deleted): fail the run cleanly."""


def _env(key: str, default: Any = None) -> Any:
    return os.environ.get(ENV[key]) or default


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
    p.add_argument("--dataset", default=_env("dataset"), help=f"VISION root (<Product>/train/...) (${ENV['dataset']})")
    p.add_argument("--products", default=_env("products"),
                   help=f"comma-separated products, default all (${ENV['products']})")
    p.add_argument("--workdir", default=_env("workdir", str(Path(tempfile.gettempdir()) / "visionops-train")),
                   help=f"scratch folder for data, runs and the model (${ENV['workdir']}, default %(default)s)")
    p.add_argument("--epochs", type=int, default=d["epochs"], help="default %(default)s")
    p.add_argument("--batch", type=int, default=d["batch"], help="default %(default)s")
    p.add_argument("--imgsz", type=int, default=d["imgsz"], help="default %(default)s")
    p.add_argument("--lr0", type=float, default=d["lr0"], help="default %(default)s")
    p.add_argument("--patience", type=int, default=d["patience"], help="default %(default)s")
    p.add_argument("--seed", type=int, default=d["seed"], help="default %(default)s")
    p.add_argument("--device", default=str(d["device"]), help="cpu, 0, ... (default %(default)s)")
    p.add_argument("--model", default=d["model"], help="architecture yaml (default %(default)s)")
    p.add_argument("--init-from", default=_env("init_from"),
                   help="start from these weights instead of scratch: models:/<name>/<N>, models:/<name>@<alias> or "
                        f"a best.pt file (${ENV['init_from']})")
    p.add_argument("--tracking-uri", default=_env("tracking_uri"), help=f"MLflow tracking URI (${ENV['tracking_uri']})")
    p.add_argument("--experiment", default=_env("experiment", d["experiment"]),
                   help=f"MLflow experiment (${ENV['experiment']}, default %(default)s)")
    p.add_argument("--namespace", default=_env("namespace"), help=f"TrainingRun namespace tag (${ENV['namespace']})")
    p.add_argument("--name", default=_env("name"), help=f"TrainingRun name tag (${ENV['name']})")
    p.add_argument("--uid", default=_env("uid"), help=f"TrainingRun uid tag (${ENV['uid']})")
    p.add_argument("--result-file", default=_env("result_file"),
                   help=f"write the result JSON here, e.g. /dev/termination-log (${ENV['result_file']})")
    p.set_defaults(workers=int(d.get("workers", 0)))
    return p


def options_from(args: argparse.Namespace) -> Any:
    from training_job.job import JobError, TrainOptions

    if not args.dataset:
        raise JobError(f"no dataset: pass --dataset DIR or set {ENV['dataset']}")
    if not args.tracking_uri:
        raise JobError(f"no MLflow tracking URI: pass --tracking-uri or set {ENV['tracking_uri']}")
    identity = {k: getattr(args, k) for k in ("namespace", "name", "uid") if getattr(args, k)}
    return TrainOptions(
        dataset=Path(args.dataset).absolute(), workdir=Path(args.workdir).absolute(),
        tracking_uri=args.tracking_uri, experiment=args.experiment, model=args.model, epochs=args.epochs,
        batch=args.batch, imgsz=args.imgsz, lr0=args.lr0, patience=args.patience, seed=args.seed,
        device=args.device, workers=args.workers, products=products_list(args.products), identity=identity,
        init_from=args.init_from or None,
    )


def say(message: str) -> None:
    print(f"[train] {message}", file=sys.stderr, flush=True)


def _on_sigterm(signum: int, _frame: Any) -> None:
    raise Terminated(f"terminated by signal {signum}")


def error_reason(error: BaseException) -> str:
    """One line for the user: our own errors as they are, others prefixed with their type."""
    from training_job.job import JobError

    text = str(error).strip() or type(error).__name__
    if not isinstance(error, JobError | ValueError | Terminated | FileNotFoundError):
        text = f"{type(error).__name__}: {text}"
    return " ".join(text.split())[:1000]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from training_job.job import JobState, mark_failed, run_job, summary_line

    state = JobState()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        result = run_job(options_from(args), state, say)
    except (Exception, Terminated, KeyboardInterrupt) as error:
        mark_failed(state)
        reason = error_reason(error)
        if os.environ.get("VISIONOPS_DEBUG"):
            traceback.print_exc()
        payload = {"error": reason, **({"run_id": state.run_id} if state.run_id else {})}
        write_result(args.result_file, payload)
        print(f"error: {reason}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    write_result(args.result_file, result)
    say(f"done in {result['duration_s']:.1f} s: {summary_line(result)}")
    return 0
