"""ModelDeployment handlers: keep spec.version and the MLflow production alias equal, roll the InferenceService to
that version, and report it served only once the predictor says so.

Each pass is fetch -> decide (:mod:`.rollouts`) -> act -> write (:func:`.status.update`). A pass runs when a
ModelDeployment's spec changes (kopf) and, for every known ModelDeployment, from one loop: every
``--rollout-check-seconds`` while a rollout is in progress, else every ``--deploy-sync-seconds`` (which bounds how
long a move of the alias in MLflow takes to reach the cluster). No finalizer: nothing outside the cluster
depends on a ModelDeployment existing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import kopf
import requests
from kubernetes.client.rest import ApiException

from visionops import production

from . import builders, kube, metrics, rollouts, status, tracking
from . import conditions as c
from .decisions import Status
from .peering import Replica
from .settings import OperatorSettings
from .status import Decision

PLURAL = production.PLURAL
RESOURCE = (production.GROUP, production.VERSION, PLURAL)
PROBE_TIMEOUT = 2.0
log = logging.getLogger(__name__)


class Deployments:
    """The ModelDeployments this operator has seen, when each is next due, and one lock each; thread-safe."""

    def __init__(self) -> None:
        self._due: dict[tuple[str, str], float] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def track(self, namespace: str, name: str, due: float = 0.0) -> None:
        with self._lock:
            self._due[(namespace, name)] = due
            self._locks.setdefault((namespace, name), threading.Lock())

    def ensure(self, namespace: str, name: str) -> None:
        """Track a ModelDeployment not tracked yet (due at once); leave a tracked one's schedule alone."""
        with self._lock:
            if (namespace, name) not in self._due:
                self._due[(namespace, name)] = 0.0
                self._locks.setdefault((namespace, name), threading.Lock())

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._due.pop((namespace, name), None)

    def lock(self, namespace: str, name: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def due(self, now: float) -> list[tuple[str, str]]:
        with self._lock:
            return [key for key, at in self._due.items() if at <= now]


@kopf.on.event(*RESOURCE)
async def seen(event: kopf.RawEvent, body: kopf.Body, namespace: str, name: str, memo: kopf.Memo,
               logger: kopf.Logger, **_: Any) -> None:
    """Track every ModelDeployment; act at once on a new one or a changed spec (not on our own status writes).

    The first one starts :func:`loop` from here, inside kopf's own context (where its Event poster lives)."""
    if memo.get("deployment_loop") is None:
        memo.deployment_loop = asyncio.create_task(loop(memo.deployments, memo.settings, log, memo.replica))
    if event["type"] == "DELETED":
        memo.deployments.forget(namespace, name)
        return
    if body["metadata"].get("generation") != (body.get("status") or {}).get("observedGeneration"):
        await asyncio.to_thread(reconcile, namespace, name, memo.settings, memo.deployments, logger)
    else:
        memo.deployments.ensure(namespace, name)


async def loop(deployments: Deployments, settings: OperatorSettings, logger: logging.Logger, replica: Replica) -> None:
    """Reconcile every ModelDeployment when it is due, while this replica acts, until cancelled (at operator
    cleanup)."""
    while True:
        await asyncio.sleep(min(settings.rollout_check_seconds, settings.deploy_sync_seconds))
        due = deployments.due(time.monotonic())
        if not due or not await asyncio.to_thread(replica.acting, logger):
            continue
        for namespace, name in due:
            try:
                await asyncio.to_thread(reconcile, namespace, name, settings, deployments, logger)
            except Exception as exc:  # the next pass tries again
                logger.warning(f"ModelDeployment {namespace}/{name}: {type(exc).__name__}: {exc}")
                deployments.track(namespace, name, time.monotonic() + settings.deploy_sync_seconds)


def reconcile(namespace: str, name: str, settings: OperatorSettings, deployments: Deployments,
              logger: logging.Logger) -> None:
    """One pass over one ModelDeployment (serialised per resource)."""
    with deployments.lock(namespace, name):
        md = kube.get_custom(namespace, PLURAL, name)
        if md is None:
            deployments.forget(namespace, name)
            return
        written = _reconcile(md, settings, logger)
        rolling = (written or {}).get("phase") == rollouts.ROLLING_OUT
        wait = settings.rollout_check_seconds if rolling else settings.deploy_sync_seconds
        deployments.track(namespace, name, time.monotonic() + wait)


def _reconcile(md: Mapping[str, Any], settings: OperatorSettings, logger: logging.Logger) -> dict[str, Any] | None:
    meta, spec, current = md["metadata"], md.get("spec") or {}, md.get("status") or {}
    namespace, name = meta["namespace"], meta["name"]
    model = (spec.get("model") or {}).get("name") or ""

    def write(*decisions: Decision) -> dict[str, Any] | None:
        done = status.update(PLURAL, namespace, name, *decisions, _observed, uid=meta["uid"])
        return done.view if done else None

    if not settings.mlflow_uri:
        return write(partial(rollouts.unavailable, reason=c.MLFLOW_DOWN,
                             message="the operator has no MLflow tracking URI (--mlflow-uri)"))
    mlflow = tracking.client(settings.mlflow_uri)
    desired = str(current.get("desiredVersion") or "")
    try:
        alias = production.alias_version(mlflow, model)
    except Exception as exc:
        logger.warning(f"ModelDeployment {namespace}/{name}: reading the production alias failed: {exc}")
        alias = None
    target = rollouts.choose_target(str(spec.get("version") or ""), alias, desired)
    if target.source == rollouts.NONE:
        return write(partial(rollouts.no_model, model_name=model))
    decisions: list[Decision] = []
    try:
        if target.source in (rollouts.SPEC, rollouts.ALIAS):
            decisions.append(change_production(md, mlflow, target, desired))
    except production.ProductionError as exc:
        kube.patch_custom(namespace, PLURAL, name, {"spec": {"version": desired or None}})
        return write(partial(rollouts.version_not_found, version=target.version,
                             message=f"{exc}; spec.version went back to {desired or 'none'}"))
    except ApiException as exc:  # spec.version written back: Kubernetes refused, not MLflow
        transient, said = kube.refusal(exc)
        reason = c.KUBERNETES_UNAVAILABLE if transient else c.KUBERNETES_REFUSED
        return write(partial(rollouts.unavailable, reason=reason, message=f"the Kubernetes API refused writing "
                             f"spec.version: {said}" + ("; trying again" if transient else "")))
    except Exception as exc:
        return write(partial(rollouts.unavailable, reason=c.MLFLOW_DOWN,
                             message=f"MLflow call failed ({type(exc).__name__}: {str(exc)[:200]}); trying again"))
    decisions.append(roll(md, target.version, current, model, mlflow, settings, logger))
    written = write(*decisions)
    if written is not None:
        after_write(md, written, current, mlflow, model, logger)
    return written


def change_author(md: Mapping[str, Any]) -> tuple[str, str]:
    """(who set spec.version: the field manager that owns it, the change cause sent with it in the same request)."""
    owner = None
    for entry in (md["metadata"].get("managedFields") or []):
        fields = entry.get("fieldsV1") or {}
        newer = owner is None or (entry.get("time") or "") >= (owner.get("time") or "")
        if "f:version" in (fields.get("f:spec") or {}) and newer:
            owner = entry
    if owner is None:
        return "unknown", ""
    annotations = ((owner.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations") or {}
    cause = ""
    if f"f:{production.CHANGE_CAUSE}" in annotations:
        cause = (md["metadata"].get("annotations") or {}).get(production.CHANGE_CAUSE, "")
    return owner.get("manager") or "unknown", cause


def _observed(st: Status) -> None:
    """Every pass records the generation it reconciled."""
    st.set(observedGeneration=st.generation)


def change_production(md: Mapping[str, Any], mlflow: Any, target: rollouts.Target, desired: str) -> Decision:
    """Make spec.version and the alias agree on ``target`` (raises ProductionError for a version MLflow lacks)."""
    meta, model = md["metadata"], (md["spec"].get("model") or {}).get("name") or ""
    run_id = production.version_run_id(mlflow, model, target.version)
    now = c.now_iso()
    if target.source == rollouts.SPEC:
        who, cause = change_author(md)
        production.move_alias(mlflow, model, target.version, cause or f"set by {who} on ModelDeployment {meta['name']}")
    else:
        who, cause = production.ALIAS_MOVER, "the production alias was moved in MLflow"
        kube.patch_custom(meta["namespace"], PLURAL, meta["name"], production.set_version_patch(target.version, cause))
    entry = production.history_entry(target.version, who, now, run_id, cause)
    return partial(rollouts.production_changed, target=target.version, entry=entry)


def roll(md: Mapping[str, Any], version: str, current: Mapping[str, Any], model: str, mlflow: Any,
         settings: OperatorSettings, logger: logging.Logger) -> Decision:
    """Point the InferenceService at ``version``, or see how far it got; a rollout past its time goes back."""
    namespace, isvc_name = md["metadata"]["namespace"], md["spec"]["inferenceService"]
    uri = production.model_uri(model, version)
    isvc = kube.read_inference_service(namespace, isvc_name)
    if isvc is None:
        return partial(rollouts.unavailable, reason=c.ISVC_MISSING,
                       message=f"InferenceService {isvc_name} not found in {namespace}")
    if rollouts.isvc_uri(isvc) != uri:
        kube.patch_inference_service(namespace, isvc_name, builders.inference_service_patch(isvc, uri, version))
        logger.info(f"InferenceService {isvc_name} -> {uri}")
        return partial(rollouts.rollout_started, version=version, uri=uri)
    pods = [rollouts.predictor_pod(p) for p in kube.pods(namespace, f"{rollouts.ISVC_LABEL}={isvc_name}")]
    reported = {p.name: probe(p, version, settings) for p in pods if p.uri == uri and not p.terminating}
    rollout = current.get("rollout") or {}
    in_progress = rollout.get("version") == version and rollout.get("outcome") == production.IN_PROGRESS
    started = c.parse_time(rollout.get("startTime")) if in_progress else None
    elapsed = (status.utcnow() - started).total_seconds() if started else 0.0
    timeout = float((md["spec"].get("rollout") or {}).get("timeoutSeconds") or 300) if in_progress else math.inf
    seen = rollouts.observe_rollout(uri, version, rollouts.isvc_ready(isvc), pods, reported, elapsed, timeout)
    if seen.state == rollouts.SERVED:
        return partial(rollouts.rollout_served, version=version, message=seen.message)
    if seen.state == rollouts.WAITING:
        return partial(rollouts.rollout_waiting, message=seen.message)
    back = str(current.get("servingVersion") or "")
    back = back if back and back != version else ""
    if back:
        go_back(md, isvc_name, model, version, back, mlflow)
    production.tag_rollout(mlflow, model, version, "failed", seen.message)
    return partial(rollouts.rollout_failed, version=version, message=seen.message, back_to=back,
                   back_uri=production.model_uri(model, back) if back else "")


def go_back(md: Mapping[str, Any], isvc_name: str, model: str, failed: str, back: str, mlflow: Any) -> None:
    """After a failed rollout: the InferenceService, the alias and spec.version back on ``back``."""
    namespace, name = md["metadata"]["namespace"], md["metadata"]["name"]
    isvc = kube.read_inference_service(namespace, isvc_name) or {}
    kube.patch_inference_service(namespace, isvc_name,
                                 builders.inference_service_patch(isvc, production.model_uri(model, back), back))
    cause = f"version {failed} did not become ready; back to version {back}"
    production.move_alias(mlflow, model, back, cause)
    kube.patch_custom(namespace, PLURAL, name, production.set_version_patch(back, cause))


def probe(pod: rollouts.PredictorPod, version: str, settings: OperatorSettings) -> list[str] | str:
    """What the predictor in ``pod`` says: the versions its /metrics serves (ready pod), or why it is not ready."""
    if not pod.ip:
        return ""
    if not settings.probe_predictors:
        return [version] if pod.ready else ""
    base = f"http://{pod.ip}:{pod.port}"
    try:
        if pod.ready:
            response = requests.get(f"{base}/metrics", timeout=PROBE_TIMEOUT)
            response.raise_for_status()
            return production.served_versions(response.text)
        response = requests.get(f"{base}/v2/health/ready", timeout=PROBE_TIMEOUT)
    except requests.RequestException as exc:
        return f"cannot reach its predictor ({type(exc).__name__})" if pod.ready else ""
    if response.ok:
        return ""
    try:
        said = response.json().get("error") or response.text
    except ValueError:
        said = response.text
    return f"predictor not ready: {str(said).strip()[:500]}"


# Told (namespace, InferenceService, the ModelDeployment's written status) when a rollout or the desired version
# changes. handlers.py, where the handlers are assembled, subscribes the TrainingRuns waiting on a rollout
# (training.follow_rollout): this module does not import training, which imports it.
RolloutListener = Callable[[str, str, Mapping[str, Any]], None]
_rollout_listeners: list[RolloutListener] = []


def on_rollout_change(listener: RolloutListener) -> None:
    """Call ``listener`` after every rollout change (once, however often it is subscribed)."""
    if listener not in _rollout_listeners:
        _rollout_listeners.append(listener)


def after_write(md: Mapping[str, Any], written: Mapping[str, Any], before: Mapping[str, Any], mlflow: Any,
                model: str, logger: logging.Logger) -> None:
    """Once the status is written: the history on the registered model, the rollout tag, the TrainingRuns."""
    rollout, was = written.get("rollout") or {}, before.get("rollout") or {}
    ended = rollout.get("outcome") in (production.SUCCEEDED, production.FAILED) and \
        (rollout.get("outcome"), rollout.get("startTime")) != (was.get("outcome"), was.get("startTime"))
    if ended:  # this write ended the rollout: counted once
        metrics.ROLLOUTS.labels(md["metadata"]["namespace"], md["metadata"]["name"], rollout["outcome"]).inc()
    try:
        if written.get("history") != before.get("history"):
            production.record_history(mlflow, model, written.get("history") or [])
        if rollout.get("outcome") == production.SUCCEEDED and rollout != was:
            production.tag_rollout(mlflow, model, rollout["version"], "served")
    except Exception as exc:  # the cluster's status is written; MLflow's copy catches up at the next change
        logger.warning(f"recording the production history in MLflow failed: {exc}")
    changed = (written.get("rollout") or {}) != (before.get("rollout") or {}) or \
        written.get("desiredVersion") != before.get("desiredVersion")
    if changed:
        for listener in _rollout_listeners:
            listener(md["metadata"]["namespace"], md["spec"]["inferenceService"], written)


def deployment_for(namespace: str, isvc_name: str, model: str) -> str:
    """The ModelDeployment of ``isvc_name``: the existing one, or a new one of the same name."""
    for md in kube.list_custom(namespace, PLURAL):
        if (md.get("spec") or {}).get("inferenceService") == isvc_name:
            return md["metadata"]["name"]
    body = {"apiVersion": f"{production.GROUP}/{production.VERSION}", "kind": production.KIND,
            "metadata": {"name": isvc_name, "labels": {builders.LABEL_COMPONENT: "predictor"}},
            "spec": {"model": {"name": model}, "inferenceService": isvc_name}}
    return kube.create_custom(namespace, PLURAL, body)[0]["metadata"]["name"]
