"""Thin access to the Kubernetes API (the official client), returning plain dicts."""

from __future__ import annotations

import functools
import os
from typing import Any

import kubernetes
from kubernetes.client.rest import ApiException

from . import GROUP, VERSION

KSERVE_GROUP, KSERVE_VERSION = "serving.kserve.io", "v1beta1"


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


def reset() -> None:
    """Forget the cached client (tests switch clusters)."""
    _client.cache_clear()


def to_dict(obj: Any) -> dict[str, Any]:
    return _client().sanitize_for_serialization(obj)


def batch() -> kubernetes.client.BatchV1Api:
    return kubernetes.client.BatchV1Api(_client())


def core() -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(_client())


def custom() -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(_client())


def is_status(exc: Exception, code: int) -> bool:
    return isinstance(exc, ApiException) and exc.status == code


def ensure_job(namespace: str, job: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create the Job, or return the existing one of that name: ``(job, created)``. Never makes two."""
    try:
        return to_dict(batch().create_namespaced_job(namespace, job)), True
    except ApiException as exc:
        if exc.status != 409:
            raise
    return to_dict(batch().read_namespaced_job(job["metadata"]["name"], namespace)), False


def ensure_cronjob(namespace: str, cronjob: dict[str, Any]) -> dict[str, Any]:
    """Create the CronJob or bring its schedule, suspension and template to the desired ones."""
    try:
        return to_dict(batch().create_namespaced_cron_job(namespace, cronjob))
    except ApiException as exc:
        if exc.status != 409:
            raise
    patch = {"spec": cronjob["spec"]}
    return to_dict(batch().patch_namespaced_cron_job(cronjob["metadata"]["name"], namespace, patch))


def read_job(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return to_dict(batch().read_namespaced_job(name, namespace))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def list_jobs(namespace: str, selector: str) -> list[dict[str, Any]]:
    return [to_dict(j) for j in batch().list_namespaced_job(namespace, label_selector=selector).items]


def job_pods(namespace: str, job_name: str) -> list[dict[str, Any]]:
    pods = core().list_namespaced_pod(namespace, label_selector=f"job-name={job_name}").items
    return [to_dict(p) for p in pods]


def list_training_runs(namespace: str, selector: str) -> list[dict[str, Any]]:
    return custom().list_namespaced_custom_object(
        GROUP, VERSION, namespace, "trainingruns", label_selector=selector
    )["items"]


def create_training_run(namespace: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create a TrainingRun or return the existing one of that name: ``(run, created)``."""
    api = custom()
    try:
        return api.create_namespaced_custom_object(GROUP, VERSION, namespace, "trainingruns", body), True
    except ApiException as exc:
        if exc.status != 409:
            raise
    return api.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "trainingruns", body["metadata"]["name"]
    ), False


def read_inference_service(namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return custom().get_namespaced_custom_object(KSERVE_GROUP, KSERVE_VERSION, namespace,
                                                     "inferenceservices", name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def patch_inference_service(namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    return custom().patch_namespaced_custom_object(
        KSERVE_GROUP, KSERVE_VERSION, namespace, "inferenceservices", name, patch
    )
