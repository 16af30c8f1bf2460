"""Prometheus metrics of the operator (drift results, training outcomes, promotions, rollouts).

Labels say ``resource_namespace`` rather than ``namespace`` so that Prometheus' own target label
is not overwritten when scraping the operator pod.
"""

from __future__ import annotations

import threading
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
        self._exported: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def set(self, namespace: str, name: str, share: float, detected: bool) -> None:
        with self._lock:
            DRIFT_SHARE.labels(namespace, name).set(share)
            DRIFT_DETECTED.labels(namespace, name).set(1 if detected else 0)
            self._exported.add((namespace, name))

    def replace(self, results: Mapping[tuple[str, str], tuple[float, bool]]) -> None:
        """Exactly ``results`` (``{(namespace, name): (share, detected)}``); ``{}`` clears them."""
        with self._lock:
            for gone in self._exported - set(results):
                DRIFT_SHARE.remove(*gone)
                DRIFT_DETECTED.remove(*gone)
            self._exported = set()
        for (namespace, name), (share, detected) in results.items():
            self.set(namespace, name, share, detected)


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
