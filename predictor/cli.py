"""``visionops serve`` / ``python -m predictor``: load the detector and run the KServe ModelServer.

Model source, first match wins: ``--model-dir``; ``--model-uri`` (``models:/<name>@<alias>``,
``models:/<name>/<version>`` or ``models:/<name>`` meaning ``@--alias``; env ``VISIONOPS_MODEL_URI``,
the variable the operator patches on promotion); with a tracking URI
(``--tracking-uri`` or ``MLFLOW_TRACKING_URI``) ``models:/<--model_name>@<--alias>``; else
``/mnt/models`` (where KServe's storage initializer puts a ``storageUri``).
All KServe ModelServer flags (``--http_port``, ``--model_name``...) are accepted; ``--model_name`` (the
name in the URL paths) defaults to ``model_name`` of configs/serving.yaml, ``--timeout-keep-alive`` (the
idle timeout) to its ``idle_timeout_seconds``; ``--workers`` must stay 1 (the transport limits live in the
one server process). Each limit flag (``--max-body-bytes``...) also reads ``VISIONOPS_<NAME>`` (the chart's), as do
``--runtime``, ``--model-poll-seconds`` and ``--intra-op-threads``.

A source with no model yet (alias not set, MLflow not reachable) is not a crash: the server starts, live and not
ready, its readiness says what to do, and it looks again every ``--model-poll-seconds`` until a version is there
(0: exit 1 instead). A model that is there but cannot be loaded exits 1 with the reason.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from predictor.artifacts import ModelArtifactError, ModelUnavailable
from predictor.runtimes import RUNTIMES
from predictor.settings import ServingSettings
from visionops.contract import MODEL_URI_ENV, PREDICTOR_LINE_PREFIX

if TYPE_CHECKING:
    from predictor.model import DefectDetector

KSERVE_MOUNT = "/mnt/models"
THREADS_ENV = "VISIONOPS_INTRA_OP_THREADS"
RUNTIME_ENV = "VISIONOPS_RUNTIME"
POLL_ENV = "VISIONOPS_MODEL_POLL_SECONDS"
# MLflow's HTTP retries, unless set: one look at the registry then takes seconds (its default, minutes), and a
# failed look is repeated by the model poll.
MLFLOW_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"}
IDLE_TIMEOUT_ENV = "VISIONOPS_IDLE_TIMEOUT_SECONDS"  # default of KServe's --timeout-keep-alive
# limits on what a client may send: setting -> (type, help); flag --<setting with dashes>, env VISIONOPS_<SETTING>
LIMIT_FLAGS: dict[str, tuple[type, str]] = {
    "max_image_bytes": (int, "largest decoded image accepted (bytes; 413 above)"),
    "max_images_per_request": (int, "most images accepted in one request (413 above)"),
    "max_image_pixels": (int, "most pixels of one image, read from its header before decoding (413 above)"),
    "max_request_pixels": (int, "most pixels of all images of one request together (413 above)"),
    "max_parallel_images": (int, "images decoded and run at once over all requests (bounds the memory of "
                                 "concurrent decoding)"),
    "max_body_bytes": (int, "largest request body (413 above, before it is read)"),
    "max_inflight_body_bytes": (int, "request bodies in flight at once over all connections (503 + Retry-After "
                                     "above, before the body is read); 0: from the container's memory limit"),
    "max_header_bytes": (int, "longest request line and headers together (431 above)"),
    "max_header_count": (int, "most header fields in a request (431 above)"),
    "read_timeout_seconds": (float, "seconds to receive a whole request from its first byte (408 after)"),
}


def limit_env(setting: str) -> str:
    """The environment variable of a limit flag: ``VISIONOPS_<SETTING>``."""
    return f"VISIONOPS_{setting.upper()}"


def build_parser(defaults: ServingSettings) -> argparse.ArgumentParser:
    """Own flags on top of ``kserve.model_server.parser``; defaults shown are configs/serving.yaml's."""
    from kserve import model_server

    parser = argparse.ArgumentParser(
        prog="visionops serve", description="Serve the VisionOps defect detector (KServe V1 + V2).",
        parents=[model_server.parser], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.set_defaults(model_name=defaults.model_name,
                        timeout_keep_alive=os.environ.get(IDLE_TIMEOUT_ENV) or defaults.idle_timeout_seconds)
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
    parser.add_argument("--runtime", choices=RUNTIMES, default=os.environ.get(RUNTIME_ENV) or defaults.runtime,
                        help=f"what runs best.onnx on the CPU (env {RUNTIME_ENV})")
    parser.add_argument("--model-poll-seconds", type=float,
                        default=os.environ.get(POLL_ENV) or defaults.model_poll_seconds,
                        help="while the source has no model yet: stay up, not ready, and look again this often "
                             f"(0: exit 1) (env {POLL_ENV})")
    parser.add_argument("--confidence", type=float, default=defaults.confidence, help="minimum box confidence")
    parser.add_argument("--iou", type=float, default=defaults.iou, help="NMS IoU threshold")
    parser.add_argument("--imgsz", type=int, default=defaults.imgsz,
                        help="expected inference image size (px); the ONNX model's static input size wins (a "
                             "warning is logged when they differ)")
    for setting, (kind, text) in LIMIT_FLAGS.items():
        env = limit_env(setting)
        parser.add_argument(f"--{setting.replace('_', '-')}", type=kind,
                            default=os.environ.get(env) or getattr(defaults, setting), help=f"{text} (env {env})")
    parser.add_argument("--download-dir", default=None,
                        help="where MLflow artifacts are downloaded (None: a new temp dir)")
    parser.add_argument("--device", choices=["cpu"], default=None,
                        help="kept for compatibility: the model runs on the runtime's CPU device")
    parser.add_argument("--intra-op-threads", type=_threads, default=os.environ.get(THREADS_ENV) or "0",
                        help="threads per inference (either runtime); 0: the container's CPU limit (cgroup cpu.max, "
                             f"rounded up), else the cores it may run on (env {THREADS_ENV})")
    return parser


def _threads(value: str) -> int:
    """``--intra-op-threads``: an integer >= 0."""
    try:
        threads = int(value)
    except ValueError:
        threads = -1
    if threads < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0 (0: the container's CPU limit), got {value!r}")
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


def loaded_line(model: DefectDetector) -> str:
    """The line printed once the model is loaded: where from, which version, on what, the thresholds."""
    info = model.info.as_dict() if model.info else {}
    session = model.session
    runtime = (f"{session.runtime} {session.version}, {session.precision.upper()} ({session.threads} threads per "
               f"inference)" if session else "?")
    return (f"{PREDICTOR_LINE_PREFIX}model {model.name!r} loaded from {info.get('source')} (registered name "
            f"{info.get('name')}, version {info.get('version')}, run {info.get('run_id')}, alias {info.get('alias')}) "
            f"on {runtime}; thresholds {model.settings.as_dict() if model.settings else {}}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    defaults = ServingSettings.from_config()
    args = build_parser(defaults).parse_args(argv)
    try:
        settings = ServingSettings.from_config({
            "model_name": args.model_name, "alias": args.alias, "runtime": args.runtime,
            "model_poll_seconds": args.model_poll_seconds, "confidence": args.confidence, "iou": args.iou,
            "imgsz": args.imgsz, "idle_timeout_seconds": args.timeout_keep_alive,
            **{setting: getattr(args, setting) for setting in LIMIT_FLAGS},
        })
    except ValueError as exc:
        print(f"{PREDICTOR_LINE_PREFIX}{exc}", file=sys.stderr)
        return 2

    from predictor.admission import inflight_budget, memory_limit, request_memory_bound
    from predictor.internals import check as check_internals
    from predictor.model import DefectDetector
    from predictor.server import PredictorServer

    problem = check_internals()  # a dependency bump must not turn a limit off silently
    if problem:
        print(f"{PREDICTOR_LINE_PREFIX}{problem}", file=sys.stderr)
        return 2

    for name, value in MLFLOW_RETRIES.items():
        os.environ.setdefault(name, value)
    source = resolve_source(args)
    model = DefectDetector(settings.model_name, tracking_uri=args.tracking_uri, settings=settings,
                           download_dir=args.download_dir, device=args.device,
                           intra_op_threads=args.intra_op_threads, **source)
    try:
        model.load()
        print(loaded_line(model), flush=True)
    except ModelUnavailable as exc:
        if not settings.model_poll_seconds:
            print(f"{PREDICTOR_LINE_PREFIX}no model at {next(iter(source.values()))}: {exc}", file=sys.stderr)
            return 1
        model.wait_for_model(exc, settings.model_poll_seconds, on_loaded=lambda: print(loaded_line(model), flush=True))
    except (ModelArtifactError, ValueError) as exc:
        print(f"{PREDICTOR_LINE_PREFIX}cannot load the model from {next(iter(source.values()))}: {exc}",
              file=sys.stderr)
        return 1
    bound = request_memory_bound(settings) >> 20
    limit = memory_limit()
    budget = inflight_budget(settings, limit)
    print(f"{PREDICTOR_LINE_PREFIX}one request adds at most about {bound} MiB to the idle server (its body and one "
          f"image at the limits; images decoded at once: {settings.max_parallel_images}); request bodies in flight "
          f"at once: at most {budget >> 20} MiB (" + ("max_inflight_body_bytes" if settings.max_inflight_body_bytes
          else f"from the memory limit of {limit >> 20} MiB" if limit else "no memory limit: 4 bodies") + "), more "
          "wait for a 503 with Retry-After", flush=True)
    print("\n".join(endpoint_lines(settings.model_name, args.http_port)), flush=True)
    try:
        server = PredictorServer(
            settings, http_port=args.http_port, grpc_port=args.grpc_port, workers=args.workers,
            max_threads=args.max_threads, max_asyncio_workers=args.max_asyncio_workers, enable_grpc=args.enable_grpc,
            enable_docs_url=args.enable_docs_url, enable_latency_logging=args.enable_latency_logging,
            access_log_format=args.access_log_format, event_loop=args.event_loop, ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile, inflight_bytes=budget,
        )
    except ValueError as exc:
        print(f"{PREDICTOR_LINE_PREFIX}{exc}", file=sys.stderr)
        return 2
    server.start([model])
    return 0
