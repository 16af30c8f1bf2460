"""Prometheus metrics of the operator (drift results, training outcomes, promotions, rollouts).

Labels say ``resource_namespace`` rather than ``namespace`` so that Prometheus' own target label
is not overwritten when scraping the operator pod.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, start_http_server

DRIFT_SHARE = Gauge(
    "visionops_drift_share", "Share of drifted image features in the latest check of a DriftCheck",
    ["resource_namespace", "drift_check"],
)
DRIFT_DETECTED = Gauge(
    "visionops_drift_detected", "1 when the latest check of a DriftCheck found drift, else 0",
    ["resource_namespace", "drift_check"],
)
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
