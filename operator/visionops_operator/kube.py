"""Thin access to the Kubernetes API (the official client), returning plain dicts.

Responses are decoded straight from JSON (``_preload_content=False``): the handlers want dicts, and the
client's model classes cost CPU on every call for nothing.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import kubernetes
from kubernetes.client.rest import ApiException

from . import GROUP, VERSION

KSERVE_GROUP, KSERVE_VERSION = "serving.kserve.io", "v1beta1"
RAW = {"_preload_content": False}
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
    """Build the client and load the API classes now (the first use of CoreV1Api costs over a second)."""
    batch(), core(), custom()


def reset() -> None:
    """Forget the cached client (tests switch clusters)."""
    _client.cache_clear()


def _json(response: Any) -> Any:
    return json.loads(response.data)


def batch() -> kubernetes.client.BatchV1Api:
    return kubernetes.client.BatchV1Api(_client())


def core() -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(_client())


def custom() -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(_client())


def ensure_job(namespace: str, job: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create the Job, or return the existing one of that name: ``(job, created)``. Never makes two."""
    try:
        return _json(batch().create_namespaced_job(namespace, job, **RAW)), True
    except ApiException as exc:
        if exc.status != 409:
            raise
    return _json(batch().read_namespaced_job(job["metadata"]["name"], namespace, **RAW)), False


def ensure_cronjob(namespace: str, cronjob: dict[str, Any]) -> dict[str, Any]:
    """Create the CronJob or bring its schedule, suspension and template to the desired ones."""
    try:
        return _json(batch().create_namespaced_cron_job(namespace, cronjob, **RAW))
    except ApiException as exc:
        if exc.status != 409:
            raise
    patch = {"spec": cronjob["spec"]}
    return _json(batch().patch_namespaced_cron_job(cronjob["metadata"]["name"], namespace, patch, **RAW))


def job_pods(namespace: str, job_name: str) -> list[dict[str, Any]]:
    return _json(core().list_namespaced_pod(namespace, label_selector=f"job-name={job_name}", **RAW))["items"]


def get_custom(namespace: str, plural: str, name: str) -> dict[str, Any] | None:
    """One of our custom resources, or ``None`` when it does not exist."""
    try:
        return _json(custom().get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, **RAW))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def patch_status(namespace: str, plural: str, name: str, status: dict[str, Any], resource_version: str) -> None:
    """Merge ``status`` into the resource's status, only if it is still at ``resource_version`` (else 409)."""
    body = {"metadata": {"resourceVersion": resource_version}, "status": status}
    custom().patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name, body, **RAW)


def list_training_runs(namespace: str, selector: str) -> list[dict[str, Any]]:
    return _json(custom().list_namespaced_custom_object(
        GROUP, VERSION, namespace, "trainingruns", label_selector=selector, **RAW))["items"]


def create_training_run(namespace: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create a TrainingRun or return the existing one of that name: ``(run, created)``."""
    try:
        return _json(custom().create_namespaced_custom_object(GROUP, VERSION, namespace, "trainingruns", body,
                                                              **RAW)), True
    except ApiException as exc:
        if exc.status != 409:
            raise
    return get_custom(namespace, "trainingruns", body["metadata"]["name"]) or {}, False


def read_inference_service(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return _json(custom().get_namespaced_custom_object(KSERVE_GROUP, KSERVE_VERSION, namespace,
                                                           "inferenceservices", name, **RAW))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def patch_inference_service(namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    return _json(custom().patch_namespaced_custom_object(
        KSERVE_GROUP, KSERVE_VERSION, namespace, "inferenceservices", name, patch, **RAW))


def list_custom(namespace: str | None, plural: str) -> list[dict[str, Any]]:
    """Our custom resources of ``plural`` in ``namespace`` (every namespace when ``None``)."""
    api = custom()
    if namespace is None:
        return _json(api.list_cluster_custom_object(GROUP, VERSION, plural, **RAW))["items"]
    return _json(api.list_namespaced_custom_object(GROUP, VERSION, namespace, plural, **RAW))["items"]


def create_custom(namespace: str, plural: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create one of our custom resources or return the existing one of that name: ``(object, created)``."""
    try:
        return _json(custom().create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body,
                                                              field_manager=FIELD_MANAGER, **RAW)), True
    except ApiException as exc:
        if exc.status != 409:
            raise
    return get_custom(namespace, plural, body["metadata"]["name"]) or {}, False


def patch_custom(namespace: str, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    """Merge-patch one of our custom resources (its spec or metadata) as the operator's field manager."""
    return _json(custom().patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, patch,
                                                         field_manager=FIELD_MANAGER, **RAW))


def pods(namespace: str, selector: str) -> list[dict[str, Any]]:
    return _json(core().list_namespaced_pod(namespace, label_selector=selector, **RAW))["items"]
