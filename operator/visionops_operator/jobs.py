"""Pure readers of Job and Pod status: what happened, and the result the container left behind."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from visionops.contract import ContractError, DriftResult, TrainingResult

log = logging.getLogger(__name__)
Result = TypeVar("Result", TrainingResult, DriftResult)
ACTIVE, SUCCEEDED, FAILED = "active", "succeeded", "failed"


@dataclass(frozen=True)
class JobOutcome:
    """Where a Job stands: ``state`` is active, succeeded or failed; ``reason``/``message`` explain a failure."""

    state: str
    reason: str = ""
    message: str = ""
    running: bool = False


def _true(conditions: Sequence[Mapping[str, Any]] | None, *types: str) -> Mapping[str, Any] | None:
    for cond in conditions or []:
        if cond.get("type") in types and cond.get("status") == "True":
            return cond
    return None


def job_outcome(job: Mapping[str, Any]) -> JobOutcome:
    """Read a Job's conditions (Complete/SuccessCriteriaMet, Failed/FailureTarget) and counters."""
    status = job.get("status") or {}
    conditions = status.get("conditions")
    if _true(conditions, "Complete", "SuccessCriteriaMet"):
        return JobOutcome(SUCCEEDED)
    failed = _true(conditions, "Failed", "FailureTarget")
    if failed:
        return JobOutcome(FAILED, failed.get("reason") or "Failed", failed.get("message") or "")
    return JobOutcome(ACTIVE, running=bool(status.get("active")) and bool(status.get("ready", 1)))


def owner_uid(job: Mapping[str, Any], kind: str) -> str | None:
    """The uid of the Job's controlling owner of ``kind`` (the custom resource it belongs to)."""
    for ref in (job.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == kind:
            return ref.get("uid")
    return None


def latest_pod(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The most recently created pod of a Job (the last retry)."""
    if not pods:
        return None
    return max(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")


def terminated_state(pod: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The ``terminated`` state of the pod's first container, or ``{}``."""
    for cs in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if term:
            return term
    return {}


def pod_document(pod: Mapping[str, Any] | None, kind: type[Result]) -> Result | None:
    """The result document (of ``kind``) the Job's container left as its termination message; ``None`` when it
    left none, or something else (a log tail: ``FallbackToLogsOnError``; a document that breaks the contract)."""
    message = (terminated_state(pod).get("message") or "").strip()
    if not message.startswith("{"):
        return None
    try:
        return kind.parse(message)
    except ContractError as error:
        log.warning("ignoring the result of pod %s: %s", ((pod or {}).get("metadata") or {}).get("name"), error)
        return None


def pod_result(pod: Mapping[str, Any] | None, kind: type[Result] = TrainingResult) -> dict[str, Any] | None:
    """:func:`pod_document`'s checked fields, as the decisions read them (``kind``: the training Job's by default)."""
    document = pod_document(pod, kind)
    return document.to_dict() if document else None


def failure_reason(outcome: JobOutcome, pod: Mapping[str, Any] | None,
                   kind: type[Result] = TrainingResult) -> str:
    """One human line: the job's own error when it wrote one, else the container's and the Job's reasons."""
    document = pod_document(pod, kind)
    if document is not None and document.error:
        return document.error
    term = terminated_state(pod)
    parts = []
    if term.get("reason"):
        detail = f"container {term['reason']}"
        if term.get("exitCode") is not None:
            detail += f" (exit code {term['exitCode']})"
        message = (term.get("message") or "").strip().splitlines()
        if message:
            detail += f": {message[-1][:300]}"
        parts.append(detail)
    if outcome.reason:
        parts.append(f"Job {outcome.reason}" + (f": {outcome.message}" if outcome.message else ""))
    return "; ".join(parts) or "the Job failed without a reason"
