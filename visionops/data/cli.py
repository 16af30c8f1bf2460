"""``visionops data``: prepare VISION data, generate a synthetic tree, show a data card, simulate drift."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from visionops import config
from visionops.data.errors import DataError, one_line

DRIFT_KINDS = ("brightness", "noise", "blur", "mixed")


class UsageError(Exception):
    """Bad command-line usage (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if number < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value!r}")
        return number

    parse.__name__ = f"integer >= {low}"
    return parse


def _products(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [p.strip() for p in value.split(",") if p.strip()]
    if not names:
        raise UsageError(f"--products must list product names separated by commas, got {value!r}")
    return names


def _cmd_prepare(args: argparse.Namespace) -> int:
    from visionops.data.prepare import prepare

    dataset = prepare(args.source, args.out, products=_products(args.products), progress=_progress)
    print(dataset.dataset_yaml)
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from visionops.data.synth import generate

    root = generate(args.out, products=_products(args.products), seed=args.seed,
                    train_images=args.train_images, val_images=args.val_images,
                    inference_images=args.inference_images, imgsz=args.imgsz)
    _progress(f"synthetic VISION tree written to {root}")
    print(root)
    return 0


def _cmd_card(args: argparse.Namespace) -> int:
    from visionops.data.card import format_card
    from visionops.data.prepare import PreparedDataset

    card = PreparedDataset.load(args.dataset).data_card
    print(json.dumps(card, indent=2) if args.json else format_card(card))
    return 0


def _cmd_samples(args: argparse.Namespace) -> int:
    from visionops.data.samples import sample_grid

    shown = sample_grid(args.dataset, args.out, split=args.split, classes=args.classes or (), count=args.count,
                        seed=args.seed, tile=args.tile)
    _progress(f"{len(shown['images'])} of {shown['candidates']} {shown['split']} images, {shown['objects']} objects "
              f"({', '.join(shown['classes']) or 'no objects'}) drawn into {shown['out']}")
    print(shown["out"])
    return 0


def _cmd_drift_batch(args: argparse.Namespace) -> int:
    if args.severity < 0:
        raise UsageError(f"--severity must be >= 0, got {args.severity}")
    if not 0 < args.fraction <= 1:
        raise UsageError(f"--fraction must be in (0, 1], got {args.fraction}")
    from visionops.data.drift_batch import simulate

    _progress(f"simulating {args.kind} drift (severity {args.severity}, fraction {args.fraction}) "
              f"from {args.source} into {args.out}")
    result = simulate(Path(args.source), Path(args.out), args.kind, args.severity, args.fraction, seed=args.seed)
    print(json.dumps(result, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``visionops data`` parser; drift-batch defaults come from ``configs/drift.yaml``."""
    from visionops.data import samples, synth

    parser = _Parser(
        prog="visionops data",
        description="Prepare VISION data, generate a synthetic tree, show a data card, simulate drift.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{prepare,synth,card,samples,drift-batch}",
                                parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("prepare", help="convert a VISION tree (COCO) into a YOLO dataset")
    p.add_argument("--source", required=True, help="VISION root: <source>/<Product>/{train,val}/...")
    p.add_argument("--out", required=True, help="output folder (replaced when it is a previous prepared dataset)")
    p.add_argument("--products", help="comma-separated products to keep (default: all found)")
    p.set_defaults(handler=_cmd_prepare)

    s = sub.add_parser("synth", help="write a small synthetic dataset in the VISION layout")
    s.add_argument("--out", required=True, help="output folder (replaced when it is a previous synthetic tree)")
    s.add_argument("--products", help=f"comma-separated VISION products (default: {','.join(synth.DEFAULT_PRODUCTS)})")
    s.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    s.add_argument("--train-images", type=_int_at_least(1), default=synth.DEFAULT_TRAIN_IMAGES,
                   help=f"train images per product (default: {synth.DEFAULT_TRAIN_IMAGES})")
    s.add_argument("--val-images", type=_int_at_least(1), default=synth.DEFAULT_VAL_IMAGES,
                   help=f"val images per product (default: {synth.DEFAULT_VAL_IMAGES})")
    s.add_argument("--inference-images", type=_int_at_least(0), default=synth.DEFAULT_INFERENCE_IMAGES,
                   help=f"unlabeled inference images per product (default: {synth.DEFAULT_INFERENCE_IMAGES})")
    s.add_argument("--imgsz", type=_int_at_least(32), default=synth.DEFAULT_IMGSZ,
                   help=f"image width in pixels (default: {synth.DEFAULT_IMGSZ})")
    s.set_defaults(handler=_cmd_synth)

    c = sub.add_parser("card", help="print the data card of a prepared dataset")
    c.add_argument("--dataset", required=True, help="prepared dataset folder")
    c.add_argument("--json", action="store_true", help="print the raw data_card.json")
    c.set_defaults(handler=_cmd_card)

    g = sub.add_parser("samples", help="draw a grid of annotated images (GT boxes, one colour per class)")
    g.add_argument("--dataset", required=True, help="prepared dataset folder")
    g.add_argument("--out", required=True, help="PNG file to write")
    g.add_argument("--split", choices=("train", "val"), default="val", help="split to sample (default: val)")
    g.add_argument("--class", dest="classes", action="append", metavar="NAME",
                   help="keep images holding this class (product/class or bare class name; repeatable)")
    g.add_argument("--count", type=_int_at_least(1), default=samples.DEFAULT_COUNT,
                   help=f"images in the grid (default: {samples.DEFAULT_COUNT})")
    g.add_argument("--seed", type=int, default=0, help="random seed of the sample (default: 0)")
    g.add_argument("--tile", type=_int_at_least(32), default=samples.DEFAULT_TILE,
                   help=f"tile side in pixels (default: {samples.DEFAULT_TILE})")
    g.set_defaults(handler=_cmd_samples)

    sim = config.load("drift").get("simulation", {})
    d = sub.add_parser("drift-batch", help="write a drifted batch of images (brightness, noise, blur, mixed)")
    d.add_argument("--source", required=True, help="folder of images to start from")
    d.add_argument("--out", required=True, help="output batch folder")
    d.add_argument("--kind", choices=DRIFT_KINDS, default=sim.get("kind", "brightness"),
                   help=f"kind of drift (default: {sim.get('kind', 'brightness')})")
    d.add_argument("--severity", type=float, default=float(sim.get("severity", 0.5)),
                   help=f"strength of the drift (default: {sim.get('severity', 0.5)})")
    d.add_argument("--fraction", type=float, default=float(sim.get("fraction", 0.3)),
                   help=f"share of the images to use, in (0, 1] (default: {sim.get('fraction', 0.3)})")
    d.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    d.set_defaults(handler=_cmd_drift_batch)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``visionops data`` subcommand; errors are one line on stderr (2: usage, 1: data)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except SystemExit as exc:  # --help
        return int(exc.code or 0) if isinstance(exc.code, int | None) else 2
    except UsageError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except (DataError, OSError, ValueError) as exc:  # DataError first in spirit: bad input data
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
