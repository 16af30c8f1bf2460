"""The operator's state machines as pure functions: (status, what was observed, the clock) -> changes + Events.

Handlers fetch, call these, act, and write the resulting :class:`Status` changes through
:func:`visionops_operator.status.update`. Nothing here talks to the API server or MLflow.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from visionops.contract import PROMOTE_ANNOTATION as ANNOTATION_PROMOTE
from visionops.contract import SUMMARY_METRICS, DriftStatus

from . import conditions as c
from .jobs import ACTIVE, FAILED, JobOutcome

HISTORY_LIMIT = 10
METRIC_KEYS = SUMMARY_METRICS
# status.serving field -> the training result's key (training_job.quantize.ServingDecision)
SERVING_SCORES = {"fp32MAP50": "fp32_score", "int8MAP50": "int8_score"}

# Steps of a TrainingRun after its Job succeeded (next_training_step's answers).
FIND_RESULT, REGISTER, GATE, AWAIT_MANUAL, PROMOTE_MANUALLY = (
    "find-result", "register", "gate", "await-manual", "promote-manually")


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the custom resource once its status change is written."""

    reason: str
    message: str
    warning: bool = False


@dataclass
class Status:
    """A status being changed: ``view`` is the status as it will be, ``changes`` what to write."""

    current: Mapping[str, Any]
    now: datetime
    generation: int | None = None
    view: dict[str, Any] = field(init=False)
    changes: dict[str, Any] = field(init=False, default_factory=dict)
    events: list[Event] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.view = copy.deepcopy(dict(self.current))

    def get(self, key: str, default: Any = None) -> Any:
        return self.view.get(key, default)

    def set(self, **fields: Any) -> None:
        """Set status fields; a field that already has the value is not written again."""
        for key, value in fields.items():
            if self.view.get(key) != value:
                self.view[key] = value
                self.changes[key] = value

    def condition(self, type_: str, status: bool | None, reason: str, message: str = "",
                  generation: int | None = None) -> None:
        gen = self.generation if generation is None else generation
        conds = c.set_condition(self.view.get("conditions"), type_, status, reason, message, gen,
                                now=c.now_iso(self.now))
        self.set(conditions=conds)

    def condition_of(self, type_: str) -> Mapping[str, Any]:
        return c.find(self.view.get("conditions"), type_)

    def event(self, reason: str, message: str, warning: bool = False) -> None:
        self.events.append(Event(reason, message, warning))

    def stamp(self) -> str:
        return c.now_iso(self.now)


# ---------------------------------------------------------------- TrainingRun

def training_job_created(st: Status, job_name: str, created: bool) -> None:
    """The Job exists (made now when ``created``): the run is Pending until its pod runs."""
    if created:
        st.event(c.JOB_CREATED, f"created Job {job_name}")
    if st.get("jobName"):
        return
    st.set(jobName=job_name, phase=c.PENDING, startTime=st.stamp(), observedGeneration=st.generation)
    st.condition(c.TRAINED, None, c.JOB_CREATED, f"Job {job_name} created")
    st.condition(c.READY, None, c.JOB_CREATED, f"Job {job_name} created")


def training_job_observed(st: Status, outcome: JobOutcome, result: Mapping[str, Any] | None,
                          failure: str) -> None:
    """A training Job changed: Running, Failed, or (succeeded) on to Registering with its result."""
    if st.get("phase") not in (None, c.PENDING, c.RUNNING):
        return
    if outcome.state == ACTIVE:
        if outcome.running and st.get("phase") != c.RUNNING:
            st.set(phase=c.RUNNING)
            st.condition(c.TRAINED, None, c.TRAINING, "training is running")
            st.condition(c.READY, None, c.TRAINING, "training is running")
        return
    st.set(jobCompletionTime=st.stamp())
    if outcome.state == FAILED:
        training_failed(st, c.JOB_FAILED, failure)
        return
    st.set(phase=c.REGISTERING)
    st.condition(c.READY, None, c.REGISTERING_VERSION, "registering the model version")
    if result and result.get("run_id"):
        training_result(st, result)


def training_job_gone(st: Status) -> None:
    """The Job disappeared: a run that was still training fails."""
    if st.get("jobName") and st.get("phase") in (None, c.PENDING, c.RUNNING):
        training_failed(st, c.JOB_DELETED, f"Job {st.get('jobName')} was deleted before it finished")


