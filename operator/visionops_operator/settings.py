"""Operator configuration: flags and environment, logged once at start."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from exc


@dataclass(frozen=True)
class OperatorSettings:
    """Everything the operator needs that is not in a custom resource."""

    mlflow_uri: str = field(default_factory=lambda: os.environ.get("VISIONOPS_MLFLOW_URI", ""))
    """Tracking URI the operator uses and passes to the Jobs it starts."""
    job_image: str = field(default_factory=lambda: os.environ.get("VISIONOPS_JOB_IMAGE", "visionops-job:0.1.0"))
    """Default image of training and drift Jobs (a CR's spec.image overrides it)."""
    image_pull_policy: str = field(
        default_factory=lambda: os.environ.get("VISIONOPS_IMAGE_PULL_POLICY", "IfNotPresent")
    )
    job_service_account: str = field(default_factory=lambda: os.environ.get("VISIONOPS_JOB_SERVICE_ACCOUNT", ""))
    """ServiceAccount of the Job pods (the namespace's default when empty)."""
    poll_seconds: float = field(default_factory=lambda: _env_float("VISIONOPS_POLL_SECONDS", 5.0))
    """How often a running TrainingRun or DriftCheck is reconciled."""
    progress_seconds: float = field(default_factory=lambda: _env_float("VISIONOPS_PROGRESS_SECONDS", 15.0))
    """Least time between two reads of a run's epoch progress from MLflow."""
    metrics_port: int = field(default_factory=lambda: int(os.environ.get("VISIONOPS_METRICS_PORT", "8081") or 0))
    """Port of the operator's Prometheus /metrics (0 disables it)."""
    mlflow_retry_seconds: float = field(default_factory=lambda: _env_float("VISIONOPS_MLFLOW_RETRY_SECONDS", 10.0))
    """First delay before retrying an MLflow call that failed (doubles up to 5 minutes)."""

    def public(self) -> dict[str, object]:
        """The effective configuration, for the start-up log line."""
        return asdict(self)


def current() -> OperatorSettings:
    """Settings read from the environment now."""
    return OperatorSettings()
