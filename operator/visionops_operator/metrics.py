"""Prometheus metrics of the operator (drift results, training outcomes, promotions, rollouts).

Labels say ``resource_namespace`` rather than ``namespace`` so that Prometheus' own target label
is not overwritten when scraping the operator pod.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from prometheus_client import Counter, Gauge, start_http_server

DRIFT_SHARE = Gauge(
    "visionops_drift_share", "Share of drifted image features in the latest check of a DriftCheck",
    ["resource_namespace", "drift_check"],
)
DRIFT_DETECTED = Gauge(
    "visionops_drift_detected", "1 when the latest check of a DriftCheck found drift, else 0",
    ["resource_namespace", "drift_check"],
)


class DriftGauges:
    """The drift gauges of every DriftCheck with a result, exported by the acting replica alone: a standby's stale
    1 would keep ``max`` (the alert, the dashboard) at "drift" after a clean check; a deleted check's series goes."""

    def __init__(self) -> None:
        self._set_at: dict[tuple[str, str], float] = {}  # monotonic time of each exported series' last value
        self._lock = threading.Lock()

    def set(self, namespace: str, name: str, share: float, detected: bool) -> None:
        with self._lock:
            self._set(namespace, name, share, detected)

    def replace(self, results: Mapping[tuple[str, str], tuple[float, bool]], as_of: float) -> None:
        """Exactly ``results`` (``{(namespace, name): (share, detected)}``, read at monotonic time ``as_of``; ``{}``
        clears them), except the series a check's end set after ``as_of``: they are newer than the listing."""
        with self._lock:
            newer = {key for key, at in self._set_at.items() if at > as_of}
            for gone in set(self._set_at) - set(results) - newer:
                DRIFT_SHARE.remove(*gone)
                DRIFT_DETECTED.remove(*gone)
                del self._set_at[gone]
            for (namespace, name), (share, detected) in results.items():
                if (namespace, name) not in newer:
                    self._set(namespace, name, share, detected)

    def _set(self, namespace: str, name: str, share: float, detected: bool) -> None:
        DRIFT_SHARE.labels(namespace, name).set(share)
        DRIFT_DETECTED.labels(namespace, name).set(1 if detected else 0)
        self._set_at[(namespace, name)] = time.monotonic()


DRIFT = DriftGauges()
RETRAININGS = Counter(
    "visionops_retrainings_total", "TrainingRuns started by DriftChecks", ["resource_namespace", "drift_check"],
)
TRAINING_RUNS = Counter(
    "visionops_trainingruns_finished_total", "TrainingRuns that reached a final phase",
    ["resource_namespace", "phase"],
)
PROMOTIONS = Counter(
    "visionops_promotion_decisions_total", "Promotion gate decisions", ["resource_namespace", "decision"],
)
ROLLOUTS = Counter(
    "visionops_rollouts_finished_total", "Rollouts of a ModelDeployment that ended, by outcome (Succeeded, Failed)",
    ["resource_namespace", "model_deployment", "outcome"],
)


def serve(port: int) -> None:
    """Expose /metrics on ``port`` (0 disables it)."""
    if port:
        start_http_server(port)
