"""The KServe controller in Standard mode turns an InferenceService into a Deployment and a Service,
and rolls the Deployment when the operator patches the predictor's model URI (no node: Pods stay Pending)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fixtures.cluster import KubeCluster, wait_until
from visionops_operator.builders import MODEL_URI_ENV, PREDICTOR_CONTAINER, inference_service_patch

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ISVC_LABEL = "serving.kserve.io/inferenceservice"




def get_json(cluster: KubeCluster, *args: str) -> dict[str, Any] | None:
    """``kubectl get ARGS -o json``, or None when the object does not exist (yet)."""
    proc = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def predictor_isvc(name: str, model_uri: str) -> dict[str, Any]:
    """An InferenceService with a custom predictor container, as the chart renders it (Standard mode)."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "containers": [
                    {
                        "name": PREDICTOR_CONTAINER,
                        "image": "visionops-predictor:0.1.0",
                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        "env": [{"name": "KEEP_ME", "value": "1"}, {"name": MODEL_URI_ENV, "value": model_uri}],
                    }
                ],
            }
        },
    }


def wait_for(cluster: KubeCluster, kind: str, name: str, namespace: str, timeout: float = 60) -> dict[str, Any]:
    """Wait until ``kind/name`` exists in ``namespace``; return it."""
    return wait_until(f"{kind} {namespace}/{name}", lambda: get_json(cluster, kind, name, "-n", namespace), timeout)


def replica_sets(cluster: KubeCluster, namespace: str, isvc_name: str) -> list[dict[str, Any]]:
    selector = f"{ISVC_LABEL}={isvc_name}"
    return json.loads(cluster.kubectl("get", "replicasets", "-n", namespace, "-l", selector, "-o", "json").stdout)[
        "items"
    ]


def container_env(deployment: dict[str, Any]) -> dict[str, str]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    main = next(c for c in containers if c["name"] == PREDICTOR_CONTAINER)
    return {e["name"]: e.get("value", "") for e in main.get("env", [])}


def owned_by(obj: dict[str, Any], isvc: dict[str, Any]) -> bool:
    return any(
        ref["kind"] == "InferenceService" and ref["uid"] == isvc["metadata"]["uid"] and ref.get("controller")
        for ref in obj["metadata"].get("ownerReferences", [])
    )


@pytest.fixture
def isvc_name(kube_cluster: KubeCluster, kserve_controller: object, k8s_namespace: str):
    """A fresh InferenceService name; the object is deleted (and its finalizer run) after the test."""
    name = f"det-{uuid.uuid4().hex[:6]}"
    yield name
    # While the manager runs, so it can remove its finalizer before the namespace goes.
    kube_cluster.kubectl(
        "delete", "inferenceservice", name, "-n", k8s_namespace, "--ignore-not-found", "--timeout=60s", check=False
    )


def test_standard_isvc_becomes_deployment_and_service(
    kube_cluster: KubeCluster, kserve_controller: object, k8s_namespace: str, isvc_name: str
) -> None:
    kube_cluster.apply(json.dumps(predictor_isvc(isvc_name, "models:/det/1")), namespace=k8s_namespace)
    predictor = f"{isvc_name}-predictor"

    deployment = wait_for(kube_cluster, "deployment", predictor, k8s_namespace)
    service = wait_for(kube_cluster, "service", predictor, k8s_namespace)
    isvc = get_json(kube_cluster, "inferenceservice", isvc_name, "-n", k8s_namespace)
    assert isvc is not None

    # Made by the controller for this InferenceService, in Standard mode.
    assert owned_by(deployment, isvc) and owned_by(service, isvc)
    assert deployment["metadata"]["labels"][ISVC_LABEL] == isvc_name
    assert "inferenceservice.finalizers" in isvc["metadata"]["finalizers"]
    wait_until(
        "status.deploymentMode",
        lambda: (
            (get_json(kube_cluster, "inferenceservice", isvc_name, "-n", k8s_namespace) or {})
            .get("status", {})
            .get("deploymentMode")
            == "Standard"
        ),
    )
    # The defaulting webhook ran (the apiserver reached the manager on loopback).
    assert isvc["spec"]["predictor"]["containers"][0]["name"] == PREDICTOR_CONTAINER

    template = deployment["spec"]["template"]
    main = next(c for c in template["spec"]["containers"] if c["name"] == PREDICTOR_CONTAINER)
    assert main["image"] == "visionops-predictor:0.1.0"
    assert container_env(deployment)[MODEL_URI_ENV] == "models:/det/1"
    assert template["metadata"]["labels"][ISVC_LABEL] == isvc_name

    [port] = service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (80, 8080)
    assert service["spec"]["selector"].get("app") == f"isvc.{predictor}"

    # No Ingress (disabled: no Istio, no ingress controller here).
    assert not json.loads(kube_cluster.kubectl("get", "ingress", "-n", k8s_namespace, "-o", "json").stdout)["items"]
    # The ReplicaSet controller made a Pod through the pod-mutating webhook (failurePolicy Fail); no node, so Pending.
    pods = wait_until(
        "a predictor Pod",
        lambda: json.loads(
            kube_cluster.kubectl(
                "get", "pods", "-n", k8s_namespace, "-l", f"{ISVC_LABEL}={isvc_name}", "-o", "json"
            ).stdout
        )["items"],
    )
    assert pods[0]["status"]["phase"] == "Pending"


def test_model_uri_patch_rolls_the_deployment(
    kube_cluster: KubeCluster, kserve_controller: object, k8s_namespace: str, isvc_name: str
) -> None:
    kube_cluster.apply(json.dumps(predictor_isvc(isvc_name, "models:/det/1")), namespace=k8s_namespace)
    predictor = f"{isvc_name}-predictor"
    before = wait_for(kube_cluster, "deployment", predictor, k8s_namespace)
    wait_until("the first ReplicaSet", lambda: replica_sets(kube_cluster, k8s_namespace, isvc_name))

    # Exactly the merge patch the operator sends on promotion.
    isvc = get_json(kube_cluster, "inferenceservice", isvc_name, "-n", k8s_namespace)
    patch = inference_service_patch(isvc, "models:/det/2", "2")
    kube_cluster.kubectl(
        "patch", "inferenceservice", isvc_name, "-n", k8s_namespace, "--type=merge", "-p", json.dumps(patch)
    )

    def rolled() -> dict[str, Any] | None:
        current = get_json(kube_cluster, "deployment", predictor, "-n", k8s_namespace)
        return current if current and container_env(current).get(MODEL_URI_ENV) == "models:/det/2" else None

    after = wait_until("the Deployment's pod template to carry the new model URI", rolled)
    assert container_env(after)["KEEP_ME"] == "1"
    assert after["metadata"]["uid"] == before["metadata"]["uid"]  # updated in place, not recreated
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    # The Deployment controller rolls: a second ReplicaSet for the new template.
    sets = wait_until(
        "a second ReplicaSet", lambda: len(rs := replica_sets(kube_cluster, k8s_namespace, isvc_name)) > 1 and rs
    )
    assert len({rs["metadata"]["labels"]["pod-template-hash"] for rs in sets}) == len(sets)
