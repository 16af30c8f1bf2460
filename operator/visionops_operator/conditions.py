"""Condition types, reasons and phases in one place, and a pure helper to set a condition."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

# TrainingRun condition types (usable with `kubectl wait --for=condition=<type>`).
TRAINED = "Trained"
REGISTERED = "Registered"
PROMOTED = "Promoted"
# DriftCheck condition types.
CHECKED = "Checked"
DRIFT_DETECTED = "DriftDetected"

# Phases.
PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
COMPLETED, SCHEDULED = "Completed", "Scheduled"
TERMINAL_PHASES = frozenset({SUCCEEDED, FAILED})

# Reasons.
JOB_CREATED = "JobCreated"
TRAINING = "Training"
TRAINING_SUCCEEDED = "TrainingSucceeded"
JOB_FAILED = "JobFailed"
RESULT_MISSING = "ResultMissing"
VERSION_REGISTERED = "VersionRegistered"
MLFLOW_UNAVAILABLE = "MLflowUnavailable"
GATE_PASSED = "GatePassed"
GATE_REJECTED = "GateRejected"
AWAITING_MANUAL = "AwaitingManualPromotion"
ROLLED_OUT = "RolledOut"
INFERENCE_SERVICE_NOT_FOUND = "InferenceServiceNotFound"
NO_INFERENCE_SERVICE = "NoInferenceService"
CHECK_RUNNING = "CheckRunning"
CHECK_COMPLETED = "CheckCompleted"
CHECK_SKIPPED = "CheckSkipped"
CHECK_FAILED = "CheckFailed"
DRIFT = "DriftFound"
NO_DRIFT = "NoDrift"


def now_iso() -> str:
    """Current UTC time in the RFC 3339 form Kubernetes uses."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def set_condition(
    conditions: Iterable[Mapping[str, Any]] | None,
    type_: str,
    status: bool | None,
    reason: str,
    message: str = "",
    generation: int | None = None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """Return ``conditions`` with ``type_`` set; lastTransitionTime changes only when status changes."""
    status_text = "Unknown" if status is None else ("True" if status else "False")
    out: list[dict[str, Any]] = []
    found = False
    for cond in conditions or []:
        cond = dict(cond)
        if cond.get("type") == type_:
            found = True
            changed = cond.get("status") != status_text
            cond.update(status=status_text, reason=reason, message=message[:1024])
            if changed or "lastTransitionTime" not in cond:
                cond["lastTransitionTime"] = now or now_iso()
            if generation is not None:
                cond["observedGeneration"] = generation
        out.append(cond)
    if not found:
        new = {
            "type": type_, "status": status_text, "reason": reason,
            "message": message[:1024], "lastTransitionTime": now or now_iso(),
        }
        if generation is not None:
            new["observedGeneration"] = generation
        out.append(new)
    return out


def condition_status(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> str | None:
    """Status text (``"True"``/``"False"``/``"Unknown"``) of one condition, ``None`` when absent."""
    for cond in conditions or []:
        if cond.get("type") == type_:
            return cond.get("status")
    return None
