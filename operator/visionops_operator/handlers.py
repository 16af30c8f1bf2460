"""kopf entry module: settings at start-up, then the TrainingRun and DriftCheck handlers."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from . import GROUP, drift, training  # noqa: F401 - importing registers the handlers
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
    logger.info(f"visionops operator configuration: {current_settings().public()}")
