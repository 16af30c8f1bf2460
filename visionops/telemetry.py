"""No phone-home: the documented opt-out switches of every library the project runs.

MLflow >= 3.2 starts a usage-telemetry client when ``mlflow`` is imported (it fetches its config from
``config.mlflow-telemetry.io``), and its server's UI asks for the same; Evidently and ultralytics have
switches of their own. :func:`disable` sets them in this process before any of those libraries is
imported (``visionops/__init__`` calls it), so every entry point of the project and every child process
it starts inherits them. The images (``docker/*.Dockerfile``) and the chart's MLflow server set the same
variables; a test keeps them in step with :data:`TELEMETRY_OFF`.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

#: Environment variable -> value that turns a library's telemetry off (each library's documented switch).
TELEMETRY_OFF: dict[str, str] = {
    "MLFLOW_DISABLE_TELEMETRY": "true",  # MLflow client, server and UI usage tracking
    "DO_NOT_TRACK": "true",  # MLflow ("true") and Evidently (any value)
    "ITERATIVE_DO_NOT_TRACK": "1",  # iterative-telemetry, which Evidently's UI uses
    "YOLO_OFFLINE": "1",  # ultralytics: no hub, no update checks
    "HF_HUB_OFFLINE": "1",  # huggingface_hub (pulled in by kserve): no hub calls
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


def disable(environ: MutableMapping[str, str] | None = None) -> None:
    """Set every switch of :data:`TELEMETRY_OFF` that is not set yet (an explicit setting wins)."""
    env = os.environ if environ is None else environ
    for name, value in TELEMETRY_OFF.items():
        env.setdefault(name, value)
