"""DriftCheck handlers: one Job per check (now, then per schedule via a CronJob), results into status as
each check Job ends, retraining on drift — never a second TrainingRun while one runs or inside the cooldown.

Each handler is fetch -> decide (:mod:`.decisions`) -> act -> write (:func:`.status.update`); no timer, no
finalizer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from typing import Any

import kopf

from visionops import config, production
from visionops.contract import DriftResult
from visionops.mlflow_rest import MlflowRestError

from . import GROUP, VERSION, builders, kube, metrics, status, tracking
from . import conditions as c
from . import decisions as d
from .jobs import ACTIVE, SUCCEEDED, JobOutcome, failure_reason, job_outcome, latest_pod, owner_uid, pod_document
from .peering import Replica

PLURAL = "driftchecks"
RESOURCE = (GROUP, VERSION, PLURAL)
GAUGE_SYNC_SECONDS = 15.0  # how soon a replica that takes over, or goes standby, corrects the drift gauges
# the component label matters: kopf.adopt copies owner labels, so a retraining Job carries ours too
CHECK_JOBS = {builders.LABEL_COMPONENT: "drift-check", builders.LABEL_DRIFT_CHECK: kopf.PRESENT}


@kopf.on.create(*RESOURCE)
@kopf.on.resume(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
def ensure_checks(body: kopf.Body, spec: Mapping[str, Any], namespace: str, name: str, uid: str,
                  memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """A Job for the current generation, and a CronJob when the check has a schedule."""
    job = builders.drift_job(body, memo.settings)
    kopf.adopt(job, owner=body, nested="spec.template")
    job, created = kube.ensure_job(namespace, job)
    if created:
        logger.info(f"created drift Job {job['metadata']['name']}")
    if spec.get("schedule"):
        cronjob = builders.drift_cronjob(body, memo.settings)
        kopf.adopt(cronjob, owner=body, nested=("spec.jobTemplate", "spec.jobTemplate.spec.template"))
        kube.ensure_cronjob(namespace, cronjob)
    job_name = job["metadata"]["name"]

    def decide(st: d.Status) -> None:
        d.check_job_created(st, job_name, created, job_name in d.history_names(st.view))

    status.update(PLURAL, namespace, name, decide, uid=uid, current=body)


@kopf.on.event("batch", "v1", "jobs", labels=CHECK_JOBS)
def check_job_changed(event: kopf.RawEvent, body: kopf.Body, namespace: str, logger: kopf.Logger,
                      memo: kopf.Memo, **_: Any) -> None:
    """A check Job changed: Running while it runs; once it ends, its result (and maybe a retraining)."""
    if event["type"] == "DELETED":
        return
    meta = body["metadata"]
    check_name, job_name = meta["labels"][builders.LABEL_DRIFT_CHECK], meta["name"]
    check_uid = owner_uid(body, "DriftCheck")  # None for a CronJob's Job (the CronJob owns it)
    outcome = job_outcome(body)
    if outcome.state == ACTIVE:
        status.update(PLURAL, namespace, check_name, partial(d.check_job_active, job_name=job_name))
        return
    check = kube.get_custom(namespace, PLURAL, check_name)
    if check is None or job_name in d.history_names(check.get("status") or {}):
        return
    pod = latest_pod(kube.job_pods(namespace, job_name))
    document, failure = pod_document(pod, DriftResult), failure_reason(outcome, pod, DriftResult)
    result = document.to_dict() if document else None
    if outcome.state == SUCCEEDED and document is None:
        logger.warning(f"check Job {job_name} succeeded but left no readable result document")
    generation = int((meta.get("annotations") or {}).get(builders.ANNOTATION_GENERATION) or 0) or None
    scheduled = bool((check.get("spec") or {}).get("schedule"))
    retrain = _retrain(check, job_name, outcome, document, memo.settings.mlflow_uri, logger)

    def decide(st: d.Status) -> None:
        drift = d.check_job_finished(st, job_name, generation, outcome, result, failure, scheduled)
        if drift and retrain:
            d.retraining_started(st, job_name, *retrain)

    written = status.update(PLURAL, namespace, check_name, decide, uid=check_uid, current=check)
    if written and written.changes.get("history"):
        export_result(namespace, check_name, written.view)
        if retrain and retrain[1]:
            metrics.RETRAININGS.labels(namespace, check_name).inc()


def latest_result(view: Mapping[str, Any]) -> tuple[float, bool] | None:
    """The latest check's result in a DriftCheck's status (driftShare, driftDetected), or None before the first."""
    if "driftDetected" not in view:
        return None
    return float(view.get("driftShare") or 0.0), bool(view.get("driftDetected"))


def export_result(namespace: str, name: str, view: Mapping[str, Any]) -> None:
    """A check just ended: its result as the drift gauges at once."""
    result = latest_result(view)
    if result is not None:
        metrics.DRIFT.set(namespace, name, *result)


def latest_results(checks: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], tuple[float, bool]]:
    """``{(namespace, name): (share, detected)}`` of the DriftChecks that have a result."""
    results = {}
    for check in checks:
        result = latest_result(check.get("status") or {})
        if result is not None:
            results[(check["metadata"]["namespace"], check["metadata"]["name"])] = result
    return results


async def gauges_loop(replica: Replica, logger: logging.Logger) -> None:
    """Every :data:`GAUGE_SYNC_SECONDS` until cancelled: while this replica acts, the drift gauges of every
    DriftCheck it watches, read from their status (a replica that takes over says them, a deleted check's go);
    on a standby, none (only the acting replica speaks). Where the namespaces are kopf's own (``kopf run
    --namespace``: ``replica.namespaces`` empty), the checks' ends alone set them."""
    if replica.namespaces == ():
        return
    while True:
        try:
            as_of = time.monotonic()
            if await asyncio.to_thread(replica.acting, logger):
                checks = await asyncio.to_thread(_watched_checks, replica.scopes)
                metrics.DRIFT.replace(latest_results(checks), as_of)
            else:
                metrics.DRIFT.replace({}, as_of)
        except Exception as exc:  # the next pass tries again
            logger.warning(f"drift gauges: {type(exc).__name__}: {exc}")
        await asyncio.sleep(GAUGE_SYNC_SECONDS)


