"""``visionops analyze``: per-class AP50 of a training run, and its hardest val images.

Exit 0 with the table (or ``--json``) on stdout; 1 with a one-line reason on stderr when the run,
model or dataset cannot be analysed; 2 for bad flags.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from visionops import config

HELP_BANDS = "bands: good >= 70 %, fair 40-70 %, poor < 40 % AP50"


def _at_least(low: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Flags; prediction defaults come from ``configs/serving.yaml`` and ``configs/training.yaml``."""
    from visionops.analysis import DEFAULT_HARDEST

    serving, training = config.load("serving"), config.load("training")
    p = argparse.ArgumentParser(
        prog="visionops analyze",
        description=f"Per-class AP50 of a training run, worst first ({HELP_BANDS}); with --dataset, "
                    "the val images the run's model gets most wrong, drawn with GT (green) vs predicted (red).",
    )
    p.add_argument("--run-id", required=True, help="MLflow run id of a training run")
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", ""),
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    p.add_argument("--dataset", type=Path,
                   help="VISION root or prepared dataset whose val images to predict (default: AP50 table only)")
    p.add_argument("--hardest", type=_at_least(0), default=DEFAULT_HARDEST,
                   help="hardest images to draw (default: %(default)s)")
    p.add_argument("--out", type=Path, help="folder for the PNGs and analysis.json (default: analysis-<run id>)")
    p.add_argument("--log", action="store_true", help="also log the PNGs and analysis.json to the run under analysis/")
    p.add_argument("--imgsz", type=_at_least(32), default=None,
                   help=f"prediction size (default: the run's imgsz, else {training['imgsz']})")
    p.add_argument("--conf", type=_fraction, default=float(serving["confidence"]),
                   help="minimum confidence of a prediction (default: %(default)s, configs/serving.yaml)")
    p.add_argument("--iou", type=_fraction, default=float(serving["iou"]),
                   help="NMS IoU of the predictor (default: %(default)s, configs/serving.yaml)")
    p.add_argument("--device", default=str(training["device"]), help="torch device (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    return p


def describe(report: dict[str, Any], colour: bool) -> str:
    """The human report: header, per-class table, and the hardest images when analysed."""
    from visionops.analysis import format_table

    bands = report["bands"]
    lines = [f"run {report['run_id']}: mAP50 {report['map50'] * 100:.1f}% - "
             f"{bands['good']} good, {bands['fair']} fair, {bands['poor']} poor classes", "",
             format_table(report["per_class"], colour=colour)]
    images = report.get("analysis")
    if images:
        lines += ["", f"{images['images']} val images of {images['dataset']}: {images['matched']} of "
                      f"{images['gt_objects']} GT objects found, {images['missed']} missed, "
                      f"{images['false_positives']} false positives (IoU {images['iou_threshold']}, "
                      f"conf {images['conf']}, imgsz {images['imgsz']})"]
        if images["hardest"]:
            lines.append("hardest images (missed + false positives):")
            lines += [f"  {h['rank']:>2}. {h['image']}  error {h['error']} ({h['missed']} missed, "
                      f"{h['false_positives']} false positives)  -> {h['png']}" for h in images["hardest"]]
        else:
            lines.append("no image with a missed object or a false positive")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad flag (2, argparse printed why)
        return int(exc.code or 0) if isinstance(exc.code, int | None) else 2
    if not args.tracking_uri:
        print("error: no MLflow tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI", file=sys.stderr)
        return 2
    if args.log and args.dataset is None:
        print("error: --log needs --dataset (it logs the hardest-image PNGs and analysis.json)", file=sys.stderr)
        return 2
    from visionops.analysis import analyze

    out = args.out or Path(f"analysis-{args.run_id}")
    try:
        report = analyze(tracking_uri=args.tracking_uri, run_id=args.run_id, dataset=args.dataset,
                         out=out if args.dataset is not None else None, count=args.hardest, imgsz=args.imgsz,
                         conf=args.conf, nms_iou=args.iou, device=args.device, log=args.log,
                         say=lambda message: print(message, file=sys.stderr, flush=True))
    except Exception as error:  # one clear line for the user, not a traceback
        print(f"error: {error}".splitlines()[0], file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(describe(report, colour=sys.stdout.isatty() and "NO_COLOR" not in os.environ))
        if args.dataset is not None:
            print(f"written: {out / 'analysis.json'}" + (f" (logged to run {args.run_id} under analysis/)"
                                                         if args.log else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
