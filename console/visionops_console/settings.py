"""Console configuration: command-line flags, each with an environment-variable fallback, parsed once at start.

Nothing reads the environment at import time; :func:`parse` returns a frozen :class:`ConsoleSettings` that the
app factory receives (tests build one directly).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8090
DEFAULT_MODEL = "vision-defect-detector"  # the CRD's spec.model.name default and the chart's predictor.modelName
DEFAULT_DATASET_PVC = "visionops-datasets"  # the chart's dataset PVC (manifests/samples use it)
DEFAULT_INFERENCE_SERVICE = "visionops-predictor"
SIGN_IN_MODES = ("token", "none")


@dataclass(frozen=True)
class ConsoleSettings:
    """Everything the console needs that is not in a custom resource or MLflow."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    kubeconfig: str = ""
    """Kubeconfig file; empty: in-cluster config inside a pod, else the client's default (~/.kube/config)."""
    namespace: str = ""
    """Namespace of the TrainingRuns and DriftChecks; empty: the kubeconfig context's (or the pod's) namespace."""
    mlflow_uri: str = ""
    datasets: str = ""
    """Folder of the dataset volume (VISION trees under it: spec.dataset.path is relative to it)."""
    dataset_pvc: str = DEFAULT_DATASET_PVC
    """The PersistentVolumeClaim a TrainingRun created here mounts (spec.dataset.pvc)."""
    model_name: str = DEFAULT_MODEL
    inference_service: str = DEFAULT_INFERENCE_SERVICE
    """InferenceService a promoted model is rolled out to (spec.promotion.inferenceService), and the one shown."""
    predictor_url: str = ""
    """Base URL of the predictor for "try it" (empty: the InferenceService's status.address.url)."""
    read_only: bool = False
    """Refuse every write (create a TrainingRun, stop, check now): the console only reads."""
    sign_in: str = "none"
    """``token``: people sign in with their own Kubernetes bearer token and every change is made as them (RBAC
    decides; until they sign in the console only reads). ``none``: changes are made with the console's own
    identity (a person's own kubeconfig on a laptop)."""
    max_upload_bytes: int = 10 * 1024 * 1024
    max_upload_pixels: int = 40_000_000
    mlflow_ui_url: str = ""
    """Where people open MLflow's own UI (links only; empty: no links)."""
    grafana_url: str = ""
    """Where people open Grafana (a link on the deploy page; empty: none)."""
    prometheus_url: str = ""
    """Prometheus the Production page reads (detections per class, images, latency, errors, alerts; empty: the page
    says how to connect one)."""
    request_timeout: float = 10.0
    """Seconds a Kubernetes or predictor call may take before the page says it did not answer."""
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]")
    """Host headers the console answers (entries without a port: any port; ``*``: all)."""

    def public(self) -> dict[str, Any]:
        """The effective configuration, for the start-up log line."""
        return asdict(self)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"must be a port number 0-65535, got {text!r}")
    return value


