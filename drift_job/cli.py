"""``visionops drift`` / ``python -m drift_job``: one drift check, its result file and exit code.

The reference is a folder (``--reference``) or the data a registered model version was trained on
(``--reference-from-model models:/<name>@<alias>``, found through the version's lineage tags;
:mod:`drift_job.reference`). With ``--model-uri`` (a ``models:/`` URI or a local weights file) the check
also compares what that model sees: its backbone embedding and its predictions
(:mod:`drift_job.model_features`); without it, only the image statistics (the model features cost a
forward pass per image).

Exit codes and the result file follow :mod:`visionops.job_runner` (a
:class:`visionops.contract.DriftResult`): 0 when the check produced a verdict (``drift``, ``no_drift`` or
``skipped``; the result JSON is also printed on stdout); 1 with one ``drift: error: <reason>`` line on
stderr (and ``status: failed`` plus ``error`` in the result file) when it could not run, among others when
the reference or the current batch holds no readable image (images that cannot be decoded or are over
``--max-image-pixels`` are skipped); 2 for bad flags; 143 on SIGTERM. The work happens in a temporary
folder: ``--output-dir`` is created and filled only when the check succeeds.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.contrib.logging import logging_redirect_tqdm

from drift_job.detect import IMAGE_GROUP, PREDICTIONS_GROUP, detect_drift
from drift_job.features import FEATURES, IMAGE_EXTENSIONS, collect_images, feature_table
from drift_job.model_features import EMBEDDING, PREDICTION_FEATURES, ImageModel, ModelFeatures, ModelSettings
from visionops import config
from visionops.contract import REPORT_FILE, TRACKING_URI_ENV, WEIGHTS_FILE, DriftResult
from visionops.job_runner import Attempt, FlagError, JobCli, add_identity_flags

log = logging.getLogger("drift_job")


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
    p = argparse.ArgumentParser(
        prog="visionops drift",
        description="Compare image features of a current batch, and optionally what a model sees in it, with a "
                    "reference set (Evidently data and embedding drift).",
    )
    model = defaults.get("model") or {}
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--reference", type=Path, help="reference images: a VISION root or any folder")
    source.add_argument("--reference-from-model", metavar="MODELS_URI",
                        help="reference = the data this registered version was trained on (models:/<name>@<alias> "
                             "or models:/<name>/<version>; from its lineage tags; needs --tracking-uri)")
    p.add_argument("--reference-split", default=None,
                   help="VISION split used as reference (root/<Product>/<split>/); default: every image, recursively "
                        "(with --reference-from-model: train)")
    p.add_argument("--products", type=_products, default=None,
                   help="comma-separated products of the reference (with --reference-split); default: all "
                        "(with --reference-from-model: the products the version was trained on)")
    p.add_argument("--current", type=Path, required=True, help="folder of the current batch (searched recursively)")
    p.add_argument("--model-uri", default="",
                   help="also compare what this model sees (backbone embedding, confidence, class mix): "
                        f"models:/<name>@<alias>, models:/<name>/<version> or a local {WEIGHTS_FILE} "
                        "(default: none, image statistics only)")
    p.add_argument("--model-imgsz", type=_non_negative_int, default=int(model.get("imgsz", 0)),
                   help="inference size for the model features (0 = the model's training size; default %(default)s)")
    p.add_argument("--model-batch", type=_positive_int, default=int(model.get("batch", 16)),
                   help="images per forward pass (default %(default)s)")
    p.add_argument("--model-device", default=str(model.get("device", "cpu")),
                   help="torch device for the model features (default %(default)s)")
    p.add_argument("--drift-share", type=_share, default=float(defaults["drift_share"]),
                   help="drift when at least this share of the features of a group drifted (groups: image "
                        "statistics; with a model also predictions, embedding; default %(default)s)")
    p.add_argument("--min-reference", type=_positive_int, default=int(defaults["min_reference_samples"]),
                   help="fewer reference images skip the check (default %(default)s)")
    p.add_argument("--min-current", type=_positive_int, default=int(defaults["min_current_samples"]),
                   help="fewer current images skip the check (default %(default)s)")
    p.add_argument("--max-image-pixels", type=_positive_int, default=int(defaults["max_image_pixels"]),
                   help="skip images with more pixels than this, checked before decoding (default %(default)s)")
    p.add_argument("--max-side", type=_non_negative_int, default=0,
                   help="shrink images whose longer side exceeds this before computing features "
                        "(bounds memory; changes sharpness; 0 = off, default %(default)s)")
    p.add_argument("--tracking-uri", default=os.environ.get(TRACKING_URI_ENV, ""),
                   help=f"MLflow tracking URI (default ${TRACKING_URI_ENV}; empty: no MLflow logging)")
    p.add_argument("--experiment", default=defaults["experiment"], help="MLflow experiment (default %(default)s)")
    add_identity_flags(p, "DriftCheck")
    p.add_argument("--output-dir", type=Path, default=None,
                   help="keep the HTML report and feature tables here, written only when the check succeeds "
                        "(default: a temporary folder, removed after logging to MLflow)")
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
    started = time.monotonic()
    log.info("%s: image statistics of %d images", what, len(paths))
    table = feature_table(paths, args.max_image_pixels, args.max_side or None, desc=f"{what} images")
    _require_readable(what, folder, paths, table)
    log.info("%s: image statistics done in %.1f s", what, time.monotonic() - started)
    return table


@dataclass
class Sources:
    """Where the reference comes from and which model looks at the images (resolved once, up front)."""

    ref_paths: list[Path]
    ref_folder: str
    reference_from: dict[str, Any] | None = None
    weights: Path | None = None
    model: dict[str, Any] = field(default_factory=dict)


def resolve_sources(args: argparse.Namespace, scratch: Path) -> Sources:
    """The reference images (a folder, or a version's training data) and the model weights (if any).

    A ``models:/`` URI is resolved once: when ``--model-uri`` names the same URI as
    ``--reference-from-model`` both use the same version, even if its alias moves meanwhile.
    """
    from visionops import model_versions as mv

    resolved: dict[str, mv.ResolvedVersion] = {}

    def version_of(uri: str) -> mv.ResolvedVersion:
        if uri not in resolved:
            resolved[uri] = mv.resolve(args.tracking_uri, mv.parse_models_uri(uri))
        return resolved[uri]

    if args.reference_from_model:
        from drift_job.reference import lineage_reference

        version = version_of(args.reference_from_model)
        ref = lineage_reference(version, mv.training_data(args.tracking_uri, version), args.reference_split or "train")
        log.info("reference from %s: version %s, dataset %s (%s)", args.reference_from_model, version.version,
                 ref.data.source, ref.data.digest)
        sources = Sources(ref.paths, ref.folder, ref.describe())
    else:
        _require_dir(args.reference, "reference")
        split = f" (<Product>/{args.reference_split}/)" if args.reference_split else ""
        sources = Sources(collect_images(args.reference, args.reference_split, args.products),
                          f"{args.reference}{split}")
    if args.model_uri and mv.is_models_uri(args.model_uri):
        version = version_of(args.model_uri)
        sources.weights = mv.download_weights(args.tracking_uri, version, scratch)
        sources.model = version.describe()
    elif args.model_uri:
        local = Path(args.model_uri)
        sources.weights = local / WEIGHTS_FILE if local.is_dir() else local
        if not sources.weights.is_file():
            raise FileNotFoundError(f"model weights {sources.weights} do not exist or are not a file")
        sources.model = {"uri": str(sources.weights)}
    return sources


def _model_features(model: ImageModel, what: str, table: pd.DataFrame, args: argparse.Namespace,
                    settings: ModelSettings) -> ModelFeatures:
    from drift_job.model_features import model_features

    started = time.monotonic()
    log.info("%s: model features of %d images", what, len(table))
    features = model_features(model, [Path(p) for p in table["image"]], settings, args.max_image_pixels,
                              desc=f"{what} model")
    log.info("%s: model features done in %.1f s", what, time.monotonic() - started)
    return features


def add_model_features(sources: Sources, reference: pd.DataFrame, current: pd.DataFrame, args: argparse.Namespace,
                       workdir: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, Path]]:
    """Run the model on both sides: its prediction columns join the tables (in place); return the
    embeddings and the files that hold them."""
    from drift_job.model_features import load_model, model_imgsz

    serving = config.load("serving")
    model = load_model(sources.weights)
    settings = ModelSettings(imgsz=args.model_imgsz or model_imgsz(model.yolo), batch=args.model_batch,
                             device=args.model_device, confidence=float(serving["confidence"]),
                             iou=float(serving["iou"]))
    sources.model.update(imgsz=settings.imgsz, embedding_layer=model.layer, confidence=settings.confidence)
    sides = {"reference": reference, "current": current}
    files: dict[str, Path] = {}
    vectors: dict[str, np.ndarray] = {}
    for what, table in sides.items():
        found = _model_features(model, what, table, args, settings)
        for column in PREDICTION_FEATURES:
            table[column] = found.table[column].to_numpy()
        vectors[what] = found.embeddings
        files[f"{what}_embeddings"] = workdir / f"{what}_embeddings.npy"
        np.save(files[f"{what}_embeddings"], found.embeddings)
    return {EMBEDDING: (vectors["reference"], vectors["current"])}, files


def run_check(args: argparse.Namespace, workdir: Path,
              scratch: Path) -> tuple[dict[str, Any], Path | None, dict[str, Path]]:
    """Resolve the sources, build both feature tables, run the detector; return (result, report, files)."""
    _require_dir(args.current, "current")
    sources = resolve_sources(args, scratch)
    cur_paths = collect_images(args.current)
    log.info("reference: %d images, current: %d images", len(sources.ref_paths), len(cur_paths))
    reference = _features("reference", sources.ref_folder, sources.ref_paths, args)
    current = _features("current", str(args.current), cur_paths, args)
    unreadable = len(reference.attrs["skipped"]) + len(current.attrs["skipped"])
    if unreadable:
        log.warning("skipped %d unreadable or oversized images", unreadable)
    groups: dict[str, tuple[str, ...]] = {IMAGE_GROUP: FEATURES}
    embeddings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    files: dict[str, Path] = {}
    enough = len(reference) >= args.min_reference and len(current) >= args.min_current
    if sources.weights is not None and enough:
        embeddings, files = add_model_features(sources, reference, current, args, workdir)
        groups[PREDICTIONS_GROUP] = PREDICTION_FEATURES
    files = {"reference": workdir / "reference_features.csv", "current": workdir / "current_features.csv", **files}
    reference.to_csv(files["reference"], index=False)
    current.to_csv(files["current"], index=False)
    report = workdir / REPORT_FILE
    started = time.monotonic()
    result = detect_drift(
        reference, current, drift_share=args.drift_share, min_reference=args.min_reference,
        min_current=args.min_current, report_path=report, groups=groups, embeddings=embeddings,
    )
    log.info("Evidently report done in %.1f s", time.monotonic() - started)
    result["unreadable_images"] = unreadable
    result["drift_share_threshold"] = args.drift_share
    if sources.reference_from is not None:
        result["reference_from"] = sources.reference_from
    if sources.model:
        result["model"] = sources.model
    return result, (report if report.is_file() else None), files


def _publish(workdir: Path, out: Path) -> None:
    """Move the files of a successful check from ``workdir`` into ``out`` (created here, with its parents)."""
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(workdir.iterdir()):
        shutil.move(path, out / path.name)


def _params(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    lineage = result.get("reference_from") or {}
    model = result.get("model") or {}
    features = [name for name, score in (result.get("feature_scores") or {}).items()] or list(FEATURES)
    return {
        "reference": str(args.reference) if args.reference else lineage.get("dataset_source"),
        "reference_split": args.reference_split or lineage.get("split"),
        "products": ",".join(args.products or lineage.get("products") or []) or None, "current": str(args.current),
        "reference_from_model": args.reference_from_model, "reference_model_version": lineage.get("version"),
        "reference_dataset_digest": lineage.get("dataset_digest"),
        "model_uri": model.get("uri"), "model_version": model.get("version"), "model_imgsz": model.get("imgsz"),
        "drift_share_threshold": args.drift_share, "min_reference": args.min_reference,
        "min_current": args.min_current, "max_side": args.max_side, "max_image_pixels": args.max_image_pixels,
        "features": ",".join(features),
        "reference_count": result["reference_count"], "current_count": result["current_count"],
        "unreadable_images": result["unreadable_images"],
    }


def _check_flags(args: argparse.Namespace) -> None:
    if args.products and args.reference_from_model:
        raise FlagError("--products cannot be combined with --reference-from-model (the version's products are used)")


def drift_check(args: argparse.Namespace, attempt: Attempt) -> dict[str, Any]:
    """Run one drift check: its result, the report and tables logged to MLflow and/or kept in ``--output-dir``."""
    workdir: Path | None = None
    scratch = Path(tempfile.mkdtemp(prefix="visionops-drift-model-"))  # downloaded weights; never published
    try:
        if args.output_dir is not None and args.output_dir.exists() and not args.output_dir.is_dir():
            raise NotADirectoryError(f"output folder {args.output_dir} exists and is not a directory")
        if args.tracking_uri:
            from drift_job import tracking  # MLflow is imported only when it is used

            tracking.check_reachable(args.tracking_uri)
        workdir = Path(tempfile.mkdtemp(prefix="visionops-drift-"))
        with logging_redirect_tqdm():  # log lines above a terminal's progress bars
            result, report, tables = run_check(args, workdir, scratch)
        if args.tracking_uri:
            tags = tracking.identity_tags(args.namespace, args.name, args.uid)
            run_id, report_uri = tracking.log_check(
                args.tracking_uri, args.experiment, tags, _params(args, result), result, report, tables
            )
            result.update(run_id=run_id, report_uri=report_uri)
            attempt.run_id = run_id
        if args.output_dir is not None:
            _publish(workdir, args.output_dir)
            report = args.output_dir / report.name if report else None
        if not args.tracking_uri:
            result["report_uri"] = str(report) if report else None
        if args.tracking_uri or args.output_dir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    except BaseException:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("drift check: %s", result["status"] + (f" ({result['reason']})" if result.get("reason") else ""))
    return result


JOB = JobCli(lambda: build_parser(config.load("drift")), drift_check, DriftResult, prefix="drift: ", check=_check_flags)


def main(argv: list[str] | None = None) -> int:
    """Run one drift check; see the module docstring for the exit codes."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return JOB.main(argv)


if __name__ == "__main__":
    sys.exit(main())
