"""No phone-home: the documented opt-out switches of every library the project runs.

MLflow >= 3.2 starts a usage-telemetry client when ``mlflow`` is imported (it fetches its config from
``config.mlflow-telemetry.io``), and its server's UI asks for the same; Evidently and ultralytics have
switches of their own. :func:`disable` sets them in this process before any of those libraries is imported
(``visionops/__init__`` calls it), so every entry point of the project and every child process it starts
inherits them. The images (``docker/*.Dockerfile``) and the chart's MLflow server set the same variables; a test
keeps them in step with :data:`TELEMETRY_OFF`.

OpenVINO (the predictor's runtime, and the training Job's INT8 export through NNCF) has no such variable: its
``openvino-telemetry`` package sends a usage event to Google Analytics from a forked process unless ``$HOME/intel``
holds an opt-out file. :func:`disable` also makes that package unimportable in this process (every process of the
project imports ``visionops``), and OpenVINO and NNCF then use their own no-op stubs.
"""

from __future__ import annotations

import os
import sys
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


#: Telemetry packages kept out of this process (before their library is imported).
UNIMPORTABLE = ("openvino_telemetry",)


def disable(environ: MutableMapping[str, str] | None = None) -> None:
    """Set every switch of :data:`TELEMETRY_OFF` that is not set yet (an explicit setting wins), and make the
    packages of :data:`UNIMPORTABLE` unimportable in this process."""
    env = os.environ if environ is None else environ
    for name, value in TELEMETRY_OFF.items():
        env.setdefault(name, value)
    for module in UNIMPORTABLE:
        sys.modules.setdefault(module, None)  # None: `import openvino_telemetry` raises ImportError
