"""``visionops drift`` / ``python -m drift_job``: one drift check, its result file and exit code.

Exit 0 when the check produced a verdict (``drift``, ``no_drift`` or ``skipped``); 1 with a one-line
reason on stderr (and ``status: failed`` plus ``error`` in the result file) when it could not run,
among others when the reference or the current batch holds no readable image (images that cannot be
decoded or are over ``--max-image-pixels`` are skipped); 2 for bad flags (``main`` returns the code;
it never raises ``SystemExit``). The work happens in a temporary folder: ``--output-dir`` is created
and filled only when the check succeeds.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from drift_job.detect import detect_drift
from drift_job.features import FEATURES, IMAGE_EXTENSIONS, collect_images, feature_table
from visionops import config
from visionops.results import write_result

log = logging.getLogger("drift_job")
REPORT_NAME = "drift_report.html"


def _share(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def _products(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def build_parser(defaults: dict[str, Any]) -> argparse.ArgumentParser:
    """Flags; defaults come from ``configs/drift.yaml`` and the environment."""
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="visionops drift",
        description="Compare image features of a current batch with a reference set (Evidently data drift).",
    )
    p.add_argument("--reference", type=Path, required=True, help="reference images: a VISION root or any folder")
    p.add_argument("--reference-split", default=None,
                   help="VISION split used as reference (root/<Product>/<split>/); default: every image, recursively")
    p.add_argument("--products", type=_products, default=None,
                   help="comma-separated products of the reference (with --reference-split); default: all")
    p.add_argument("--current", type=Path, required=True, help="folder of the current batch (searched recursively)")
    p.add_argument("--drift-share", type=_share, default=float(defaults["drift_share"]),
                   help="dataset drift when at least this share of features drifted (default %(default)s)")
    p.add_argument("--min-reference", type=_positive_int, default=int(defaults["min_reference_samples"]),
                   help="fewer reference images skip the check (default %(default)s)")
    p.add_argument("--min-current", type=_positive_int, default=int(defaults["min_current_samples"]),
                   help="fewer current images skip the check (default %(default)s)")
    p.add_argument("--max-image-pixels", type=_positive_int, default=int(defaults["max_image_pixels"]),
                   help="skip images with more pixels than this, checked before decoding (default %(default)s)")
    p.add_argument("--max-side", type=_non_negative_int, default=0,
                   help="shrink images whose longer side exceeds this before computing features "
                        "(bounds memory; changes sharpness; 0 = off, default %(default)s)")
    p.add_argument("--tracking-uri", default=env("MLFLOW_TRACKING_URI", ""),
                   help="MLflow tracking URI (default $MLFLOW_TRACKING_URI; empty: no MLflow logging)")
    p.add_argument("--experiment", default=defaults["experiment"], help="MLflow experiment (default %(default)s)")
    p.add_argument("--namespace", default=env("VISIONOPS_NAMESPACE", ""),
                   help="DriftCheck namespace ($VISIONOPS_NAMESPACE)")
    p.add_argument("--name", default=env("VISIONOPS_NAME", ""), help="DriftCheck name ($VISIONOPS_NAME)")
    p.add_argument("--uid", default=env("VISIONOPS_UID", ""), help="DriftCheck uid ($VISIONOPS_UID)")
    p.add_argument("--output-dir", type=Path, default=None,
                   help="keep the HTML report and feature tables here, written only when the check succeeds "
                        "(default: a temporary folder, removed after logging to MLflow)")
    p.add_argument("--result-file", default=None, help="write the JSON result here (the Job uses /dev/termination-log)")
    return p


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} folder {path} does not exist or is not a directory")


def _require_readable(what: str, folder: str, paths: list[Path], table: pd.DataFrame) -> None:
    """Fail (``ValueError``) when a side has no readable image: nothing found, or every image skipped."""
    if not table.empty:
        return
    if not paths:
        raise ValueError(f"{what} folder {folder} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    skipped: dict[str, str] = table.attrs["skipped"]
    first, reason = next(iter(skipped.items()))
    raise ValueError(f"{what} has no readable image: all {len(paths)} images under {folder} were skipped "
                     f"(first: {first}: {reason})")


def _features(what: str, folder: str, paths: list[Path], args: argparse.Namespace) -> pd.DataFrame:
    """The feature table of one side; ``ValueError`` when it has no readable image."""
    table = feature_table(paths, args.max_image_pixels, args.max_side or None)
    _require_readable(what, folder, paths, table)
    return table


def run_check(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Any], Path | None, dict[str, Path]]:
    """Collect images, build both feature tables, run the detector; return (result, report, tables)."""
    _require_dir(args.reference, "reference")
    _require_dir(args.current, "current")
    ref_paths = collect_images(args.reference, args.reference_split, args.products)
    cur_paths = collect_images(args.current)
    log.info("reference: %d images, current: %d images", len(ref_paths), len(cur_paths))
    split = f" (<Product>/{args.reference_split}/)" if args.reference_split else ""
    reference = _features("reference", f"{args.reference}{split}", ref_paths, args)
    current = _features("current", str(args.current), cur_paths, args)
    unreadable = len(reference.attrs["skipped"]) + len(current.attrs["skipped"])
    if unreadable:
        log.warning("skipped %d unreadable or oversized images", unreadable)
    tables = {"reference": workdir / "reference_features.csv", "current": workdir / "current_features.csv"}
    reference.to_csv(tables["reference"], index=False)
    current.to_csv(tables["current"], index=False)
    report = workdir / REPORT_NAME
    result = detect_drift(
        reference, current, drift_share=args.drift_share, min_reference=args.min_reference,
        min_current=args.min_current, report_path=report,
    )
    result["unreadable_images"] = unreadable
    result["drift_share_threshold"] = args.drift_share
    return result, (report if report.is_file() else None), tables


def _publish(workdir: Path, out: Path) -> None:
    """Move the files of a successful check from ``workdir`` into ``out`` (created here, with its parents)."""
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(workdir.iterdir()):
        shutil.move(path, out / path.name)


def _params(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "reference": str(args.reference), "reference_split": args.reference_split,
        "products": ",".join(args.products) if args.products else None, "current": str(args.current),
        "drift_share_threshold": args.drift_share, "min_reference": args.min_reference,
        "min_current": args.min_current, "max_side": args.max_side, "max_image_pixels": args.max_image_pixels,
        "features": ",".join(FEATURES),
        "reference_count": result["reference_count"], "current_count": result["current_count"],
        "unreadable_images": result["unreadable_images"],
    }


def main(argv: list[str] | None = None) -> int:
    """Run one drift check; see the module docstring for the exit codes."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        defaults = config.load("drift")
    except (OSError, ValueError) as exc:
        print(f"drift: error: {exc}", file=sys.stderr)
        return 2
    try:
        args = build_parser(defaults).parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad flag (2, argparse printed why)
        return exc.code if isinstance(exc.code, int) else 2
    workdir: Path | None = None
    try:
        if args.output_dir is not None and args.output_dir.exists() and not args.output_dir.is_dir():
            raise NotADirectoryError(f"output folder {args.output_dir} exists and is not a directory")
        if args.tracking_uri:
            from drift_job import tracking  # MLflow is imported only when it is used

            tracking.check_reachable(args.tracking_uri)
        workdir = Path(tempfile.mkdtemp(prefix="visionops-drift-"))
        result, report, tables = run_check(args, workdir)
        if args.tracking_uri:
            tags = tracking.identity_tags(args.namespace, args.name, args.uid)
            run_id, report_uri = tracking.log_check(
                args.tracking_uri, args.experiment, tags, _params(args, result), result, report, tables
            )
            result.update(run_id=run_id, report_uri=report_uri)
        if args.output_dir is not None:
            _publish(workdir, args.output_dir)
            report = args.output_dir / report.name if report else None
        if not args.tracking_uri:
            result["report_uri"] = str(report) if report else None
        if args.tracking_uri or args.output_dir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    except Exception as exc:  # one line, not a traceback: this is the Job's contract
        known = isinstance(exc, OSError | ValueError | RuntimeError)
        reason = " ".join((str(exc) if known else f"{type(exc).__name__}: {exc}").split())
        print(f"drift: error: {reason}", file=sys.stderr)
        write_result(args.result_file, {"status": "failed", "error": reason})
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        return 1
    text = write_result(args.result_file, result)
    print(text)
    log.info("drift check: %s", result["status"] + (f" ({result['reason']})" if result.get("reason") else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
