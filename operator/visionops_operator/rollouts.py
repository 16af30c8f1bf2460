"""A ModelDeployment's state machine as pure functions: what production should be, and whether it serves yet.

:func:`choose_target` decides which version production moves to from ``spec.version``, the MLflow alias and the
last agreed version; :func:`observe_rollout` reads the InferenceService and its predictor pods (as plain
:class:`PredictorPod` views) into serving / waiting / failed. The handlers in :mod:`.deployments` fetch, call
these, act, and write the :class:`~.decisions.Status` changes through the one status writer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from visionops import production
from visionops.contract import PREDICTOR_LINE_PREFIX

from . import conditions as c
from .builders import MODEL_URI_ENV, PREDICTOR_CONTAINER
from .decisions import Status

NO_MODEL, ROLLING_OUT, SERVING, ROLLOUT_FAILED = (production.NO_MODEL, production.ROLLING_OUT, production.SERVING,
                                                  production.ROLLOUT_FAILED)
SPEC, ALIAS, STEADY, NONE = "spec", "alias", "steady", "none"
WAITING, SERVED, FAILED = "waiting", "served", "failed"
ISVC_LABEL = "serving.kserve.io/inferenceservice"


@dataclass(frozen=True)
class Target:
    """Where production goes: ``version`` ("" for none), and which side changed (:data:`SPEC`, :data:`ALIAS`,
    :data:`STEADY` or :data:`NONE`)."""

    version: str
    source: str


def choose_target(spec_version: str, alias_version: str | None, desired: str) -> Target:
    """The production version from ``spec.version``, the alias (``None``: MLflow could not say) and the last
    agreed version: a change of spec.version wins, then a move of the alias; else nothing changed."""
    if spec_version and spec_version != desired:
        return Target(spec_version, SPEC)
    if alias_version and alias_version != desired:
        return Target(alias_version, ALIAS)
    if not desired:
        return Target("", NONE)
    return Target(desired, STEADY)


@dataclass(frozen=True)
class PredictorPod:
    """What the rollout needs to know of one predictor pod."""

    name: str
    uri: str
    ready: bool
    terminating: bool
    ip: str = ""
    port: int = 8080
    problem: str = ""  # why it is not ready, from its container statuses (waiting reason, last termination)


def predictor_pod(pod: Mapping[str, Any]) -> PredictorPod:
    """A :class:`PredictorPod` view of a pod of the InferenceService's predictor."""
    spec, st = pod.get("spec") or {}, pod.get("status") or {}
    containers = spec.get("containers") or [{}]
    container = next((x for x in containers if x.get("name") == PREDICTOR_CONTAINER), containers[0])
    env = {e.get("name"): e.get("value", "") for e in container.get("env") or []}
    ports = [p.get("containerPort") for p in container.get("ports") or [] if p.get("containerPort")]
    ready = any(x.get("type") == "Ready" and x.get("status") == "True" for x in st.get("conditions") or [])
    problems = []
    for cs in st.get("containerStatuses") or []:
        if cs.get("name") != container.get("name"):
            continue
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            problems.append(f"{waiting['reason']}: {waiting.get('message', '')}".rstrip(": "))
        last = (cs.get("lastState") or {}).get("terminated") or {}
        if last:
            said = last_words(last.get("message") or "") or last.get("reason", "")
            problems.append(f"last exit {last.get('exitCode')}: {said}")
    return PredictorPod(name=(pod.get("metadata") or {}).get("name", ""), uri=env.get(MODEL_URI_ENV, ""),
                        ready=ready, terminating=bool((pod.get("metadata") or {}).get("deletionTimestamp")),
                        ip=st.get("podIP") or "", port=int(ports[0]) if ports else 8080,
                        problem="; ".join(problems))