def _watched_checks(scopes: Sequence[str | None]) -> list[dict[str, Any]]:
    return [check for namespace in scopes for check in kube.list_custom(namespace, PLURAL)]


def _production_weights(on_drift: Mapping[str, Any], mlflow_uri: str, logger: kopf.Logger) -> str | None:
    """``models:/<name>/<N>`` of the production version the retraining starts from (what production already
    knows), unless the template sets its own ``initFrom``; ``None`` (from scratch) when there is none yet."""
    template = on_drift.get("trainingRunTemplate") or {}
    spec = template.get("spec", template)
    if spec.get("initFrom") or not mlflow_uri:
        return None
    name = (spec.get("model") or {}).get("name") or config.load("training")["registered_model_name"]
    try:
        version = production.alias_version(tracking.client(mlflow_uri), name)
    except (MlflowRestError, OSError):
        version = ""  # MLflow cannot say: from scratch rather than no retraining
    if not version:
        logger.info(f"no production version of {name}: the retraining starts from scratch")
        return None
    return f"models:/{name}/{version}"


def _retrain(check: Mapping[str, Any], job_name: str, outcome: JobOutcome, result: DriftResult | None,
             mlflow_uri: str, logger: kopf.Logger) -> tuple[str, bool] | None:
    """Create the retraining TrainingRun when this check found drift and retraining is allowed now:
    ``(run name, created)``, or ``None``."""
    if outcome.state != SUCCEEDED or result is None or not result.drift_detected:
        return None
    spec, meta = check.get("spec") or {}, check["metadata"]
    on_drift = spec.get("onDrift") or {}
    if not on_drift.get("retrain"):
        return None
    runs = kube.list_training_runs(meta["namespace"], f"{builders.LABEL_DRIFT_CHECK}={meta['name']}")
    active = [r["metadata"]["name"] for r in runs if (r.get("status") or {}).get("phase") not in c.TERMINAL_PHASES]
    allowed, why = d.retraining_allowed(on_drift, (check.get("status") or {}).get("lastRetrainTime"), active,
                                        status.utcnow())
    if not allowed:
        logger.info(f"drift found but not retraining: {why}")
        return None
    init_from = _production_weights(on_drift, mlflow_uri, logger)
    run, created = kube.create_training_run(meta["namespace"], builders.retraining_run(
        check, job_name, result.drift_share or 0.0, init_from))
    return run["metadata"]["name"], created
