"""TrainingRun handlers: create the Job, follow it by watching it, then register, gate, promote and roll out.

Each handler is fetch -> decide (:mod:`.decisions`) -> act -> write (:func:`.status.update`). There is no
timer and no finalizer: the training Job's own changes drive the run, and a deleted run's Job goes by
its ownerReference.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import kopf
from kubernetes.client.rest import ApiException

from visionops import production, registry

from . import GROUP, VERSION, builders, deployments, kube, metrics, status, tracking
from . import conditions as c
from . import decisions as d
from .jobs import ACTIVE, failure_reason, job_outcome, latest_pod, owner_uid, pod_result
from .settings import OperatorSettings
from .status import Decision

PLURAL = "trainingruns"
RESOURCE = (GROUP, VERSION, PLURAL)
TRAINING_JOBS = {builders.LABEL_COMPONENT: "training", builders.LABEL_TRAINING_RUN: kopf.PRESENT}


class RetryLater(Exception):
    """A call failed in a way that retrying may fix; ``reason`` names the system (a condition reason)."""

    def __init__(self, message: str, reason: str = c.MLFLOW_UNAVAILABLE):
        super().__init__(message)
        self.reason = reason


@kopf.on.create(*RESOURCE)
@kopf.on.resume(*RESOURCE)
def start(body: kopf.Body, namespace: str, name: str, uid: str, memo: kopf.Memo, logger: kopf.Logger,
          **_: Any) -> None:
    """Create the training Job (a restarted operator finds the existing one), or resume registering."""
    phase = (body.get("status") or {}).get("phase")
    if phase in (c.REGISTERING, c.SUCCEEDED):
        advance(namespace, name, uid, memo.settings, logger)
        return
    if phase in (c.FAILED, c.ROLLING_OUT_PHASE):
        return  # failed, or its ModelDeployment reports the rollout's end (deployments.after_write)
    job = builders.training_job(body, memo.settings)
    kopf.adopt(job, owner=body, nested="spec.template")
    job, created = kube.ensure_job(namespace, job)
    if created:
        logger.info(f"created Job {job['metadata']['name']}")
    write(namespace, name, uid, partial(d.training_job_created, job_name=job["metadata"]["name"], created=created),
          current=body)


@kopf.on.field(*RESOURCE, field="status.jobCompletionTime")
def job_finished(namespace: str, name: str, uid: str, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """The Job's end reached the status (see :func:`job_changed`): register, gate, promote, roll out."""
    advance(namespace, name, uid, memo.settings, logger)


@kopf.on.field(*RESOURCE, field=("metadata", "annotations", d.ANNOTATION_PROMOTE), new="true")
def promote_requested(namespace: str, name: str, uid: str, memo: kopf.Memo, logger: kopf.Logger,
                      **_: Any) -> None:
    """``visionops.io/promote=true`` on a run awaiting manual promotion: promote and roll out."""
    advance(namespace, name, uid, memo.settings, logger)


@kopf.on.event("batch", "v1", "jobs", labels=TRAINING_JOBS)
def job_changed(event: kopf.RawEvent, body: kopf.Body, namespace: str, memo: kopf.Memo, **_: Any) -> None:
    """A training Job changed: carry Running, its failure, or its success and result into the run's status."""
    run_name = body["metadata"]["labels"][builders.LABEL_TRAINING_RUN]
    run_uid = owner_uid(body, "TrainingRun")
    if not run_uid:
        return  # not a Job this operator made for a TrainingRun
    if event["type"] == "DELETED":
        memo.progress.forget(namespace, run_name)
        write(namespace, run_name, run_uid, d.training_job_gone)
        return
    outcome = job_outcome(body)
    result, failure = None, ""
    if outcome.state == ACTIVE:
        if not outcome.running:
            return  # created, pod not started: the run is Pending already
        memo.progress.track(namespace, run_name, run_uid)
    else:
        memo.progress.forget(namespace, run_name)
        pod = latest_pod(kube.job_pods(namespace, body["metadata"]["name"]))
        result, failure = pod_result(pod), failure_reason(outcome, pod)
    write(namespace, run_name, run_uid, partial(d.training_job_observed, outcome=outcome, result=result,
                                                failure=failure))


def write(namespace: str, name: str, uid: str, *decisions: Decision,
          current: Mapping[str, Any] | None = None) -> d.Status | None:
    """Apply ``decisions`` to the live run's status and write it (the one writer); count finished runs."""
    written = status.update(PLURAL, namespace, name, *decisions, uid=uid, current=current)
    if written is not None and written.changes.get("phase") in c.TERMINAL_PHASES:
        metrics.TRAINING_RUNS.labels(namespace, written.changes["phase"]).inc()
    return written


def advance(namespace: str, name: str, uid: str, settings: OperatorSettings, logger: kopf.Logger) -> None:
    """Take a run whose Job is done through its remaining steps (each once), then write the status once."""
    run = kube.get_custom(namespace, PLURAL, name)
    if run is None or run["metadata"].get("uid") != uid:
        return
    spec, annotations = run.get("spec") or {}, run["metadata"].get("annotations") or {}
    planned = d.Status(run.get("status") or {}, status.utcnow())
    decisions: list[Decision] = []
    error: RetryLater | None = None
    while (step := d.next_training_step(planned.view, spec, annotations)) is not None:
        try:
            decision = act(step, run, planned.view, settings, logger)
        except RetryLater as exc:
            error = exc
            decisions.append(partial(d.training_mlflow_unavailable, message=str(exc), reason=exc.reason))
            break
        decisions.append(decision)
        decision(planned)
        if step == d.AWAIT_MANUAL:
            break
    if decisions:
        write(namespace, name, uid, *decisions, current=run)
    if error:
        raise kopf.TemporaryError(str(error), delay=settings.mlflow_retry_seconds)


