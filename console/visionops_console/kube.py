"""The console's Kubernetes side: read and write custom resources, Jobs, Events and pod logs as the console's own
identity (its ServiceAccount in a pod, the kubeconfig's user elsewhere). Plain REST calls on the official
``kubernetes`` client's connection (:mod:`visionops.kube_rest`, the operator's idiom too: dicts in and out, no
generated models); every call has a timeout, and a cluster that cannot be reached becomes
:class:`ClusterUnavailable` with a sentence a person can read.

Writes are few and declarative: create a TrainingRun, delete a training Job or a TrainingRun (stop), annotate a
TrainingRun for manual promotion (the documented ``visionops.io/promote=true``), create one check Job from a
DriftCheck's own Job template ("check now"), and set a ModelDeployment's ``spec.version`` ("set production",
"roll back": the merge patch of :func:`visionops.production.set_version_patch`, as ``visionops deploy`` sends it).
Pure helpers (request bodies, rejection parsing) come first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from visionops import kube_rest, production
from visionops.contract import DRIFT_CHECK_LABEL as LABEL_DRIFT_CHECK
from visionops.contract import MODEL_URI_ENV
from visionops.contract import MODEL_VERSION_ANNOTATION as ANNOTATION_MODEL_VERSION
from visionops.contract import PROMOTE_ANNOTATION as ANNOTATION_PROMOTE
from visionops.contract import TRAINING_RUN_LABEL as LABEL_TRAINING_RUN
from visionops.kube_rest import api_path
from visionops_console import GROUP, VERSION

KSERVE = ("serving.kserve.io", "v1beta1")
ANNOTATION_TRIGGERED_BY = f"{GROUP}/triggered-by"
CREATED_BY_LABEL = "app.kubernetes.io/created-by"
CREATED_BY = "visionops-console"
FIELD_MANAGER = CREATED_BY  # the field manager of the console's writes (a ModelDeployment's history names it)
SET_CAUSE, ROLLBACK_CAUSE = "console: set production", "console: rollback"  # change causes of the Deploy step
# Labels the Job controller adds to a Job's pod template; a copied template must not carry them.
_JOB_CONTROLLER_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid", "job-name",
                          "batch.kubernetes.io/job-name")
PROBE_SECONDS = 5.0
SCHEMA_SECONDS = 60.0  # the published schema changes only when the CRD does
log = logging.getLogger("visionops.console")
_INDEX = re.compile(r"\[\d+\]$")


class ClusterUnavailable(RuntimeError):
    """No cluster answers (no kubeconfig, refused, timed out, not authorised); the message says which."""


@dataclass
class Rejection(Exception):
    """The apiserver refused a write: its status code, its message, and the message per spec field (word for word)."""

    status: int
    message: str
    fields: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "message": self.message, "fields": self.fields}


# -- pure helpers -------------------------------------------------------------------------------------------


def rejection(status: int, body: str | bytes | None, reason: str = "") -> Rejection:
    """A :class:`Rejection` from an apiserver error answer (a ``Status`` object): ``details.causes[].field``
    keyed without list indices (``spec.dataset.products[1]`` -> ``spec.dataset.products``)."""
    try:
        doc = json.loads(body or "{}")
    except (TypeError, ValueError):
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    message = str(doc.get("message") or reason or f"HTTP {status}")
    fields: dict[str, list[str]] = {}
    for cause in (doc.get("details") or {}).get("causes") or []:
        name = _INDEX.sub("", str(cause.get("field") or ""))
        text = str(cause.get("message") or cause.get("reason") or "")
        if name and text:
            fields.setdefault(name, []).append(text)
    if status == 409 and not fields:
        fields["metadata.name"] = [message]
    return Rejection(status, message, fields)


def refusal(exc: Any, verb: str, what: str, namespace: str, user: str = "") -> Rejection:
    """The console's one reading of an apiserver refusal of a write (``ApiException``): the apiserver's own message
    and field causes (:func:`rejection`); an RBAC refusal also says who lacks which permission (the signed-in
    ``user``, else the console's own identity)."""
    refused = rejection(exc.status, exc.body, exc.reason)
    if exc.status == 403 and user:
        refused.message = (f"{user} may not {verb} {what} in namespace {namespace} (Kubernetes RBAC: ask for "
                           f"{verb} on {what.lower()}, e.g. a binding to the console's editor Role): "
                           f"{refused.message}")
    elif exc.status == 403:
        refused.message = (f"the console may not {verb} {what} in namespace {namespace} (RBAC: its Role needs "
                           f"{verb} on {what.lower()}): {refused.message}")
    return refused


def _number(value: Any) -> Any:
    """A form value as the number it spells (int when integral), else unchanged (the apiserver judges it)."""
    if isinstance(value, bool) or not isinstance(value, str):
        return value
    text = value.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return value
    return number if number == number and number not in (float("inf"), float("-inf")) else value


HYPERPARAMETERS = ("epochs", "batch", "imgsz", "lr0", "patience", "seed")


def training_run_body(form: Mapping[str, Any], *, pvc: str) -> dict[str, Any]:
    """The TrainingRun a filled-in training form asks for. Empty fields are left out (the CRD's defaults apply);
    values are passed as typed, so that the apiserver, not the console, says what is wrong with them."""

    def given(key: str) -> Any:
        value = form.get(key)
        if isinstance(value, str):
            value = value.strip()
        return None if value in (None, "", []) else value

    spec: dict[str, Any] = {"dataset": {"pvc": given("pvc") or pvc}}
    if given("datasetPath") is not None:
        spec["dataset"]["path"] = given("datasetPath")
    products = form.get("products") or []
    if isinstance(products, str):
        products = [p.strip() for p in products.split(",") if p.strip()]
    if products:
        spec["dataset"]["products"] = list(products)
    hyper = {k: _number(given(k)) for k in HYPERPARAMETERS if given(k) is not None}
    if hyper:
        spec["hyperparameters"] = hyper
    resources = {}
    if given("cpu") is not None:
        resources["cpu"] = _number(given("cpu")) if re.fullmatch(r"\d+", str(given("cpu"))) else given("cpu")
    if given("memory") is not None:
        resources["memory"] = str(given("memory"))
    if given("gpu") is not None:
        resources["gpu"] = _number(given("gpu"))
    if resources:
        spec["resources"] = resources
    if given("modelName") is not None:
        spec["model"] = {"name": given("modelName")}
    promotion = {}
    if given("mode") is not None:
        promotion["mode"] = given("mode")
    for key in ("map50Threshold", "maxClassRegressionPoints"):
        if given(key) is not None:
            promotion[key] = _number(given(key))
    if given("inferenceService") is not None:
        promotion["inferenceService"] = given("inferenceService")
    if promotion:
        spec["promotion"] = promotion
    metadata: dict[str, Any] = {"labels": {CREATED_BY_LABEL: CREATED_BY}}
    if given("name") is not None:
        metadata["name"] = str(given("name"))
    else:
        metadata["generateName"] = "console-"
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingRun", "metadata": metadata, "spec": spec}


def check_now_job(check: Mapping[str, Any], template: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """One check Job for a DriftCheck, made from its own Job template (its CronJob's ``jobTemplate`` or the Job
    of its current generation), owned by the DriftCheck: what ``kubectl create job --from=cronjob/...`` does.
    The operator records its result like any other check Job of that DriftCheck."""
    meta = check["metadata"]
    spec = json.loads(json.dumps(template.get("spec") or {}))
    for key in ("selector", "manualSelector", "suspend"):
        spec.pop(key, None)
    pod_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    pod_meta["labels"] = {k: v for k, v in (pod_meta.get("labels") or {}).items() if k not in _JOB_CONTROLLER_LABELS}
    t_meta = template.get("metadata") or {}
    labels = {k: v for k, v in (t_meta.get("labels") or {}).items() if k not in _JOB_CONTROLLER_LABELS}
    labels[LABEL_DRIFT_CHECK] = meta["name"]
    annotations = {k: v for k, v in (t_meta.get("annotations") or {}).items() if k.startswith(f"{GROUP}/")}
    annotations[ANNOTATION_TRIGGERED_BY] = CREATED_BY
    suffix = f"-now-{now.strftime('%Y%m%d%H%M%S')}"
    name = meta["name"][: 63 - len(suffix)].rstrip("-") + suffix
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": name, "labels": labels, "annotations": annotations,
            "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftCheck", "name": meta["name"],
                                 "uid": meta["uid"], "controller": True}],
        },
        "spec": spec,
    }


