"""Condition types, reasons and phases in one place, and pure helpers to set and read conditions.

Every reason is declared with :func:`_reason`, which records its one-line meaning in :data:`REASONS`;
docs/operator.md and the CRDs' ``status.conditions`` descriptions name each one (a test checks it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

# Condition types (usable with `kubectl wait --for=condition=<type>`).
READY = "Ready"  # both kinds: Unknown while in progress, True when done, False when it failed
TRAINED = "Trained"
REGISTERED = "Registered"
PROMOTED = "Promoted"
CHECKED = "Checked"  # DriftCheck
DRIFT_DETECTED = "DriftDetected"  # DriftCheck

# TrainingRun phases; Succeeded and Failed are also its terminal condition types.
PENDING, RUNNING, REGISTERING, SUCCEEDED, FAILED = "Pending", "Running", "Registering", "Succeeded", "Failed"
ROLLING_OUT_PHASE = "RollingOut"  # TrainingRun: promoted, waiting for its ModelDeployment to serve the version
TERMINAL_PHASES = frozenset({SUCCEEDED, FAILED})
# DriftCheck phases (besides Pending, Running and Failed).
COMPLETED, SCHEDULED = "Completed", "Scheduled"

TRAINING_RUN, DRIFT_CHECK, MODEL_DEPLOYMENT = "TrainingRun", "DriftCheck", "ModelDeployment"
REASONS: dict[str, dict[str, str]] = {TRAINING_RUN: {}, DRIFT_CHECK: {}, MODEL_DEPLOYMENT: {}}
"""Kind -> every reason the operator writes into its conditions or Events -> what it means."""


def _reason(name: str, meaning: str, *kinds: str) -> str:
    for kind in kinds or (TRAINING_RUN,):
        REASONS[kind][name] = meaning
    return name


# TrainingRun
JOB_CREATED = _reason("JobCreated", "the Job was created; its pod has not started yet", TRAINING_RUN, DRIFT_CHECK)
TRAINING = _reason("Training", "the training pod runs; status.progress follows its epochs in MLflow")
TRAINING_SUCCEEDED = _reason("TrainingSucceeded", "the Job succeeded and its MLflow run and metrics are recorded")
REGISTERING_VERSION = _reason("Registering", "the operator registers the model version and applies the gate")
MLFLOW_UNAVAILABLE = _reason("MLflowUnavailable", "an MLflow call failed; the operator retries with backoff")
MLFLOW_NOT_CONFIGURED = _reason("MLflowNotConfigured", "the operator has no MLflow tracking URI, so it cannot register")
KUBERNETES_UNAVAILABLE = _reason(
    "KubernetesUnavailable", "a Kubernetes API call failed in a way a retry may heal (5xx, timeout, conflict, "
    "throttled); the operator retries with backoff", TRAINING_RUN, MODEL_DEPLOYMENT)
KUBERNETES_REFUSED = _reason(
    "KubernetesRefused", "the Kubernetes API refused a write for good (forbidden by RBAC, invalid, not found); "
    "status.message has its words; not retried", TRAINING_RUN, MODEL_DEPLOYMENT)
REGISTRATION_FAILED = _reason(
    "RegistrationFailed", "MLflow refused the run's model (run not FINISHED, or model/ artifacts missing)")
VERSION_REGISTERED = _reason("VersionRegistered", "the model version is registered in MLflow")
GATE_PASSED = _reason("GatePassed", "the version passed the gate and is production; no InferenceService to roll out")
ROLLED_OUT = _reason("RolledOut", "the version is production and spec.promotion.inferenceService serves it")
ROLLING_OUT = _reason("RollingOut", "the version is production; the InferenceService moves to it (not serving yet)",
                      TRAINING_RUN, MODEL_DEPLOYMENT)
ROLLOUT_FAILED = _reason("RolloutFailed", "the version did not become ready in time (status.message has the "
                         "predictor's error); production went back to the version that served before",
                         TRAINING_RUN, MODEL_DEPLOYMENT)
ROLLOUT_SUPERSEDED = _reason("RolloutSuperseded", "another version was put into production before this one served")
INFERENCE_SERVICE_NOT_FOUND = _reason(
    "InferenceServiceNotFound", "the version is production but spec.promotion.inferenceService does not exist")
GATE_REJECTED = _reason("GateRejected", "the version failed the promotion gate; production is unchanged")
AWAITING_MANUAL = _reason(
    "AwaitingManualPromotion", "spec.promotion.mode is manual: annotate visionops.io/promote=true to promote")
JOB_FAILED = _reason("JobFailed", "the Job failed; status.message has the job's error or the container's reason")
JOB_DELETED = _reason("JobDeleted", "the Job was deleted before it finished")
TRAINING_RESUMED = _reason(
    "TrainingResumed", "a retried training pod continued the MLflow run after its checkpoint's epoch (an Event "
    "only; status.resumedFromEpoch)")
RESULT_MISSING = _reason("ResultMissing", "the Job succeeded but left no result and MLflow has no run for it")
# DriftCheck
CHECK_RUNNING = _reason("CheckRunning", "the check Job of the current generation has not finished yet", DRIFT_CHECK)
CHECK_COMPLETED = _reason("CheckCompleted", "the latest check finished with a result", DRIFT_CHECK)
CHECK_SKIPPED = _reason(
    "CheckSkipped", "the latest check was skipped: too few reference or current images", DRIFT_CHECK)
CHECK_FAILED = _reason("CheckFailed", "the latest check Job failed; status.message says why", DRIFT_CHECK)
DRIFT = _reason("DriftFound", "the latest check found dataset drift", DRIFT_CHECK)
NO_DRIFT = _reason("NoDrift", "the latest check found no dataset drift", DRIFT_CHECK)
# ModelDeployment
NO_MODEL = _reason("NoModel", "no version chosen and no production alias yet: nothing to serve", MODEL_DEPLOYMENT)
SERVING = _reason("Serving", "the predictor serves spec.version (pods Ready, the version in its metrics)",
                  MODEL_DEPLOYMENT)
VERSION_NOT_FOUND = _reason("VersionNotFound", "spec.version names a version MLflow does not have; it went back",
                            MODEL_DEPLOYMENT)
ISVC_MISSING = _reason("InferenceServiceNotFound", "spec.inferenceService does not exist in this namespace",
                       MODEL_DEPLOYMENT)
MLFLOW_DOWN = _reason("MLflowUnavailable", "an MLflow call failed; the operator tries again at the next sync",
                      MODEL_DEPLOYMENT)
RETRAINING_STARTED = _reason("RetrainingStarted", "drift started a retraining TrainingRun (an Event only)", DRIFT_CHECK)


def now_iso(now: datetime | None = None) -> str:
    """``now`` (default: the current time) in the RFC 3339 UTC form Kubernetes uses."""
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time from a status field; ``None`` when empty."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


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


def find(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any]:
    """The condition of ``type_``, or ``{}`` when absent."""
    return next((cond for cond in conditions or [] if cond.get("type") == type_), {})


def condition_status(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> str | None:
    """Status text (``"True"``/``"False"``/``"Unknown"``) of one condition, ``None`` when absent."""
    return find(conditions, type_).get("status")