def act(step: str, run: Mapping[str, Any], current: Mapping[str, Any], settings: OperatorSettings,
        logger: kopf.Logger) -> Decision:
    """Do one step against MLflow (and the InferenceService); return the decision its outcome makes."""
    if not settings.mlflow_uri:
        return partial(d.training_failed, reason=c.MLFLOW_NOT_CONFIGURED,
                       message="the operator has no MLflow tracking URI (--mlflow-uri)")
    spec = run.get("spec") or {}
    model_name, promotion = spec["model"]["name"], spec.get("promotion") or {}
    if step == d.AWAIT_MANUAL:
        reason = f"manual promotion: annotate with {d.ANNOTATION_PROMOTE}=true"
        return partial(d.training_promotion, decision="Pending", reason=reason, cond_reason=c.AWAITING_MANUAL,
                       message=reason)
    mlflow = tracking.client(settings.mlflow_uri)
    try:
        if step == d.FIND_RESULT:
            run_id = tracking.find_run_id(mlflow, run["metadata"]["uid"])
            result = tracking.result_from_run(mlflow, run_id) if run_id else None
            if not result:
                return partial(d.training_failed, reason=c.RESULT_MISSING,
                               message="the Job succeeded but left no result and no MLflow run")
            return partial(d.training_result, result=result)
        if step == d.REGISTER:
            version = registry.register_version(mlflow, model_name, current["mlflowRunId"])
            return partial(d.training_registered, model_name=model_name, version=str(version.version))
        version = current["modelVersion"]
        if step == d.GATE:
            gate = registry.evaluate(mlflow, model_name, version, threshold=promotion.get("map50Threshold"),
                                     max_regression=promotion.get("maxClassRegressionPoints"))
            metrics.PROMOTIONS.labels(run["metadata"]["namespace"], "Promoted" if gate.promote else "Rejected").inc()
            if not gate.promote:
                registry.reject(mlflow, model_name, version, gate.reason)
                return partial(d.training_promotion, decision="Rejected", reason=gate.reason,
                               cond_reason=c.GATE_REJECTED, message=gate.reason)
            reason = gate.reason
        else:
            reason = "promoted manually by annotation"
        return promote(run, mlflow, model_name, version, reason)
    except registry.RegistryError as exc:
        return partial(d.training_failed, reason=c.REGISTRATION_FAILED, message=str(exc))
    except ApiException as exc:  # the promotion's ModelDeployment or InferenceService: Kubernetes, not MLflow
        transient, said = kube.refusal(exc)
        logger.warning(f"{step}: the Kubernetes API refused: {said}")
        if not transient:
            return partial(d.training_failed, reason=c.KUBERNETES_REFUSED,
                           message=f"{step}: the Kubernetes API refused: {said}")
        raise RetryLater(f"{step}: Kubernetes API call failed ({said}); retrying", c.KUBERNETES_UNAVAILABLE) from exc
    except Exception as exc:
        logger.warning(f"{step}: MLflow call failed: {exc}")
        raise RetryLater(f"{step}: MLflow call failed ({type(exc).__name__}: {str(exc)[:200]}); retrying") from exc


def promote(run: Mapping[str, Any], mlflow: Any, model_name: str, version: str, reason: str) -> Decision:
    """Put the version into production: through the ModelDeployment of spec.promotion.inferenceService (it moves
    the alias and rolls the service out; the run waits for it), else by moving the alias alone."""
    namespace, name = run["metadata"]["namespace"], run["metadata"]["name"]
    target = (run.get("spec", {}).get("promotion") or {}).get("inferenceService")
    message = f"{model_name} version {version} is production"
    promoted = partial(d.training_promotion, decision="Promoted", reason=reason)
    isvc = kube.read_inference_service(namespace, target) if target else None
    if isvc is None:
        registry.promote(mlflow, model_name, version, reason)
        if not target:
            return partial(promoted, cond_reason=c.GATE_PASSED, message=message)
        return partial(promoted, cond_reason=c.INFERENCE_SERVICE_NOT_FOUND,
                       message=f"{message}; InferenceService {target} not found, nothing rolled out")
    deployment = deployments.deployment_for(namespace, target, model_name)
    cause = f"TrainingRun {name}: {reason}"
    kube.patch_custom(namespace, deployments.PLURAL, deployment, production.set_version_patch(version, cause))
    registry.promote(mlflow, model_name, version, reason)
    rolling = partial(d.training_rolling_out, reason=reason, inference_service=target, deployment=deployment,
                      version=version)
    served = d.rollout_outcome(version, (kube.get_custom(namespace, deployments.PLURAL, deployment) or {})
                               .get("status") or {})
    if served is None or served[0] != c.ROLLED_OUT:
        return rolling
    return lambda st: (rolling(st), d.training_rollout_finished(st, *served))  # it serves already


def follow_rollout(namespace: str, isvc_name: str, deployment_status: Mapping[str, Any]) -> None:
    """Finish the TrainingRuns waiting for ``isvc_name`` to serve their version, from its ModelDeployment's status."""
    for run in kube.list_custom(namespace, PLURAL):
        st = run.get("status") or {}
        if st.get("phase") != c.ROLLING_OUT_PHASE or (st.get("promotion") or {}).get("inferenceService") != isvc_name:
            continue
        outcome = d.rollout_outcome(str(st.get("modelVersion") or ""), deployment_status)
        if outcome is not None:
            write(namespace, run["metadata"]["name"], run["metadata"]["uid"],
                  partial(d.training_rollout_finished, reason=outcome[0], message=outcome[1]), current=run)
