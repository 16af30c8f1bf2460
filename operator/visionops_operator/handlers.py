"""kopf entry module: settings at start-up, then the TrainingRun and DriftCheck handlers."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from . import GROUP, drift, metrics, training  # noqa: F401 - importing registers the handlers
from .settings import current as current_settings


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: logging.Logger, **_: Any) -> None:
    """Own annotations and finalizer under our domain; log the effective configuration."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 8
    # Fail MLflow calls fast: the handlers retry with their own backoff (TemporaryError).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    config = current_settings()
    metrics.serve(config.metrics_port)
    logger.info(f"visionops operator configuration: {config.public()}")


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: its ServiceAccount; elsewhere: ``$KUBECONFIG`` as it is at login time."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
