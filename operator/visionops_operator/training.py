"""TrainingRun handlers: Job creation, progress, result, registration, promotion and rollout."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import kopf

from visionops import registry
from visionops.config import load as load_config

from . import GROUP, VERSION, builders, kube, metrics, tracking
from . import conditions as c
from .jobs import ACTIVE, FAILED, SUCCEEDED, failure_reason, job_outcome, latest_pod, pod_result
from .settings import current as current_settings

SETTINGS = current_settings()
RESOURCE = (GROUP, VERSION, "trainingruns")


class StatusWriter:
    """Collects status changes (conditions included) into kopf's ``patch`` and keeps a local view."""

    def __init__(self, status: Mapping[str, Any], patch: kopf.Patch, generation: int | None) -> None:
        self.view = dict(status)
        self.patch = patch
        self.generation = generation

    def set(self, **fields: Any) -> None:
        for key, value in fields.items():
            self.view[key] = value
            self.patch.status[key] = value

    def condition(self, type_: str, status: bool | None, reason: str, message: str = "") -> None:
        self.set(conditions=c.set_condition(self.view.get("conditions"), type_, status, reason, message,
                                            self.generation))


def _needs_reconcile(spec: Mapping[str, Any], status: Mapping[str, Any], annotations: Mapping[str, str],
                     **_: Any) -> bool:
    if status.get("phase") not in c.TERMINAL_PHASES:
        return True
    decision = (status.get("promotion") or {}).get("decision")
    wants_manual = annotations.get(builders.ANNOTATION_PROMOTE) == "true"
    return status.get("phase") == c.SUCCEEDED and decision != "Promoted" and wants_manual