def last_words(log_tail: str, limit: int = 600) -> str:
    """What a predictor said last before it exited: from its last own line (``visionops serve: ...``, whose
    error may span lines) to the end, on one line; else the last line of the tail."""
    lines = [line.strip() for line in log_tail.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    own = [i for i, line in enumerate(lines) if line.startswith(PREDICTOR_LINE_PREFIX)]
    said = " ".join(lines[own[-1]:]) if own else lines[-1]
    return said if len(said) <= limit else said[:limit] + "..."


def isvc_uri(isvc: Mapping[str, Any]) -> str:
    """The model URI an InferenceService's predictor is pointed at ("" when none)."""
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    containers = predictor.get("containers") or []
    if containers:
        container = next((x for x in containers if x.get("name") == PREDICTOR_CONTAINER), containers[0])
        env = container.get("env")
    else:
        env = (predictor.get("model") or {}).get("env")
    return next((e.get("value", "") for e in env or [] if e.get("name") == MODEL_URI_ENV), "")


def isvc_ready(isvc: Mapping[str, Any]) -> bool:
    return c.condition_status((isvc.get("status") or {}).get("conditions"), c.READY) == "True"


@dataclass(frozen=True)
class Observation:
    """The rollout's state: :data:`SERVED`, :data:`WAITING` or :data:`FAILED`, and in words."""

    state: str
    message: str


def observe_rollout(uri: str, version: str, isvc_is_ready: bool, pods: Iterable[PredictorPod],
                    reported: Mapping[str, list[str] | str], elapsed: float, timeout: float) -> Observation:
    """Whether ``version`` (at ``uri``) serves: the InferenceService Ready, a Ready pod of it whose predictor
    reports ``version`` (``reported``: pod name -> versions from its /metrics, or the error reading them), and no
    Ready pod of another version left. Past ``timeout`` seconds it failed, with the new pods' own errors."""
    live = [p for p in pods if not p.terminating]
    new = [p for p in live if p.uri == uri]
    old_ready = [p for p in live if p.uri != uri and p.ready]
    confirmed = [p for p in new if p.ready and isinstance(reported.get(p.name), list)
                 and version in reported[p.name]]
    if isvc_is_ready and confirmed and not old_ready:
        return Observation(SERVED, f"pod {confirmed[0].name} serves version {version}")
    why = rollout_problems(new, reported, version)
    if elapsed >= timeout:
        return Observation(FAILED, f"version {version} did not become ready within {timeout:g} s: {why}")
    return Observation(WAITING, f"rolling out version {version} ({elapsed:.0f}/{timeout:g} s): {why}")


def rollout_problems(new: list[PredictorPod], reported: Mapping[str, list[str] | str], version: str) -> str:
    """The new pods' state in words: the predictor's own readiness message or error, else the container's."""
    if not new:
        return "no predictor pod of the new version yet"
    parts = []
    for pod in new:
        said = reported.get(pod.name)
        if pod.ready and isinstance(said, list):
            parts.append(f"pod {pod.name} is ready but its predictor serves {', '.join(said) or 'nothing'}")
        elif isinstance(said, str) and said:
            parts.append(f"pod {pod.name}: {said}")
        elif pod.problem:
            parts.append(f"pod {pod.name}: {pod.problem}")
        else:
            parts.append(f"pod {pod.name} is {'ready' if pod.ready else 'not ready yet'}")
    return "; ".join(parts)


# ---------------------------------------------------------------- status decisions


def no_model(st: Status, model_name: str) -> None:
    st.set(phase=NO_MODEL, observedGeneration=st.generation,
           message=f"no version of {model_name} chosen and no production alias yet")
    st.condition(c.READY, False, c.NO_MODEL, st.get("message"))


def unavailable(st: Status, reason: str, message: str) -> None:
    """Something outside (MLflow, the InferenceService) stops the reconcile; say so, change nothing else."""
    if st.get("message") != message:
        st.event(reason, message, warning=True)
    st.set(message=message)
    st.condition(c.READY, False, reason, message)


def version_not_found(st: Status, version: str, message: str) -> None:
    """spec.version names a version MLflow does not have: refused (spec.version goes back)."""
    st.set(phase=ROLLOUT_FAILED, message=message, observedGeneration=st.generation)
    st.set(history=production.append_history(st.get("history"), dict(production.history_entry(
        version, ROLLOUT_FAILED, st.stamp()), outcome=c.VERSION_NOT_FOUND)))
    st.condition(c.READY, False, c.VERSION_NOT_FOUND, message)
    st.event(c.VERSION_NOT_FOUND, message, warning=True)


def production_changed(st: Status, target: str, entry: Mapping[str, Any]) -> None:
    """Production moved to ``target`` (entry: who and why): recorded in the history; the rollout follows."""
    st.set(desiredVersion=target, observedGeneration=st.generation,
           history=production.append_history(st.get("history"), entry))


def rollout_started(st: Status, version: str, uri: str) -> None:
    st.set(phase=ROLLING_OUT, modelUri=uri, message=f"rolling out version {version}",
           rollout={"version": version, "startTime": st.stamp(), "outcome": production.IN_PROGRESS})
    st.condition(c.READY, None, c.ROLLING_OUT, f"rolling out version {version}")
    st.event(c.ROLLING_OUT, f"rolling out version {version} ({uri})")


def rollout_waiting(st: Status, message: str) -> None:
    st.set(message=message)
    st.condition(c.READY, None, c.ROLLING_OUT, message)


def rollout_served(st: Status, version: str, message: str) -> None:
    """The predictor serves ``version``: Serving, Ready; the version that served before becomes previous."""
    serving = st.get("servingVersion") or ""
    if serving and serving != version:
        st.set(previousVersion=serving)
    rollout = dict(st.get("rollout") or {})
    in_progress = rollout.get("outcome") == production.IN_PROGRESS and rollout.get("version") == version
    if in_progress:
        started = c.parse_time(rollout.get("startTime"))
        rollout.update(outcome=production.SUCCEEDED, endTime=st.stamp(),
                       seconds=round((st.now - started).total_seconds(), 1) if started else 0.0)
        st.set(rollout=rollout, history=production.mark_last(st.get("history"), version, "Served"))
    keep_failure = st.get("phase") == ROLLOUT_FAILED and not in_progress
    st.set(servingVersion=version)
    if keep_failure:
        return  # back on the version that served before a failed rollout: the failure stays visible
    st.set(phase=SERVING, message=message)
    st.condition(c.READY, True, c.SERVING, message)
    if in_progress:
        st.event(c.SERVING, f"version {version} serves ({rollout['seconds']} s after the rollout started)")


def rollout_failed(st: Status, version: str, message: str, back_to: str = "", back_uri: str = "") -> None:
    """``version`` did not become ready: RolloutFailed; production goes back to ``back_to`` at ``back_uri`` (if any
    served before)."""
    rollout = dict(st.get("rollout") or {}, version=version, outcome=production.FAILED, endTime=st.stamp())
    started = c.parse_time(rollout.get("startTime"))
    if started:
        rollout["seconds"] = round((st.now - started).total_seconds(), 1)
    history = production.mark_last(st.get("history"), version, ROLLOUT_FAILED)
    if back_to:
        message = f"{message}; production went back to version {back_to}"
        history = production.append_history(history, production.history_entry(
            back_to, production.ROLLBACK_MOVER, st.stamp(), cause=f"version {version} did not become ready"))
        st.set(desiredVersion=back_to, modelUri=back_uri)
    st.set(phase=ROLLOUT_FAILED, rollout=rollout, history=history, message=message)
    st.condition(c.READY, False, c.ROLLOUT_FAILED, message)
    st.event(c.ROLLOUT_FAILED, message, warning=True)
