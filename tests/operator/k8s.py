"""Small helpers for operator tests: a live client, CR creation and polling."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import kubernetes

GROUP, VERSION = "visionops.io", "v1alpha1"


def api() -> kubernetes.client.ApiClient:
    return kubernetes.config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))


def custom() -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api())


def batch() -> kubernetes.client.BatchV1Api:
    return kubernetes.client.BatchV1Api(api())


def create(namespace: str, plural: str, name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    kind = {"trainingruns": "TrainingRun", "driftchecks": "DriftCheck", "modeldeployments": "ModelDeployment"}[plural]
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name, **meta}, "spec": spec}
    return custom().create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)


def get(namespace: str, plural: str, name: str) -> dict[str, Any]:
    return custom().get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)


def wait_until(predicate: Callable[[], Any], timeout: float = 120, interval: float = 0.5, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}; last value {last!r}")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return cond
    return {}


def jobs(namespace: str, selector: str) -> list[Any]:
    return batch().list_namespaced_job(namespace, label_selector=selector).items


def core() -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api())


def event_reasons(namespace: str, kind: str, name: str) -> list[str]:
    """Reasons of the Events posted on one object, oldest first."""
    selector = f"involvedObject.kind={kind},involvedObject.name={name}"
    events = core().list_namespaced_event(namespace, field_selector=selector).items
    events.sort(key=lambda e: (e.first_timestamp or e.event_time or e.metadata.creation_timestamp,
                               e.metadata.creation_timestamp))
    return [e.reason for e in events for _ in range(e.count or 1)]


def settled_event_reasons(namespace: str, kind: str, name: str, quiet: float = 3.0) -> list[str]:
    """The Event reasons once no new Event came for ``quiet`` seconds (kopf posts them asynchronously)."""
    last = event_reasons(namespace, kind, name)
    deadline = time.monotonic() + quiet
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = event_reasons(namespace, kind, name)
        if now != last:
            last, deadline = now, time.monotonic() + quiet
    return last