def training_result(st: Status, result: Mapping[str, Any]) -> None:
    """Record the job's result (MLflow run, final metrics, per-class AP50, epochs): Trained=True."""
    scores = result.get("metrics") or {}
    st.set(mlflowRunId=result["run_id"],
           metrics={k: float(scores[k]) for k in METRIC_KEYS if k in scores},
           perClassAP50={k: float(v) for k, v in (result.get("per_class_ap50") or {}).items()})
    if result.get("dataset_digest"):
        st.set(datasetDigest=str(result["dataset_digest"]))
    resumed = result.get("resumed_from_epoch")
    if resumed:
        st.set(resumedFromEpoch=int(resumed))
        st.event(c.TRAINING_RESUMED, f"a retried pod continued MLflow run {result['run_id']} after epoch {resumed} "
                                     "(the checkpoint of the pod before)")
    serving = result.get("serving") or {}
    if serving.get("precision"):
        st.set(serving={"precision": str(serving["precision"]), "reason": str(serving.get("reason") or ""),
                        **{key: float(serving[field]) for key, field in SERVING_SCORES.items()
                           if serving.get(field) is not None}})
    epochs = result.get("epochs_completed")
    if epochs is not None:
        planned = (st.get("progress") or {}).get("epochs") or epochs
        st.set(progress={"epoch": int(epochs), "epochs": int(planned), "display": f"{epochs}/{planned}"})
    st.condition(c.TRAINED, True, c.TRAINING_SUCCEEDED, f"MLflow run {result['run_id']}")
    st.event(c.TRAINING_SUCCEEDED, f"MLflow run {result['run_id']}")


def training_failed(st: Status, reason: str, message: str) -> None:
    """Terminal failure: phase Failed, Ready=False and Failed=True with ``reason`` (a Succeeded run keeps
    its phase and only says why, e.g. a manual promotion that cannot be done)."""
    if st.get("phase") == c.SUCCEEDED:
        st.set(message=message)
        return
    st.set(phase=c.FAILED, message=message, completionTime=st.stamp())
    if st.condition_of(c.TRAINED).get("status") != "True":
        st.condition(c.TRAINED, False, reason, message)
    st.condition(c.READY, False, reason, message)
    st.condition(c.FAILED, True, reason, message)
    st.event(reason, message, warning=True)


def training_progress(st: Status, run_id: str, epoch: int | None, epochs: int | None) -> None:
    """Epoch progress read from MLflow while the pod trains (no Event)."""
    if st.get("phase") != c.RUNNING:
        return
    st.set(mlflowRunId=run_id,
           progress={"epoch": epoch or 0, "epochs": epochs or 0, "display": f"{epoch or 0}/{epochs or '?'}"})


def next_training_step(status: Mapping[str, Any], spec: Mapping[str, Any],
                       annotations: Mapping[str, str]) -> str | None:
    """What the operator does next for a run whose Job is done (``None``: nothing, or not yet)."""
    promotion = status.get("promotion") or {}
    wants_manual = annotations.get(ANNOTATION_PROMOTE) == "true"
    if status.get("phase") == c.SUCCEEDED:
        return PROMOTE_MANUALLY if promotion.get("decision") == "Pending" and wants_manual else None
    if status.get("phase") != c.REGISTERING:
        return None
    if not status.get("mlflowRunId") or c.condition_status(status.get("conditions"), c.TRAINED) != "True":
        return FIND_RESULT
    if not status.get("modelVersion"):
        return REGISTER
    if (spec.get("promotion") or {}).get("mode") == "manual":
        return PROMOTE_MANUALLY if wants_manual else AWAIT_MANUAL
    return GATE


def training_registered(st: Status, model_name: str, version: str) -> None:
    st.set(modelVersion=str(version), message="")
    st.condition(c.REGISTERED, True, c.VERSION_REGISTERED, f"{model_name} version {version}")
    st.event(c.VERSION_REGISTERED, f"registered {model_name} version {version}")


