"""Thin access to the Kubernetes API, returning plain dicts: :mod:`visionops.kube_rest` (the project's one
client idiom, shared with the console) on the operator's pooled connection."""

from __future__ import annotations

import functools
import json
import os
from typing import Any
from urllib.parse import quote

import kubernetes
from kubernetes.client.rest import ApiException

from visionops.kube_rest import JSON, MERGE_PATCH, STRATEGIC_MERGE_PATCH, api_path, call

from . import GROUP, VERSION

KSERVE_GROUP, KSERVE_VERSION = "serving.kserve.io", "v1beta1"
FIELD_MANAGER = "visionops-operator"  # who the API server records for the operator's own spec changes


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
    """One REST call on the operator's connection (:func:`visionops.kube_rest.call`)."""
    return call(_client(), method, path, body, query=query, content_type=content_type)


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


_path = api_path


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


def get_peering(namespace: str | None, name: str) -> dict[str, Any] | None:
    """kopf's peering object: a KopfPeering in ``namespace``, or the ClusterKopfPeering (``namespace`` None)."""
    plural = "kopfpeerings" if namespace else "clusterkopfpeerings"
    return _get_or_none(_path("kopf.dev", "v1", namespace, plural, name))


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
