"""``visionops serve`` / ``python -m predictor``: load the detector and run the KServe ModelServer.

Model source, first match wins: ``--model-dir``; ``--model-uri`` (``models:/<name>@<alias>``,
``models:/<name>/<version>`` or ``models:/<name>`` meaning ``@--alias``; env ``VISIONOPS_MODEL_URI``,
the variable the operator patches on promotion); with a tracking URI
(``--tracking-uri`` or ``MLFLOW_TRACKING_URI``) ``models:/<--model_name>@<--alias>``; else
``/mnt/models`` (where KServe's storage initializer puts a ``storageUri``).
All KServe ModelServer flags (``--http_port``, ``--model_name``, ``--workers``...) are accepted;
``--model_name`` (the name in the URL paths) defaults to ``model_name`` of configs/serving.yaml.
"""

from __future__ import annotations

import argparse
import os
import sys

from predictor.artifacts import ModelArtifactError
from predictor.settings import ServingSettings

KSERVE_MOUNT = "/mnt/models"
MODEL_URI_ENV = "VISIONOPS_MODEL_URI"  # set by the chart, patched by the operator
THREADS_ENV = "VISIONOPS_INTRA_OP_THREADS"


def build_parser(defaults: ServingSettings) -> argparse.ArgumentParser:
    """Own flags on top of ``kserve.model_server.parser``; defaults shown are configs/serving.yaml's."""
    from kserve import model_server

    parser = argparse.ArgumentParser(
        prog="visionops serve", description="Serve the VisionOps defect detector (KServe V1 + V2).",
        parents=[model_server.parser], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.set_defaults(model_name=defaults.model_name)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model-dir", help=f"local model dir holding best.onnx and class_map.json; with neither "
                                            f"source flag: models:/<model_name>@<alias> when a tracking URI "
                                            f"is set, else {KSERVE_MOUNT}")
    source.add_argument("--model-uri", default=os.environ.get(MODEL_URI_ENV) or None,
                        help="MLflow registry URI: models:/<name>@<alias>, models:/<name>/<version> or "
                             f"models:/<name> (uses --alias) (env {MODEL_URI_ENV})")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                        help="MLflow tracking URI for --model-uri (env MLFLOW_TRACKING_URI)")
    parser.add_argument("--alias", default=defaults.alias, help="registry alias used when the URI names none")
    parser.add_argument("--confidence", type=float, default=defaults.confidence, help="minimum box confidence")
    parser.add_argument("--iou", type=float, default=defaults.iou, help="NMS IoU threshold")
    parser.add_argument("--imgsz", type=int, default=defaults.imgsz,
                        help="expected inference image size (px); the ONNX model's static input size wins (a "
                             "warning is logged when they differ)")
    parser.add_argument("--max-image-bytes", type=int, default=defaults.max_image_bytes,
                        help="largest decoded image accepted (bytes)")
    parser.add_argument("--max-images-per-request", type=int, default=defaults.max_images_per_request,
                        help="most images accepted in one request")
    parser.add_argument("--download-dir", default=None,
                        help="where MLflow artifacts are downloaded (None: a new temp dir)")
    parser.add_argument("--device", choices=["cpu"], default=None,
                        help="kept for compatibility: the model runs on ONNX Runtime's CPU provider")
    parser.add_argument("--intra-op-threads", type=_threads, default=os.environ.get(THREADS_ENV) or "0",
                        help="ONNX Runtime threads per inference; 0: one per core the machine has (set it to the "
                             f"pod's CPU limit) (env {THREADS_ENV})")
    return parser


def _threads(value: str) -> int:
    """``--intra-op-threads``: an integer >= 0."""
    try:
        threads = int(value)
    except ValueError:
        threads = -1
    if threads < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (0: ONNX Runtime's default), got {value!r}")
    return threads


def resolve_source(args: argparse.Namespace) -> dict[str, str]:
    """``{"model_dir": ...}`` or ``{"model_uri": ...}`` following the order in the module docstring."""
    if args.model_dir:
        return {"model_dir": args.model_dir}
    if args.model_uri:
        return {"model_uri": args.model_uri}
    if args.tracking_uri:
        return {"model_uri": f"models:/{args.model_name}@{args.alias}"}
    return {"model_dir": KSERVE_MOUNT}


def endpoint_lines(model_name: str, port: int) -> list[str]:
    """The URLs a client uses, printed at start (the URL name is ``--model_name``)."""
    base = f"http://localhost:{port}"
    return [
        f"  V1 predict  POST {base}/v1/models/{model_name}:predict",
        f"  V2 infer    POST {base}/v2/models/{model_name}/infer",
        f"  ready       GET  {base}/v2/health/ready  {base}/v2/models/{model_name}/ready  "
        f"{base}/v1/models/{model_name}",
        f"  metadata    GET  {base}/v2/models/{model_name}",
        f"  metrics     GET  {base}/metrics",
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    defaults = ServingSettings.from_config()
    args = build_parser(defaults).parse_args(argv)
    try:
        settings = ServingSettings.from_config({
            "model_name": args.model_name, "alias": args.alias, "confidence": args.confidence, "iou": args.iou,
            "imgsz": args.imgsz, "max_image_bytes": args.max_image_bytes,
            "max_images_per_request": args.max_images_per_request,
        })
    except ValueError as exc:
        print(f"visionops serve: {exc}", file=sys.stderr)
        return 2

    import kserve

    from predictor.model import DefectDetector

    source = resolve_source(args)
    model = DefectDetector(settings.model_name, tracking_uri=args.tracking_uri, settings=settings,
                           download_dir=args.download_dir, device=args.device,
                           intra_op_threads=args.intra_op_threads, **source)
    try:
        model.load()
    except (ModelArtifactError, ValueError) as exc:
        print(f"visionops serve: cannot load the model from {next(iter(source.values()))}: {exc}", file=sys.stderr)
        return 1
    info = model.info.as_dict() if model.info else {}
    settings = model.settings or settings  # imgsz: the model's own
    print(f"visionops serve: model {settings.model_name!r} loaded from {info.get('source')} (registered name "
          f"{info.get('name')}, version {info.get('version')}, run {info.get('run_id')}, alias {info.get('alias')}); "
          f"thresholds {settings.as_dict()}", flush=True)
    print("\n".join(endpoint_lines(settings.model_name, args.http_port)), flush=True)
    kserve.ModelServer(
        http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers, max_threads=args.max_threads,
        max_asyncio_workers=args.max_asyncio_workers, enable_grpc=args.enable_grpc,
        enable_docs_url=args.enable_docs_url, enable_latency_logging=args.enable_latency_logging,
        access_log_format=args.access_log_format, event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive, ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
    ).start([model])
    return 0