def training_promotion(st: Status, decision: str, reason: str, cond_reason: str, message: str,
                       inference_service: str | None = None) -> None:
    """The gate's (or a person's) decision; a run still Registering is then Succeeded."""
    record: dict[str, Any] = {"decision": decision, "reason": reason}
    if inference_service:
        record["inferenceService"] = inference_service
    st.set(promotion=record, message="")
    st.condition(c.PROMOTED, decision == "Promoted", cond_reason, message)
    st.event(cond_reason, message, warning=cond_reason == c.INFERENCE_SERVICE_NOT_FOUND)
    training_succeeded(st)


def training_rolling_out(st: Status, reason: str, inference_service: str, deployment: str, version: str) -> None:
    """Promoted by the gate (or a person): ModelDeployment ``deployment`` rolls ``inference_service`` to the
    version; the run is RollingOut until the predictor serves it (:func:`training_rollout_finished`)."""
    message = f"version {version} is production; ModelDeployment {deployment} rolls out InferenceService " \
              f"{inference_service} to it"
    st.set(promotion={"decision": "Promoted", "reason": reason, "inferenceService": inference_service},
           phase=c.ROLLING_OUT_PHASE, message="")
    st.condition(c.PROMOTED, None, c.ROLLING_OUT, message)
    st.condition(c.READY, None, c.ROLLING_OUT, message)
    st.event(c.ROLLING_OUT, message)


def training_rollout_finished(st: Status, reason: str, message: str) -> None:
    """The run's rollout ended (RolledOut, RolloutFailed or RolloutSuperseded): Succeeded with that reason."""
    if st.get("phase") != c.ROLLING_OUT_PHASE:
        return
    st.condition(c.PROMOTED, reason == c.ROLLED_OUT, reason, message)
    st.event(reason, message, warning=reason != c.ROLLED_OUT)
    if reason != c.ROLLED_OUT:
        st.set(message=message)
    training_succeeded(st)


def rollout_outcome(version: str, deployment_status: Mapping[str, Any]) -> tuple[str, str] | None:
    """How the rollout of ``version`` ended for a run waiting on it, from its ModelDeployment's status; ``None``
    while it is still in progress."""
    rollout = deployment_status.get("rollout") or {}
    if deployment_status.get("servingVersion") == version and deployment_status.get("desiredVersion") == version:
        return c.ROLLED_OUT, f"version {version} serves ({rollout.get('seconds', '?')} s rollout)"
    if rollout.get("version") == version and rollout.get("outcome") == "Failed":
        return c.ROLLOUT_FAILED, deployment_status.get("message") or f"version {version} did not become ready"
    if deployment_status.get("desiredVersion") not in (None, "", version):
        return c.ROLLOUT_SUPERSEDED, f"version {deployment_status['desiredVersion']} was put into production " \
                                     f"before version {version} served"
    return None


def training_succeeded(st: Status) -> None:
    """Done: phase Succeeded; Ready and Succeeded take the promotion's reason (Ready stays True after)."""
    promoted = st.condition_of(c.PROMOTED)
    reason, message = promoted.get("reason", c.VERSION_REGISTERED), promoted.get("message", "")
    if st.get("phase") in (c.REGISTERING, c.ROLLING_OUT_PHASE):
        st.set(phase=c.SUCCEEDED, completionTime=st.stamp())
    st.condition(c.READY, True, reason, message)
    st.condition(c.SUCCEEDED, True, reason, message)


def training_mlflow_unavailable(st: Status, message: str, reason: str = c.MLFLOW_UNAVAILABLE) -> None:
    """An MLflow (or, by ``reason``, Kubernetes) call failed in a way a retry may heal: say so (the handler
    retries); results already in status stay."""
    st.set(message=message)
    if st.get("phase") == c.REGISTERING:
        st.condition(c.READY, None, reason, message)
        if not st.get("modelVersion"):
            st.condition(c.REGISTERED, None, reason, message)


# ---------------------------------------------------------------- DriftCheck

def check_job_created(st: Status, job_name: str, created: bool, recorded: bool) -> None:
    """The current generation's check Job exists: Running until its result is recorded."""
    if created:
        st.event(c.JOB_CREATED, f"created drift Job {job_name}")
    st.set(observedGeneration=st.generation, lastJobName=job_name)
    if not recorded:
        st.set(phase=c.RUNNING)
        st.condition(c.READY, None, c.CHECK_RUNNING, f"Job {job_name} checks the current batch")