def _flag(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


def _megabytes(text: str) -> int:
    value = float(text)
    if not 0 < value <= 1024:
        raise ValueError(f"must be a size in MB in (0, 1024], got {text!r}")
    return int(value * 1024 * 1024)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(f"must be a positive number, got {text!r}")
    return value


def _hosts(text: str) -> tuple[str, ...]:
    hosts = tuple(h.strip() for h in text.split(",") if h.strip())
    if not hosts:
        raise ValueError("must list at least one host (comma-separated), or '*'")
    return hosts


def _sign_in(text: str) -> str:
    if text not in SIGN_IN_MODES:
        raise ValueError(f"must be one of {', '.join(SIGN_IN_MODES)}, got {text!r}")
    return text


def _folder(text: str) -> str:
    if text and not Path(text).is_dir():
        raise ValueError(f"{text!r} is not a folder")
    return text


# flag, field, environment variables (first set wins), parse function, help (the default is appended)
_OPTIONS: tuple[tuple[str, str, tuple[str, ...], Callable[[str], Any], str], ...] = (
    ("--host", "host", ("VISIONOPS_CONSOLE_HOST",), str, "address to listen on (0.0.0.0 in a pod)"),
    ("--port", "port", ("VISIONOPS_CONSOLE_PORT",), _port, "port to listen on"),
    ("--kubeconfig", "kubeconfig", ("KUBECONFIG",), str,
     "kubeconfig file (in a pod: the ServiceAccount's in-cluster config)"),
    ("--namespace", "namespace", ("VISIONOPS_CONSOLE_NAMESPACE", "POD_NAMESPACE"), str,
     "namespace of the TrainingRuns and DriftChecks (empty: the kubeconfig context's)"),
    ("--mlflow-uri", "mlflow_uri", ("VISIONOPS_MLFLOW_URI", "MLFLOW_TRACKING_URI"), str, "MLflow tracking URI"),
    ("--datasets", "datasets", ("VISIONOPS_CONSOLE_DATASETS",), _folder,
     "folder of the dataset volume; VISION trees lie under it (spec.dataset.path)"),
    ("--dataset-pvc", "dataset_pvc", ("VISIONOPS_CONSOLE_DATASET_PVC",), str,
     "PVC a TrainingRun created here mounts (spec.dataset.pvc)"),
    ("--model-name", "model_name", ("VISIONOPS_CONSOLE_MODEL_NAME",), str, "registered model shown first"),
    ("--inference-service", "inference_service", ("VISIONOPS_CONSOLE_INFERENCE_SERVICE",), str,
     "InferenceService shown on the deploy page and prefilled in the training form"),
    ("--predictor-url", "predictor_url", ("VISIONOPS_CONSOLE_PREDICTOR_URL",), str,
     "predictor base URL for 'try it' (empty: the InferenceService's address)"),
    ("--read-only", "read_only", ("VISIONOPS_CONSOLE_READ_ONLY",), _flag,
     "refuse every write (create, stop, check now)"),
    ("--sign-in", "sign_in", ("VISIONOPS_CONSOLE_SIGN_IN",), _sign_in,
     "token: people sign in with their Kubernetes token and change things as themselves (read-only until then); "
     "none: changes use the console's own identity"),
    ("--max-upload-mb", "max_upload_bytes", ("VISIONOPS_CONSOLE_MAX_UPLOAD_MB",), _megabytes,
     "largest image accepted by 'try it', in MB"),
    ("--mlflow-ui-url", "mlflow_ui_url", ("VISIONOPS_CONSOLE_MLFLOW_UI_URL",), str,
     "MLflow UI address people can open (links only)"),
    ("--grafana-url", "grafana_url", ("VISIONOPS_CONSOLE_GRAFANA_URL",), str, "Grafana address (a link)"),
    ("--prometheus-url", "prometheus_url", ("VISIONOPS_CONSOLE_PROMETHEUS_URL",), str,
     "Prometheus that scrapes the predictor, for the Production page (empty: the page says how to connect one)"),
    ("--request-timeout", "request_timeout", ("VISIONOPS_CONSOLE_REQUEST_TIMEOUT",), _positive,
     "seconds a Kubernetes or predictor call may take"),
    ("--allowed-hosts", "allowed_hosts", ("VISIONOPS_CONSOLE_ALLOWED_HOSTS",), _hosts,
     "comma-separated Host headers the console answers (no port: any port; '*': all)"),
)


def parse(argv: Sequence[str] | None, environ: Mapping[str, str]) -> ConsoleSettings:
    """Settings from ``argv`` (flags win) and ``environ``; ``SystemExit(2)`` with the reason on a bad value."""
    defaults = ConsoleSettings()
    parser = argparse.ArgumentParser(
        prog="visionops console",
        description="Serve the VisionOps Console (six steps + drift) over the custom resources and MLflow.",
    )
    values: dict[str, Any] = {}
    for flag, field, env_names, convert, help_ in _OPTIONS:
        default = getattr(defaults, field)
        shown = f"{default / 1024 / 1024:g}" if field == "max_upload_bytes" else default
        shown = ",".join(shown) if isinstance(shown, tuple) else shown
        env_help = " or ".join(f"${name}" for name in env_names)
        if convert is _flag:
            parser.add_argument(flag, dest=field, action="store_true", default=None,
                                help=f"{help_} ({env_help}; default: off)")
        else:
            parser.add_argument(flag, dest=field, default=None, metavar=field.upper().replace("_BYTES", "_MB"),
                                help=f"{help_} ({env_help}; default: {shown!r})")
    args = parser.parse_args(list(argv) if argv is not None else None)
    for flag, field, env_names, convert, _ in _OPTIONS:
        raw = getattr(args, field)
        source = flag
        if raw is None:
            env_name = next((name for name in env_names if environ.get(name)), None)
            if env_name is None:
                continue
            raw, source = environ[env_name], f"${env_name}"
        if raw is True:
            values[field] = True
            continue
        try:
            values[field] = convert(str(raw))
        except ValueError as exc:
            parser.error(f"{source}: {exc}")
    return ConsoleSettings(**values)
