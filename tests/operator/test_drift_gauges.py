"""The drift gauges speak for the DriftChecks that exist, from the acting replica alone (``metrics.DriftGauges``,
``drift.latest_results``); ``tests/e2e/test_e2e.py`` sees the alert resolve with two replicas."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY
from visionops_operator import drift, metrics


def sample(name: str, namespace: str, check: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"resource_namespace": namespace, "drift_check": check})


def check(namespace: str, name: str, status: dict) -> dict:
    return {"metadata": {"namespace": namespace, "name": name}, "status": status}


def test_latest_results_are_the_checks_that_have_one() -> None:
    checks = [check("a", "drifted", {"driftDetected": True, "driftShare": 0.75}),
              check("a", "clean", {"driftDetected": False, "driftShare": 0.1}),
              check("b", "never-ran", {"phase": "Pending"}), check("b", "no-status", {})]
    assert drift.latest_results(checks) == {("a", "drifted"): (0.75, True), ("a", "clean"): (0.1, False)}


def test_a_deleted_check_and_a_standby_replica_export_nothing() -> None:
    gauges = metrics.DriftGauges()
    gauges.replace({("gauges-ns", "kept"): (0.8, True), ("gauges-ns", "deleted"): (0.9, True)}, time.monotonic())
    assert sample("visionops_drift_detected", "gauges-ns", "deleted") == 1
    gauges.replace({("gauges-ns", "kept"): (0.2, False)}, time.monotonic())  # the next pass: one gone, one clean
    assert sample("visionops_drift_detected", "gauges-ns", "deleted") is None
    assert sample("visionops_drift_share", "gauges-ns", "deleted") is None
    assert sample("visionops_drift_detected", "gauges-ns", "kept") == 0
    assert sample("visionops_drift_share", "gauges-ns", "kept") == 0.2
    gauges.replace({}, time.monotonic())  # this replica went standby: the acting one speaks
    assert sample("visionops_drift_detected", "gauges-ns", "kept") is None


def test_a_check_that_ends_during_a_pass_is_not_overwritten_by_the_older_listing() -> None:
    gauges = metrics.DriftGauges()
    listed_at = time.monotonic()  # the pass lists the checks: "fresh" still drifted, "new" does not exist yet
    gauges.set("race-ns", "fresh", 0.1, False)  # meanwhile a check of each ends (the handler's export)
    gauges.set("race-ns", "new", 0.9, True)
    gauges.replace({("race-ns", "fresh"): (0.8, True)}, listed_at)
    assert sample("visionops_drift_detected", "race-ns", "fresh") == 0
    assert sample("visionops_drift_detected", "race-ns", "new") == 1
    gauges.replace({("race-ns", "fresh"): (0.1, False)}, time.monotonic())  # the next pass: "new" was deleted
    assert sample("visionops_drift_detected", "race-ns", "new") is None
