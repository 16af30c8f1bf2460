"""Thin access to the Kubernetes API, returning plain dicts.

The official client gives the connection (kubeconfig or ServiceAccount, TLS, token refresh) and the HTTP
pool; the requests are plain REST calls with JSON bodies. The client's generated API methods validate
every argument with pydantic and turn dict bodies into model objects and back: several times the CPU of the
request itself, for handlers that build and want dicts.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any
from urllib.parse import quote

import kubernetes
from kubernetes.client.rest import ApiException

from . import GROUP, VERSION

KSERVE_GROUP, KSERVE_VERSION = "serving.kserve.io", "v1beta1"
FIELD_MANAGER = "visionops-operator"  # who the API server records for the operator's own spec changes
JSON, MERGE_PATCH, STRATEGIC_MERGE_PATCH = (
    "application/json", "application/merge-patch+json", "application/strategic-merge-patch+json")


@functools.cache
def _client() -> kubernetes.client.ApiClient:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        # KUBECONFIG is read now, not when the client library was imported
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    configuration = kubernetes.client.Configuration.get_default_copy()
    # handlers run in kopf's thread pool: one pooled connection per worker avoids waiting on the pool
    configuration.connection_pool_maxsize = 32
    return kubernetes.client.ApiClient(configuration)


def warm_up() -> None:
    """Build the client now (before the first event, not during it)."""
    _client()


def reset() -> None:
    """Forget the cached client (tests switch clusters)."""
    _client.cache_clear()


def request(method: str, path: str, body: Any = None, *, query: dict[str, str] | None = None,
            content_type: str = JSON) -> Any:
    """One REST call: ``body`` sent as JSON, the answer decoded; :class:`ApiException` on a non-2xx status.

    The answer is read to its end, which hands the connection back to the pool (an unread answer keeps its
    connection, and the next call opens a new one: a TLS handshake each).
    """
    client = _client()
    method, url, headers, _, _ = client.param_serialize(
        method, path, query_params=list((query or {}).items()) or None,
        header_params={"Accept": JSON, "Content-Type": content_type}, auth_settings=["BearerToken"])
    response = client.call_api(method, url, headers, body)
    response.read()
    if not 200 <= response.status <= 299:
        ApiException.from_response(http_resp=response, body=None, data=None)  # raises, by the status's kind
    return json.loads(response.data)


# Statuses a retry may heal (besides every 5xx and no answer at all): timeout, conflict, too many requests. Any other
# 4xx is a refusal that stays (forbidden, invalid, not found) and is not retried.
TRANSIENT_STATUSES = frozenset({408, 409, 429})


def refusal(error: ApiException) -> tuple[bool, str]:
    """``(retrying may heal it, one line)`` of an API server's refusal: its status and reason, and the message of
    the ``Status`` it answered with (which names the resource, and for RBAC the user and verb)."""
    status = int(error.status or 0)
    body = error.body.decode(errors="replace") if isinstance(error.body, bytes) else (error.body or "")
    try:
        said = json.loads(body).get("message") or ""
    except (ValueError, AttributeError):
        said = body
    said = " ".join(str(said).split())[:300]
    line = f"{status} {error.reason or ''}".strip() + (f": {said}" if said else "")
    return status == 0 or status >= 500 or status in TRANSIENT_STATUSES, line


def _path(group: str, version: str, namespace: str | None, plural: str, name: str = "", sub: str = "") -> str:
    root = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    parts = [root] + ([f"namespaces/{quote(namespace)}"] if namespace else []) + [plural]
    parts += [quote(name)] if name else []
    parts += [sub] if sub else []
    return "/".join(parts)


def _ours(namespace: str | None, plural: str, name: str = "", sub: str = "") -> str:
    return _path(GROUP, VERSION, namespace, plural, name, sub)


def _get_or_none(path: str) -> dict[str, Any] | None:
    try:
        return request("GET", path)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _create_or_get(path: str, body: dict[str, Any], query: dict[str, str] | None = None
                   ) -> tuple[dict[str, Any], bool]:
    """Create, or return the existing object of that name: ``(object, created)``. Never makes two."""
    try:
        return request("POST", path, body, query=query), True
    except ApiException as exc:
        if exc.status != 409:
            raise
    return _get_or_none(f"{path}/{quote(body['metadata']['name'])}") or {}, False


def ensure_job(namespace: str, job: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create the Job, or return the existing one of that name: ``(job, created)``. Never makes two."""
    return _create_or_get(_path("batch", "v1", namespace, "jobs"), job)


def ensure_cronjob(namespace: str, cronjob: dict[str, Any]) -> dict[str, Any]:
    """Create the CronJob or bring its schedule, suspension and template to the desired ones."""
    path = _path("batch", "v1", namespace, "cronjobs")
    try:
        return request("POST", path, cronjob)
    except ApiException as exc:
        if exc.status != 409:
            raise
    return request("PATCH", f"{path}/{quote(cronjob['metadata']['name'])}", {"spec": cronjob["spec"]},
                   content_type=STRATEGIC_MERGE_PATCH)


def pods(namespace: str, selector: str) -> list[dict[str, Any]]:
    return request("GET", _path("", "v1", namespace, "pods"), query={"labelSelector": selector})["items"]


def job_pods(namespace: str, job_name: str) -> list[dict[str, Any]]:
    return pods(namespace, f"job-name={job_name}")


def get_custom(namespace: str, plural: str, name: str) -> dict[str, Any] | None:
    """One of our custom resources, or ``None`` when it does not exist."""
    return _get_or_none(_ours(namespace, plural, name))


def patch_status(namespace: str, plural: str, name: str, status: dict[str, Any], resource_version: str) -> None:
    """Merge ``status`` into the resource's status, only if it is still at ``resource_version`` (else 409)."""
    body = {"metadata": {"resourceVersion": resource_version}, "status": status}
    request("PATCH", _ours(namespace, plural, name, "status"), body, content_type=MERGE_PATCH)


def list_training_runs(namespace: str, selector: str) -> list[dict[str, Any]]:
    return request("GET", _ours(namespace, "trainingruns"), query={"labelSelector": selector})["items"]


def create_training_run(namespace: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create a TrainingRun or return the existing one of that name: ``(run, created)``."""
    return _create_or_get(_ours(namespace, "trainingruns"), body)


def read_inference_service(namespace: str, name: str) -> dict[str, Any] | None:
    return _get_or_none(_path(KSERVE_GROUP, KSERVE_VERSION, namespace, "inferenceservices", name))


def patch_inference_service(namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    return request("PATCH", _path(KSERVE_GROUP, KSERVE_VERSION, namespace, "inferenceservices", name), patch,
                   content_type=MERGE_PATCH)


def list_custom(namespace: str | None, plural: str) -> list[dict[str, Any]]:
    """Our custom resources of ``plural`` in ``namespace`` (every namespace when ``None``)."""
    return request("GET", _ours(namespace, plural))["items"]


def create_custom(namespace: str, plural: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create one of our custom resources or return the existing one of that name: ``(object, created)``."""
    return _create_or_get(_ours(namespace, plural), body, query={"fieldManager": FIELD_MANAGER})


def patch_custom(namespace: str, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    """Merge-patch one of our custom resources (its spec or metadata) as the operator's field manager."""
    return request("PATCH", _ours(namespace, plural, name), patch, query={"fieldManager": FIELD_MANAGER},
                   content_type=MERGE_PATCH)