def history_names(status: Mapping[str, Any]) -> set[str]:
    return {h.get("jobName") for h in status.get("history") or []}


def check_job_active(st: Status, job_name: str) -> None:
    """A (scheduled) check Job runs: phase Running until it is recorded."""
    if job_name not in history_names(st.view):
        st.set(phase=c.RUNNING)


def check_job_finished(st: Status, job_name: str, generation: int | None, outcome: JobOutcome,
                       result: Mapping[str, Any] | None, failure: str, scheduled: bool) -> bool:
    """Record one finished check Job once; return whether it found drift."""
    if job_name in history_names(st.view):
        return False
    gen = generation or st.generation
    entry: dict[str, Any] = {"jobName": job_name, "time": st.stamp()}
    drift = False
    if outcome.state == FAILED:
        entry["result"] = DriftStatus.FAILED.value
        st.set(phase=c.FAILED, result=DriftStatus.FAILED.value, message=failure, lastCheckTime=entry["time"])
        st.condition(c.CHECKED, False, c.CHECK_FAILED, failure, gen)
        st.condition(c.READY, False, c.CHECK_FAILED, failure, gen)
        st.event(c.CHECK_FAILED, failure, warning=True)
    else:
        result = result or {}
        drift = bool(result.get("drift_detected"))
        skipped = result.get("status") == DriftStatus.SKIPPED
        outcome_name = str(result.get("status") or (DriftStatus.DRIFT if drift else DriftStatus.NO_DRIFT))
        share = float(result.get("drift_share") or 0.0)
        features = list(result.get("drifted_features") or [])
        st.set(phase=c.SCHEDULED if scheduled else c.COMPLETED, result=outcome_name, driftDetected=drift,
               driftShare=share, driftedFeatures=features, reportUri=result.get("report_uri") or "",
               mlflowRunId=result.get("run_id") or "", message=result.get("reason") or "",
               lastCheckTime=entry["time"])
        lineage = result.get("reference_from") or {}
        if lineage:
            st.set(referenceModelVersion=str(lineage.get("version") or ""),
                   referenceDatasetDigest=str(lineage.get("dataset_digest") or ""))
        entry.update(result=outcome_name, driftShare=share)
        checked_reason = c.CHECK_SKIPPED if skipped else c.CHECK_COMPLETED
        checked_message = result.get("reason", "") if skipped else f"drift share {share}"
        st.condition(c.CHECKED, True, checked_reason, checked_message, gen)
        st.condition(c.DRIFT_DETECTED, drift, c.DRIFT if drift else c.NO_DRIFT, ", ".join(features), gen)
        ready_reason = c.CHECK_SKIPPED if skipped else (c.DRIFT if drift else c.NO_DRIFT)
        st.condition(c.READY, True, ready_reason, checked_message, gen)
        if drift:
            st.event(c.DRIFT, f"drift share {share}: {', '.join(features)}")
    st.set(history=[*(st.get("history") or []), entry][-HISTORY_LIMIT:])
    return drift


def retraining_allowed(on_drift: Mapping[str, Any], last_retrain: str | None, active_runs: list[str],
                       now: datetime) -> tuple[bool, str]:
    """Whether drift may start a TrainingRun now: never while one runs, nor inside the cooldown."""
    if not on_drift.get("retrain"):
        return False, "onDrift.retrain is off"
    if active_runs:
        return False, f"retraining {active_runs[0]} is still running"
    last = c.parse_time(last_retrain)
    cooldown = int(on_drift.get("cooldownSeconds", 3600))
    if last and (now - last).total_seconds() < cooldown:
        return False, f"inside the {cooldown}s retraining cooldown"
    return True, ""


def retraining_started(st: Status, job_name: str, run_name: str, created: bool) -> None:
    """Drift of ``job_name`` made ``run_name``: point the status and that history entry at it."""
    st.set(triggeredTrainingRun=run_name, lastRetrainTime=st.stamp())
    st.set(history=[dict(h, triggeredTrainingRun=run_name) if h.get("jobName") == job_name else h
                    for h in st.get("history") or []])
    if created:
        st.event(c.RETRAINING_STARTED, f"created TrainingRun {run_name}")
