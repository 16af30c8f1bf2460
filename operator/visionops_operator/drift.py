"""DriftCheck handlers: one Job per check (now, then per schedule via a CronJob), results into status,
retraining on drift — never a second TrainingRun while one runs or inside the cooldown."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from . import GROUP, VERSION, builders, kube, metrics
from . import conditions as c
from .jobs import ACTIVE, FAILED, failure_reason, job_outcome, latest_pod, pod_result
from .settings import current as current_settings

SETTINGS = current_settings()
RESOURCE = (GROUP, VERSION, "driftchecks")
HISTORY_LIMIT = 10


@kopf.on.create(*RESOURCE)
@kopf.on.resume(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
def ensure_checks(body: kopf.Body, spec: Mapping[str, Any], namespace: str, meta: Mapping[str, Any],
                  patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    """A Job for the current generation, and a CronJob when the check has a schedule."""
    job = builders.drift_job(body, SETTINGS)
    kopf.adopt(job, owner=body, nested="spec.template")
    job, created = kube.ensure_job(namespace, job)
    if created:
        logger.info(f"created drift Job {job['metadata']['name']}")
        kopf.info(body, reason="JobCreated", message=f"created drift Job {job['metadata']['name']}")
    if spec.get("schedule"):
        cronjob = builders.drift_cronjob(body, SETTINGS)
        kopf.adopt(cronjob, owner=body, nested=("spec.jobTemplate", "spec.jobTemplate.spec.template"))
        kube.ensure_cronjob(namespace, cronjob)
    patch.status["observedGeneration"] = meta.get("generation")
    patch.status["lastJobName"] = job["metadata"]["name"]
    recorded = {h.get("jobName") for h in body.get("status", {}).get("history") or []}
    if job["metadata"]["name"] not in recorded:
        patch.status["phase"] = c.RUNNING


def _needs_collect(spec: Mapping[str, Any], status: Mapping[str, Any], **_: Any) -> bool:
    return bool(spec.get("schedule")) or status.get("phase") not in (c.COMPLETED, c.FAILED)


def _completion_key(job: Mapping[str, Any]) -> str:
    status = job.get("status") or {}
    return status.get("completionTime") or status.get("startTime") or job["metadata"].get("creationTimestamp") or ""


@kopf.timer(*RESOURCE, interval=SETTINGS.poll_seconds, initial_delay=1.0, when=_needs_collect)
def collect_results(body: kopf.Body, spec: Mapping[str, Any], status: Mapping[str, Any], name: str,
                    namespace: str, meta: Mapping[str, Any], patch: kopf.Patch, logger: kopf.Logger,
                    **_: Any) -> None:
    """Record every finished check Job once, in completion order, and react to drift."""
    history = list(status.get("history") or [])
    seen = {h.get("jobName") for h in history}
    # the component label matters: kopf.adopt copies owner labels, so a retraining Job carries ours too
    jobs = kube.list_jobs(namespace, builders.drift_check_selector(name))
    finished = []
    for job in jobs:
        if job["metadata"]["name"] in seen:
            continue
        outcome = job_outcome(job)
        if outcome.state != ACTIVE:
            finished.append((job, outcome))
    if not finished:
        return
    view = dict(status)
    conditions = list(status.get("conditions") or [])
    for job, outcome in sorted(finished, key=lambda pair: _completion_key(pair[0])):
        job_name = job["metadata"]["name"]
        pod = latest_pod(kube.job_pods(namespace, job_name))
        entry: dict[str, Any] = {"jobName": job_name, "time": c.now_iso()}
        if outcome.state == FAILED:
            reason = failure_reason(outcome, pod)
            entry["result"] = "failed"
            view.update(phase=c.FAILED, result="failed", message=reason, lastCheckTime=entry["time"])
            conditions = c.set_condition(conditions, c.CHECKED, False, c.CHECK_FAILED, reason, meta.get("generation"))
            kopf.warn(body, reason=c.CHECK_FAILED, message=reason)
        else:
            result = pod_result(pod) or {}
            entry.update(_record_result(view, result))
            metrics.DRIFT_SHARE.labels(namespace, name).set(view["driftShare"])
            metrics.DRIFT_DETECTED.labels(namespace, name).set(1 if view["driftDetected"] else 0)
            drift = bool(result.get("drift_detected"))
            skipped = result.get("status") == "skipped"
            conditions = c.set_condition(
                conditions, c.CHECKED, True, c.CHECK_SKIPPED if skipped else c.CHECK_COMPLETED,
                result.get("reason", "") if skipped else f"drift share {view.get('driftShare')}",
                meta.get("generation"))
            conditions = c.set_condition(
                conditions, c.DRIFT_DETECTED, drift, c.DRIFT if drift else c.NO_DRIFT,
                ", ".join(view.get("driftedFeatures") or []), meta.get("generation"))
            if drift:
                kopf.info(body, reason=c.DRIFT, message=f"drift share {view.get('driftShare')}: "
                          f"{', '.join(view.get('driftedFeatures') or [])}")
                retrain = _maybe_retrain(body, spec, view, namespace, job_name, logger)
                if retrain:
                    entry["triggeredTrainingRun"] = retrain
        history.append(entry)
    view["history"] = history[-HISTORY_LIMIT:]
    view["conditions"] = conditions
    if not spec.get("schedule") and view.get("phase") != c.FAILED:
        view["phase"] = c.COMPLETED
    elif spec.get("schedule") and view.get("phase") != c.FAILED:
        view["phase"] = c.SCHEDULED
    for key, value in view.items():
        if status.get(key) != value:
            patch.status[key] = value


def _record_result(view: dict[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    outcome = result.get("status") or ("drift" if result.get("drift_detected") else "no_drift")
    view.update(
        result=outcome,
        driftDetected=bool(result.get("drift_detected")),
        driftShare=float(result.get("drift_share") or 0.0),
        driftedFeatures=list(result.get("drifted_features") or []),
        reportUri=result.get("report_uri") or "",
        mlflowRunId=result.get("run_id") or "",
        message=result.get("reason") or "",
        lastCheckTime=c.now_iso(),
    )
    return {"result": outcome, "driftShare": view["driftShare"]}


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _maybe_retrain(body: kopf.Body, spec: Mapping[str, Any], view: dict[str, Any], namespace: str,
                   job_name: str, logger: kopf.Logger) -> str | None:
    """Create the retraining TrainingRun unless one is active or the cooldown is not over."""
    on_drift = spec.get("onDrift") or {}
    if not on_drift.get("retrain"):
        return None
    name = body["metadata"]["name"]
    runs = kube.list_training_runs(namespace, f"{builders.LABEL_DRIFT_CHECK}={name}")
    active = [r["metadata"]["name"] for r in runs
              if (r.get("status") or {}).get("phase") not in c.TERMINAL_PHASES]
    if active:
        logger.info(f"drift found but retraining {active[0]} is still running; not starting another")
        return None
    last = _parse_time(view.get("lastRetrainTime"))
    cooldown = int(on_drift.get("cooldownSeconds", 3600))
    if last and (datetime.now(UTC) - last).total_seconds() < cooldown:
        logger.info(f"drift found but inside the {cooldown}s retraining cooldown")
        return None
    run = builders.retraining_run(body, job_name, view.get("driftShare"))
    run, created = kube.create_training_run(namespace, run)
    run_name = run["metadata"]["name"]
    view.update(triggeredTrainingRun=run_name, lastRetrainTime=c.now_iso())
    if created:
        metrics.RETRAININGS.labels(namespace, name).inc()
        kopf.info(body, reason="RetrainingStarted", message=f"created TrainingRun {run_name}")
    return run_name
