"""Operator configuration: command-line flags, each with an environment-variable fallback, parsed once at start.

``python -m visionops_operator`` parses its flags here and hands the result to the handlers in kopf's memo;
under ``kopf run -m visionops_operator.handlers`` (tests) the start-up handler parses the environment alone.
Nothing reads the environment at import time.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

PULL_POLICIES = ("Always", "IfNotPresent", "Never")


@dataclass(frozen=True)
class OperatorSettings:
    """Everything the operator needs that is not in a custom resource."""

    namespaces: tuple[str, ...] = ()
    """Namespaces to watch (with --all-namespaces: every one)."""
    all_namespaces: bool = False
    mlflow_uri: str = ""
    """Tracking URI the operator uses and passes to the Jobs it starts."""
    job_image: str = "visionops-job:0.1.0"
    """Default image of training and drift Jobs (a CR's spec.image overrides it)."""
    image_pull_policy: str = "IfNotPresent"
    job_service_account: str = ""
    """ServiceAccount of the Job pods (the namespace's default when empty)."""
    job_mlflow_secret: str = ""
    """Secret (keys username, password) in a Job's namespace with the jobs' MLflow account (empty: none)."""
    progress_seconds: float = 15.0
    """How often the epoch progress of training pods is read from MLflow."""
    mlflow_retry_seconds: float = 10.0
    """Delay before retrying a registration step whose MLflow call failed."""
    deploy_sync_seconds: float = 5.0
    """How often each ModelDeployment is compared with the MLflow production alias (bounds how long a move of
    the alias takes to reach the cluster)."""
    rollout_check_seconds: float = 2.0
    """How often a rollout in progress is checked (pods, the predictor's reported version)."""
    probe_predictors: bool = True
    """Ask the predictor pods themselves (their /metrics) which version they serve before calling a rollout done."""
    metrics_port: int = 8081
    """Port of the operator's Prometheus /metrics (0 disables it)."""
    liveness: str = "http://0.0.0.0:8080/healthz"
    peering: str = ""
    """Name of the kopf peering object the replicas share (KopfPeering per watched namespace, ClusterKopfPeering
    with --all-namespaces): the replica with the highest (random) priority acts, the others wait. Empty: one
    replica, no peering."""
    peering_lifetime: float = 10.0
    """Seconds a replica's peering record lives without a renewal: how long the others wait for one that died
    without saying goodbye (one that stops says so and is replaced at once)."""
    verbose: bool = False

    def public(self) -> dict[str, Any]:
        """The effective configuration, for the start-up log line."""
        return asdict(self)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(f"must be a positive number of seconds, got {text!r}")
    return value


def _port(text: str) -> int:
    value = int(text or 0)
    if not 0 <= value <= 65535:
        raise ValueError(f"must be a port number 0-65535, got {text!r}")
    return value


def _pull_policy(text: str) -> str:
    if text not in PULL_POLICIES:
        raise ValueError(f"must be one of {', '.join(PULL_POLICIES)}, got {text!r}")
    return text


def _flag(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


def _namespaces(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


# flag, field, environment variable, parse function, help (the default is appended)
_OPTIONS: tuple[tuple[str, str, str, Callable[[str], Any], str], ...] = (
    ("--mlflow-uri", "mlflow_uri", "VISIONOPS_MLFLOW_URI", str, "MLflow tracking URI, also given to the Jobs"),
    ("--job-image", "job_image", "VISIONOPS_JOB_IMAGE", str, "image of training and drift Jobs"),
    ("--image-pull-policy", "image_pull_policy", "VISIONOPS_IMAGE_PULL_POLICY", _pull_policy,
     "imagePullPolicy of the Jobs"),
    ("--job-service-account", "job_service_account", "VISIONOPS_JOB_SERVICE_ACCOUNT", str,
     "ServiceAccount of the Job pods (empty: the namespace's default)"),
    ("--job-mlflow-secret", "job_mlflow_secret", "VISIONOPS_JOB_MLFLOW_SECRET", str,
     "Secret (username, password) of the Jobs' MLflow account in their namespace (empty: no credentials)"),
    ("--progress-seconds", "progress_seconds", "VISIONOPS_PROGRESS_SECONDS", _positive,
     "seconds between two reads of the training pods' epoch progress from MLflow"),
    ("--mlflow-retry-seconds", "mlflow_retry_seconds", "VISIONOPS_MLFLOW_RETRY_SECONDS", _positive,
     "seconds before retrying a registration step whose MLflow call failed"),
    ("--deploy-sync-seconds", "deploy_sync_seconds", "VISIONOPS_DEPLOY_SYNC_SECONDS", _positive,
     "seconds between two comparisons of each ModelDeployment with the MLflow production alias"),
    ("--rollout-check-seconds", "rollout_check_seconds", "VISIONOPS_ROLLOUT_CHECK_SECONDS", _positive,
     "seconds between two checks of a rollout in progress"),
    ("--probe-predictors", "probe_predictors", "VISIONOPS_PROBE_PREDICTORS", _flag,
     "ask predictor pods which version they serve (true/false)"),
    ("--metrics-port", "metrics_port", "VISIONOPS_METRICS_PORT", _port, "port of /metrics (0: off)"),
    ("--liveness", "liveness", "VISIONOPS_LIVENESS", str, "kopf's liveness endpoint"),
    ("--peering", "peering", "VISIONOPS_PEERING", str,
     "kopf peering object shared by the replicas: one acts, the others wait (empty: one replica)"),
    ("--peering-lifetime", "peering_lifetime", "VISIONOPS_PEERING_LIFETIME", _positive,
     "seconds a replica that died silently still counts (how long the others wait for it)"),
)


def parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The command line; every default comes from ``environ`` when the variable is set."""
    defaults = OperatorSettings()
    cli = argparse.ArgumentParser(prog="visionops-operator",
                                  description="Run the VisionOps operator (TrainingRun, DriftCheck, ModelDeployment).")

    def env(name: str, convert: Callable[[str], Any], fallback: Any) -> Any:
        raw = environ.get(name)
        if raw in (None, ""):
            return fallback
        try:
            return convert(raw)
        except ValueError as exc:
            cli.error(f"environment variable {name}: {exc}")

    cli.add_argument("-n", "--namespace", dest="namespaces", action="append",
                     help="namespace to watch, repeatable (env VISIONOPS_WATCH_NAMESPACES, comma-separated)")
    cli.add_argument("-A", "--all-namespaces", action="store_true",
                     default=env("VISIONOPS_ALL_NAMESPACES", _flag, False),
                     help="watch every namespace (env VISIONOPS_ALL_NAMESPACES; default: off)")
    for flag, field, name, convert, text in _OPTIONS:
        default = env(name, convert, getattr(defaults, field))
        cli.add_argument(flag, dest=field, type=convert, default=default,
                         help=f"{text} (env {name}; default: {getattr(defaults, field)!r})")
    cli.add_argument("--verbose", action="store_true", default=env("VISIONOPS_VERBOSE", _flag, False),
                     help="verbose kopf logs (env VISIONOPS_VERBOSE)")
    cli.set_defaults(env_namespaces=env("VISIONOPS_WATCH_NAMESPACES", _namespaces, ()))
    return cli


def parse(argv: Sequence[str] | None, environ: Mapping[str, str]) -> OperatorSettings:
    """Settings from flags, falling back to ``environ``; exits with status 2 and a message on a bad value."""
    args = vars(parser(environ).parse_args(argv))
    env_namespaces = args.pop("env_namespaces")
    args["namespaces"] = tuple(args["namespaces"] or env_namespaces)
    return OperatorSettings(**args)