@kopf.on.create(*RESOURCE)
@kopf.on.resume(*RESOURCE)
def start_training(body: kopf.Body, status: Mapping[str, Any], namespace: str, meta: Mapping[str, Any],
                   patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    """Create the training Job (idempotent: a restarted operator finds the existing one)."""
    if status.get("phase") in c.TERMINAL_PHASES:
        return
    ensure_job(body, status, namespace, patch, meta.get("generation"), logger)


def ensure_job(body: kopf.Body, status: Mapping[str, Any], namespace: str, patch: kopf.Patch,
               generation: int | None, logger: kopf.Logger) -> dict[str, Any]:
    job = builders.training_job(body, SETTINGS)
    kopf.adopt(job, owner=body, nested="spec.template")
    job, created = kube.ensure_job(namespace, job)
    writer = StatusWriter(status, patch, generation)
    if created:
        logger.info(f"created Job {job['metadata']['name']}")
        kopf.info(body, reason=c.JOB_CREATED, message=f"created Job {job['metadata']['name']}")
    if not status.get("jobName"):
        writer.set(jobName=job["metadata"]["name"], phase=status.get("phase") or c.PENDING,
                   startTime=status.get("startTime") or c.now_iso(), observedGeneration=generation)
        writer.condition(c.TRAINED, None, c.JOB_CREATED, f"Job {job['metadata']['name']} created")
    return job


@kopf.timer(*RESOURCE, interval=SETTINGS.poll_seconds, initial_delay=1.0, when=_needs_reconcile)
def reconcile_training(body: kopf.Body, spec: Mapping[str, Any], status: Mapping[str, Any], name: str,
                       namespace: str, uid: str, meta: Mapping[str, Any], patch: kopf.Patch,
                       memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Follow the Job to its end, then register, gate, promote and roll out — each step once."""
    writer = StatusWriter(status, patch, meta.get("generation"))
    if status.get("phase") == c.SUCCEEDED:
        _promote_manually(body, spec, writer, namespace, logger)
        return
    job = kube.read_job(namespace, status.get("jobName") or builders.child_name(name, "train"))
    if job is None:
        if status.get("jobName"):
            _fail(body, writer, "JobDeleted", f"Job {status['jobName']} was deleted before it finished")
        else:
            ensure_job(body, status, namespace, patch, meta.get("generation"), logger)
        return
    outcome = job_outcome(job)
    if outcome.state == ACTIVE:
        if outcome.running and status.get("phase") != c.RUNNING:
            writer.set(phase=c.RUNNING)
            writer.condition(c.TRAINED, None, c.TRAINING, "training is running")
        _update_progress(writer, uid, memo, logger)
        return
    pods = kube.job_pods(namespace, job["metadata"]["name"])
    if outcome.state == FAILED:
        _fail(body, writer, c.JOB_FAILED, failure_reason(outcome, latest_pod(pods)))
        return
    assert outcome.state == SUCCEEDED
    _finish(body, spec, writer, namespace, uid, pod_result(latest_pod(pods)), logger)


def _fail(body: kopf.Body, writer: StatusWriter, reason: str, message: str) -> None:
    metrics.TRAINING_RUNS.labels(body.get("metadata", {}).get("namespace", ""), c.FAILED).inc()
    writer.set(phase=c.FAILED, message=message, completionTime=c.now_iso())
    writer.condition(c.TRAINED, False, reason, message)
    kopf.warn(body, reason=reason, message=message)


def _mlflow() -> Any:
    if not SETTINGS.mlflow_uri:
        raise kopf.PermanentError("the operator has no MLflow tracking URI (VISIONOPS_MLFLOW_URI)")
    return tracking.client(SETTINGS.mlflow_uri)


def _retry_mlflow(writer: StatusWriter, step: str, exc: Exception) -> kopf.TemporaryError:
    """Record that MLflow failed and ask kopf to retry later; results already in status are kept."""
    message = f"{step}: MLflow call failed ({type(exc).__name__}: {str(exc)[:200]}); retrying"
    writer.set(message=message)
    return kopf.TemporaryError(message, delay=SETTINGS.mlflow_retry_seconds)


def _update_progress(writer: StatusWriter, uid: str, memo: kopf.Memo, logger: kopf.Logger) -> None:
    """Epoch progress from MLflow, at most once per ``progress_seconds`` per TrainingRun."""
    last = memo.get("progress_read_at", 0.0)
    if not SETTINGS.mlflow_uri or time.monotonic() - last < SETTINGS.progress_seconds:
        return
    memo["progress_read_at"] = time.monotonic()
    try:
        mlflow = _mlflow()
        run_id = writer.view.get("mlflowRunId") or tracking.find_run_id(mlflow, uid)
        if not run_id:
            return
        epoch, epochs = tracking.epoch_progress(mlflow, run_id)
    except Exception as exc:
        logger.warning(f"could not read progress from MLflow: {exc}")
        return
    progress = {"epoch": epoch or 0, "epochs": epochs or 0, "display": f"{epoch or 0}/{epochs or '?'}"}
    writer.set(mlflowRunId=run_id, progress=progress)


def _finish(body: kopf.Body, spec: Mapping[str, Any], writer: StatusWriter, namespace: str, uid: str,
            result: dict[str, Any] | None, logger: kopf.Logger) -> None:
    status = writer.view
    if not status.get("mlflowRunId") or "metrics" not in status:
        if not result or not result.get("run_id"):
            try:
                run_id = tracking.find_run_id(_mlflow(), uid)
                result = tracking.result_from_run(_mlflow(), run_id) if run_id else None
            except Exception as exc:
                raise _retry_mlflow(writer, "finding the training run", exc) from exc
        if not result or not result.get("run_id"):
            _fail(body, writer, c.RESULT_MISSING, "the Job succeeded but left no result and no MLflow run")
            return
        scores = result.get("metrics") or {}
        writer.set(mlflowRunId=result["run_id"],
                   metrics={k: float(scores[k]) for k in ("map50", "map50_95", "precision", "recall")
                            if k in scores},
                   perClassAP50={k: float(v) for k, v in (result.get("per_class_ap50") or {}).items()})
        epochs = result.get("epochs_completed")
        if epochs is not None:
            planned = (status.get("progress") or {}).get("epochs") or epochs
            writer.set(progress={"epoch": int(epochs), "epochs": int(planned), "display": f"{epochs}/{planned}"})
        writer.condition(c.TRAINED, True, c.TRAINING_SUCCEEDED, f"MLflow run {result['run_id']}")
        kopf.info(body, reason=c.TRAINING_SUCCEEDED, message=f"MLflow run {result['run_id']}")

    model_name = (spec.get("model") or {}).get("name") or load_config("training")["registered_model_name"]
    if not status.get("modelVersion"):
        try:
            version = registry.register_version(_mlflow(), model_name, status["mlflowRunId"])
        except Exception as exc:
            raise _retry_mlflow(writer, "registering the model version", exc) from exc
        writer.set(modelVersion=str(version.version), message="")
        writer.condition(c.REGISTERED, True, c.VERSION_REGISTERED, f"{model_name} version {version.version}")
        kopf.info(body, reason=c.VERSION_REGISTERED, message=f"registered {model_name} version {version.version}")

    promotion = spec.get("promotion") or {}
    if not (status.get("promotion") or {}).get("decision"):
        if promotion.get("mode", "auto") == "manual":
            writer.set(promotion={"decision": "Pending", "reason": "manual promotion: annotate with "
                                  f"{builders.ANNOTATION_PROMOTE}=true"})
            writer.condition(c.PROMOTED, False, c.AWAITING_MANUAL, writer.view["promotion"]["reason"])
        else:
            _gate_and_promote(body, spec, writer, namespace, model_name, logger)
    metrics.TRAINING_RUNS.labels(namespace, c.SUCCEEDED).inc()
    writer.set(phase=c.SUCCEEDED, completionTime=status.get("completionTime") or c.now_iso())


def _gate_and_promote(body: kopf.Body, spec: Mapping[str, Any], writer: StatusWriter, namespace: str,
                      model_name: str, logger: kopf.Logger) -> None:
    promotion = spec.get("promotion") or {}
    version = writer.view["modelVersion"]
    try:
        decision = registry.evaluate_and_promote(
            _mlflow(), model_name, version,
            threshold=promotion.get("map50Threshold"),
            max_regression=promotion.get("maxClassRegressionPoints"),
        )
    except Exception as exc:
        raise _retry_mlflow(writer, "evaluating the promotion gate", exc) from exc
    metrics.PROMOTIONS.labels(namespace, "Promoted" if decision.promote else "Rejected").inc()
    if not decision.promote:
        writer.set(promotion={"decision": "Rejected", "reason": decision.reason})
        writer.condition(c.PROMOTED, False, c.GATE_REJECTED, decision.reason)
        kopf.info(body, reason=c.GATE_REJECTED, message=decision.reason)
        return
    _roll_out(body, spec, writer, namespace, model_name, version, decision.reason)


def _roll_out(body: kopf.Body, spec: Mapping[str, Any], writer: StatusWriter, namespace: str,
              model_name: str, version: str, reason: str) -> None:
    target = (spec.get("promotion") or {}).get("inferenceService")
    record: dict[str, Any] = {"decision": "Promoted", "reason": reason}
    message = f"{model_name} version {version} is production"
    cond_reason = c.GATE_PASSED
    if target:
        isvc = kube.read_inference_service(namespace, target)
        if isvc is None:
            message += f"; InferenceService {target} not found, nothing rolled out"
            cond_reason = c.INFERENCE_SERVICE_NOT_FOUND
            kopf.warn(body, reason=c.INFERENCE_SERVICE_NOT_FOUND, message=message)
        else:
            patch = builders.inference_service_patch(isvc, f"models:/{model_name}/{version}", version)
            kube.patch_inference_service(namespace, target, patch)
            record["inferenceService"] = target
            message += f"; InferenceService {target} rolled out"
            cond_reason = c.ROLLED_OUT
    writer.set(promotion=record)
    writer.condition(c.PROMOTED, True, cond_reason, message)
    kopf.info(body, reason=cond_reason, message=message)


def _promote_manually(body: kopf.Body, spec: Mapping[str, Any], writer: StatusWriter, namespace: str,
                      logger: kopf.Logger) -> None:
    model_name = (spec.get("model") or {}).get("name") or load_config("training")["registered_model_name"]
    version = writer.view.get("modelVersion")
    if not version:
        return
    try:
        registry.promote(_mlflow(), model_name, version)
    except Exception as exc:
        raise _retry_mlflow(writer, "promoting the model version", exc) from exc
    _roll_out(body, spec, writer, namespace, model_name, version, "promoted manually by annotation")