def served_version(isvc: Mapping[str, Any] | None) -> dict[str, str]:
    """What an InferenceService serves: the model URI of its predictor and the version annotation the operator
    writes on rollout."""
    if not isvc:
        return {}
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    uri = ""
    for container in predictor.get("containers") or []:
        for env in container.get("env") or []:
            if env.get("name") == MODEL_URI_ENV:
                uri = env.get("value") or ""
    if not uri:
        uri = ((predictor.get("model") or {}).get("storageUri")) or ""
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    return {"modelUri": uri, "version": annotations.get(ANNOTATION_MODEL_VERSION, "")}


def condition(obj: Mapping[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return {}


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


# -- the client ---------------------------------------------------------------------------------------------


class Cluster:
    """Lazy, thread-safe access to one namespace of a cluster. Nothing connects until a page asks."""

    def __init__(self, kubeconfig: str = "", namespace: str = "", timeout: float = 10.0):
        self._kubeconfig = kubeconfig
        self._namespace = namespace
        self.timeout = timeout
        self.user = ""  # who this connection acts as when it is a signed-in person's (as_user); "": the console
        self._lock = threading.Lock()
        self._api: Any = None
        self._config_error: str | None = None
        self._probe: tuple[float, str | None] = (0.0, None)
        self._schema: tuple[float, dict[str, Any] | None] = (float("-inf"), None)

    # connection ---------------------------------------------------------------------------------------------

    def _client(self) -> Any:
        with self._lock:
            if self._api is not None:
                return self._api
            if self._config_error is not None:
                raise ClusterUnavailable(self._config_error)
            import os

            from kubernetes import client, config
            from kubernetes.config.config_exception import ConfigException

            try:
                if not self._kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
                    config.load_incluster_config()
                    self._api = client.ApiClient()
                    if not self._namespace:
                        path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
                        found = Path(path).read_text().strip() if os.path.exists(path) else ""
                        self._namespace = found or "default"
                else:
                    path = self._kubeconfig or None
                    self._api = config.new_client_from_config(config_file=path)
                    if not self._namespace:
                        _, active = config.list_kube_config_contexts(config_file=path)
                        self._namespace = (active or {}).get("context", {}).get("namespace") or "default"
            except (ConfigException, OSError, TypeError, ValueError) as exc:
                where = self._kubeconfig or "~/.kube/config"
                self._config_error = f"no usable Kubernetes configuration ({where}): {exc}"
                raise ClusterUnavailable(self._config_error) from None
            return self._api

    def as_user(self, token: str) -> Cluster:
        """A connection to the same API server and namespace that authenticates with ``token`` alone (no client
        certificate, no refreshed ServiceAccount token of the console's): what a signed-in person's changes use.
        ``.user`` is set by :meth:`whoami`."""
        import copy

        from kubernetes import client

        conf = copy.deepcopy(self._client().configuration)
        conf.api_key, conf.api_key_prefix = {"authorization": f"Bearer {token}"}, {}
        conf.refresh_api_key_hook = None
        conf.cert_file = conf.key_file = None
        conf.username = conf.password = None
        person = Cluster(self._kubeconfig, self.namespace, self.timeout)
        person._api = client.ApiClient(conf)
        return person

    def whoami(self) -> tuple[str, tuple[str, ...]]:
        """``(username, groups)`` the API server gives this connection's credentials (a SelfSubjectReview);
        :class:`Rejection` 401 when it does not accept them."""
        from kubernetes.client.rest import ApiException

        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        try:
            review = kube_rest.call(self._client(), "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                    body, timeout=self.timeout)
        except ApiException as exc:
            if exc.status == 401:
                raise Rejection(401, "the cluster does not accept this token (expired, revoked or mistyped)") from None
            raise rejection(exc.status, exc.body, exc.reason) from None
        except OSError as exc:
            raise ClusterUnavailable(f"the Kubernetes API does not answer ({exc})") from None
        info = (review.get("status") or {}).get("userInfo") or {}
        self.user = str(info.get("username") or "")
        if not self.user:
            raise Rejection(401, "the cluster accepted the token but names nobody")
        return self.user, tuple(info.get("groups") or ())

    def close(self) -> None:
        """Let the connection pool go (a signed-out person's)."""
        api, self._api = self._api, None
        if api is not None:
            with contextlib.suppress(Exception):
                api.close()

    @property
    def field_manager(self) -> str:
        """The field manager of this connection's writes (a ModelDeployment's history names it): the console's,
        and the person's name when one is signed in."""
        return f"{FIELD_MANAGER}:{self.user}"[:128] if self.user else FIELD_MANAGER

    @property
    def namespace(self) -> str:
        if not self._namespace:
            try:
                self._client()
            except ClusterUnavailable:
                return self._namespace or "default"
        return self._namespace or "default"

    def _rest(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        """One REST call (:func:`visionops.kube_rest.call`, the project's one client idiom) with the timeout;
        connection failures become :class:`ClusterUnavailable`."""
        from kubernetes.client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return kube_rest.call(self._client(), method, path, body, timeout=self.timeout, **kwargs)
        except ApiException as exc:
            if exc.status in (401,):
                raise ClusterUnavailable(f"the cluster refused the console's credentials: {exc.reason}") from None
            raise
        except (HTTPError, OSError) as exc:
            reason = str(getattr(exc, "reason", None) or exc).rsplit(": ", 1)[-1].strip() or type(exc).__name__
            host = getattr(getattr(self._api, "configuration", None), "host", "") or "the cluster"
            message = f"the Kubernetes API at {host} does not answer ({reason})"
            with self._lock:
                self._probe = (time.monotonic(), message)
            raise ClusterUnavailable(message) from None

    @contextlib.contextmanager
    def _refusing(self, verb: str, what: str) -> Iterator[None]:
        """Every write runs inside this: an apiserver refusal (schema, CEL, RBAC, conflict) becomes one
        :class:`Rejection` (:func:`refusal`), so the page shows why and nothing is half-done."""
        from kubernetes.client.rest import ApiException

        try:
            yield
        except ApiException as exc:
            raise refusal(exc, verb, what, self.namespace, self.user) from None

    def unavailable(self) -> str | None:
        """``None`` when the cluster answers (and serves TrainingRuns), else why not; cached a few seconds."""
        with self._lock:
            when, reason = self._probe
        if time.monotonic() - when < PROBE_SECONDS:
            return reason
        reason = None
        try:
            self._rest("GET", self._ours("trainingruns"), query={"limit": 1})
        except ClusterUnavailable as exc:
            reason = str(exc)
        except Exception as exc:  # 403, 404 (no CRD): the cluster is there but not usable by the console
            status = getattr(exc, "status", None)
            if status == 404:
                reason = "the cluster has no TrainingRun CRD (install the chart's crds/ or manifests/crds)"
            elif status == 403:
                reason = f"the console may not list TrainingRuns in namespace {self.namespace} (RBAC)"
            else:
                reason = f"the Kubernetes API answered {type(exc).__name__}: {exc}"
        with self._lock:
            self._probe = (time.monotonic(), reason)
        return reason

    # TrainingRuns --------------------------------------------------------------------------------------------

    def _ours(self, plural: str, name: str = "") -> str:
        """The REST path of the namespace's custom objects of ``plural`` (visionops.io)."""
        return api_path(GROUP, VERSION, self.namespace, plural, name)

    def list_training_runs(self) -> list[dict[str, Any]]:
        items = self._rest("GET", self._ours("trainingruns"))["items"]
        return sorted(items, key=lambda r: r["metadata"].get("creationTimestamp") or "", reverse=True)

    def get_training_run(self, name: str) -> dict[str, Any] | None:
        return self._get_custom("trainingruns", name)

    def _get_custom(self, plural: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.rest import ApiException

        try:
            return self._rest("GET", self._ours(plural, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create_training_run(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create it; the apiserver's refusal (schema, CEL, name taken, RBAC) as a :class:`Rejection`."""

        with self._refusing("create", "TrainingRuns"):
            return self._rest("POST", self._ours("trainingruns"), body)

    def stop_training(self, name: str, delete_run: bool) -> str:
        """Stop a training: delete its Job (the pod goes with it; the operator marks the run Failed, JobDeleted),
        or delete the TrainingRun itself (its Job goes by ownerReference). Returns what was done, in words."""
        run = self.get_training_run(name)
        if run is None:
            raise Rejection(404, f"TrainingRun {name} does not exist (any more)")
        options = {"propagationPolicy": "Background"}
        if delete_run:
            with self._refusing("delete", "TrainingRuns"):
                self._rest("DELETE", self._ours("trainingruns", name), options)
            return (f"Deleted TrainingRun {name}; its Job and pod are garbage-collected with it. "
                    "Its MLflow run and any registered model version stay.")
        job = (run.get("status") or {}).get("jobName")
        if not job:
            raise Rejection(409, f"TrainingRun {name} has no Job yet (phase "
                                 f"{(run.get('status') or {}).get('phase') or 'none'}); nothing to stop")
        with self._refusing("delete", "Jobs"):
            self._rest("DELETE", api_path("batch", "v1", self.namespace, "jobs", job), options)
        return (f"Deleted Job {job} of TrainingRun {name}; its pod stops. The operator marks the run Failed "
                "(reason JobDeleted); the TrainingRun stays for the record.")

    def request_promotion(self, name: str) -> str:
        """Annotate ``visionops.io/promote=true`` (manual promotion: what the README tells kubectl users)."""

        patch = {"metadata": {"annotations": {ANNOTATION_PROMOTE: "true"}}}
        with self._refusing("patch", "TrainingRuns"):
            self._rest("PATCH", self._ours("trainingruns", name), patch, content_type=kube_rest.MERGE_PATCH)
        return f"Annotated TrainingRun {name} with {ANNOTATION_PROMOTE}=true; the operator promotes its version."

    def training_pods(self, name: str) -> list[dict[str, Any]]:
        found = self._rest("GET", api_path("", "v1", self.namespace, "pods"),
                           query={"labelSelector": f"{LABEL_TRAINING_RUN}={name}"})["items"]
        return sorted(found, key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True)

    def pod_log_tail(self, pod: Mapping[str, Any], lines: int = 80) -> tuple[str, str]:
        """``(log text, why there is none)`` of the pod's first container, last ``lines`` lines."""
        from kubernetes.client.rest import ApiException

        name = pod["metadata"]["name"]
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        try:
            text = self._rest("GET", api_path("", "v1", self.namespace, "pods", name, "log"), text=True,
                              query={"container": containers[0].get("name"), "tailLines": lines})
            return text or "", "" if text else "the log is empty so far"
        except ApiException as exc:
            return "", f"no log from pod {name}: {rejection(exc.status, exc.body, exc.reason).message}"

    def events(self, objects: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Events of each ``(kind, name)`` in the namespace, oldest first."""
        found: list[dict[str, Any]] = []
        for kind, name in objects:
            selector = f"involvedObject.kind={kind},involvedObject.name={name}"
            found += self._rest("GET", api_path("", "v1", self.namespace, "events"),
                                query={"fieldSelector": selector})["items"]

        def when(event: Mapping[str, Any]) -> str:
            return str(event.get("lastTimestamp") or event.get("eventTime") or
                       event["metadata"].get("creationTimestamp") or "")

        return sorted(found, key=when)

    # DriftChecks ---------------------------------------------------------------------------------------------

    def list_drift_checks(self) -> list[dict[str, Any]]:
        items = self._rest("GET", self._ours("driftchecks"))["items"]
        return sorted(items, key=lambda r: r["metadata"]["name"])

    def get_drift_check(self, name: str) -> dict[str, Any] | None:
        return self._get_custom("driftchecks", name)

    def check_now(self, name: str, now: datetime | None = None) -> str:
        """Start one check of a DriftCheck now: a Job from its CronJob's template (scheduled checks) or from the
        Job of its current generation. Returns what was done."""
        from kubernetes.client.rest import ApiException

        check = self.get_drift_check(name)
        if check is None:
            raise Rejection(404, f"DriftCheck {name} does not exist (any more)")
        template: dict[str, Any] | None = None
        try:
            selector = {"labelSelector": f"{LABEL_DRIFT_CHECK}={name}"}
            cronjobs = self._rest("GET", api_path("batch", "v1", self.namespace, "cronjobs"), query=selector)["items"]
            if cronjobs:
                template = cronjobs[0]["spec"]["jobTemplate"]
            else:
                jobs = self._rest("GET", api_path("batch", "v1", self.namespace, "jobs"), query=selector)["items"]
                own = [j for j in jobs if any(r.get("uid") == check["metadata"]["uid"]
                                              for r in j["metadata"].get("ownerReferences") or [])]
                if own:
                    newest = max(own, key=lambda j: j["metadata"].get("creationTimestamp") or "")
                    template = {"metadata": newest["metadata"], "spec": newest["spec"]}
        except ApiException as exc:
            raise refusal(exc, "list", "CronJobs and Jobs", self.namespace) from None
        if template is None:
            raise Rejection(409, f"DriftCheck {name} has no check Job or CronJob yet (is the operator running?)")
        job = check_now_job(check, template, now or datetime.now(UTC))
        with self._refusing("create", "Jobs"):
            created = self._rest("POST", api_path("batch", "v1", self.namespace, "jobs"), job)
        job_name = created["metadata"]["name"]
        return f"Created check Job {job_name} from DriftCheck {name}'s own template; its result lands in the status."

    # ModelDeployments -------------------------------------------------------------------------------------------

    def list_model_deployments(self) -> list[dict[str, Any]]:
        """The namespace's ModelDeployments by name; a cluster that refuses the list (RBAC, no CRD) as a
        :class:`Rejection` whose message says why."""
        from kubernetes.client.rest import ApiException

        try:
            items = self._rest("GET", api_path(production.GROUP, production.VERSION, self.namespace,
                                               production.PLURAL))["items"]
        except ApiException as exc:
            if exc.status == 404:
                raise Rejection(404, "the cluster has no ModelDeployment CRD (install the chart's crds/ or "
                                     "manifests/crds)") from None
            raise refusal(exc, "list", "ModelDeployments", self.namespace) from None
        return sorted(items, key=lambda md: md["metadata"]["name"])

    def set_production(self, name: str, action: str, version: str, model: str = "") -> str:
        """Put ``version`` into production on ModelDeployment ``name``: ``action`` "set" asks for that version,
        "rollback" for the one :func:`~visionops.production.rollback_target` names (``version`` is what the page
        offered; a different target now is refused). One merge patch of spec.version and the change cause, as
        field manager :data:`FIELD_MANAGER`; the operator moves the MLflow alias and rolls out. Every refusal is
        a :class:`Rejection` and changes nothing. Returns what was done, in words."""

        md = self._get_custom(production.PLURAL, name)
        if md is None:
            raise Rejection(404, f"ModelDeployment {name} does not exist in namespace {self.namespace} (any more)")
        spec, status = md.get("spec") or {}, md.get("status") or {}
        serves = (spec.get("model") or {}).get("name") or ""
        if model and serves and serves != model:
            raise Rejection(409, f"ModelDeployment {name} deploys model {serves}, not {model}")
        try:
            if action == "rollback":
                target = production.rollback_target(status)
                if version and target != version:
                    raise Rejection(409, f"ModelDeployment {name} now rolls back to version {target}, not {version} "
                                         "(it changed since the page was shown): reload the page")
                version, cause = target, ROLLBACK_CAUSE
            elif action == "set":
                cause = SET_CAUSE
            else:
                raise Rejection(400, f"unknown action {action!r} (set or rollback)")
            cause += f" by {self.user}" if self.user else ""
            patch = production.set_version_patch(version, cause)
        except production.ProductionError as exc:
            raise Rejection(422, str(exc)) from None
        current = str(spec.get("version") or "")
        if current == patch["spec"]["version"]:
            raise Rejection(409, f"ModelDeployment {name} already asks for version {current} (spec.version, phase "
                                 f"{status.get('phase') or 'not reported yet'}): nothing to change")
        with self._refusing("patch", "ModelDeployments"):
            self._rest("PATCH", api_path(production.GROUP, production.VERSION, self.namespace, production.PLURAL, name),
                       patch, query={"fieldManager": self.field_manager}, content_type=kube_rest.MERGE_PATCH)
        isvc, wanted = spec.get("inferenceService") or name, patch["spec"]["version"]
        return (f"Version {wanted} requested: spec.version of ModelDeployment {name} is now {wanted} (was "
                f"{current or 'none'}; cause \u201c{cause}\u201d). The operator moves the production alias of "
                f"{serves or 'the model'} and rolls InferenceService {isvc} out to it.")

    # KServe --------------------------------------------------------------------------------------------------

    def get_inference_service(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.rest import ApiException

        try:
            return self._rest("GET", api_path(*KSERVE, self.namespace, "inferenceservices", name))
        except ApiException as exc:
            if exc.status in (404,):
                return None
            if exc.status == 403:
                raise Rejection(403, f"the console may not read InferenceService {name} in namespace "
                                     f"{self.namespace} (RBAC)") from None
            raise

    # the API's own schema ------------------------------------------------------------------------------------

    def get_json(self, path: str) -> Any:
        """GET a path of the apiserver (e.g. ``/openapi/v3/...``) as the console's identity, parsed."""
        from kubernetes.client.rest import ApiException

        try:
            return self._rest("GET", path)
        except ApiException as exc:
            raise rejection(exc.status, exc.body, exc.reason) from None

    def training_run_schema(self) -> dict[str, Any] | None:
        """The TrainingRun spec schema as the apiserver publishes it (``/openapi/v3``: defaults, ranges and
        descriptions for the form's hints); ``None`` when it is not available."""
        with self._lock:
            when, cached = self._schema
        if time.monotonic() - when < SCHEMA_SECONDS:
            return cached
        try:
            data = self.get_json(f"/openapi/v3/apis/{GROUP}/{VERSION}")
        except Exception as exc:  # an old apiserver or a narrower RBAC: the form keeps the CRD's own hints
            log.info("no published TrainingRun schema: %s", exc)
            return None
        schemas = ((data or {}).get("components") or {}).get("schemas") or {}
        found = next((((value.get("properties") or {}).get("spec")) or None for key, value in schemas.items()
                      if key.endswith(".TrainingRun") and isinstance(value, dict)), None)
        with self._lock:
            self._schema = (time.monotonic(), found)
        return found
