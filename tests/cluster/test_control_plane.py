"""The local control plane is a real Kubernetes: schemas validate, controllers act, RBAC is enforced."""

from __future__ import annotations

import json
import uuid

import pytest
from fixtures.cluster import KubeCluster, get_json, wait_until

pytestmark = pytest.mark.cluster






def widget_crd(group: str) -> str:
    return json.dumps(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"widgets.{group}"},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {
                                    "spec": {
                                        "type": "object",
                                        "required": ["replicas"],
                                        "properties": {
                                            "replicas": {"type": "integer", "minimum": 1, "maximum": 5},
                                            "color": {"type": "string", "enum": ["red", "blue"]},
                                        },
                                    }
                                },
                            }
                        },
                    }
                ],
            },
        }
    )


def widget(group: str, name: str, replicas: object, color: str = "red") -> str:
    return json.dumps(
        {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "color": color},
        }
    )


def test_readyz_version_and_python_client(kube_cluster: KubeCluster, k8s_namespace: str) -> None:
    from kubernetes import client

    assert kube_cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    version = json.loads(kube_cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"].startswith("v1.34.")

    core = client.CoreV1Api(kube_cluster.api_client())
    namespace = core.read_namespace(k8s_namespace)
    assert namespace.metadata.labels["visionops.io/test"] == "true"
    assert core.read_namespaced_service_account("default", k8s_namespace).metadata.name == "default"


def test_crd_schema_rejects_bad_object(kube_cluster: KubeCluster, k8s_namespace: str) -> None:
    group = f"g{uuid.uuid4().hex[:6]}.test.visionops.io"  # unique: the CRD is cluster-scoped
    kube_cluster.apply(widget_crd(group))
    try:
        kube_cluster.wait_established(f"widgets.{group}")
        kube_cluster.kubectl("create", "-n", k8s_namespace, "-f", "-", input=widget(group, "good", 3))

        bad = kube_cluster.kubectl(
            "create", "-n", k8s_namespace, "-f", "-", input=widget(group, "bad", 9, color="green"), check=False
        )
        assert bad.returncode != 0
        assert "spec.replicas: Invalid value: 9: spec.replicas in body should be less than or equal to 5" in (
            bad.stderr
        )
        assert 'spec.color: Unsupported value: "green"' in bad.stderr

        wrong_type = kube_cluster.kubectl(
            "create", "-n", k8s_namespace, "-f", "-", input=widget(group, "typed", "three"), check=False
        )
        assert wrong_type.returncode != 0
        assert 'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer' in (
            wrong_type.stderr
        )

        names = kube_cluster.kubectl("get", f"widgets.{group}", "-n", k8s_namespace, "-o", "name").stdout.split()
        assert names == [f"widget.{group}/good"]
    finally:
        kube_cluster.kubectl("delete", "crd", f"widgets.{group}", "--wait=false", check=False)


def test_job_controller_creates_pod_and_gc_deletes_it(kube_cluster: KubeCluster, k8s_namespace: str) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "hello"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:1.36", "command": ["true"]}],
                }
            },
        },
    }
    kube_cluster.kubectl("create", "-n", k8s_namespace, "-f", "-", input=json.dumps(job))
    job_uid = get_json(kube_cluster, "job", "hello", "-n", k8s_namespace)["metadata"]["uid"]

    def job_pods() -> list[dict]:
        return get_json(kube_cluster, "pods", "-n", k8s_namespace, "-l", "job-name=hello")["items"]

    pods = wait_until("kube-controller-manager to create the Job's Pod", job_pods)
    assert isinstance(pods, list) and len(pods) == 1
    pod = pods[0]
    assert pod["status"]["phase"] == "Pending"  # no node: nothing runs it
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Job", "hello", job_uid)

    kube_cluster.kubectl("delete", "job", "hello", "-n", k8s_namespace, "--cascade=background")
    wait_until("the garbage collector to delete the Pod", lambda: not job_pods())


def test_rbac_is_enforced_for_service_accounts(kube_cluster: KubeCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    kube_cluster.kubectl("create", "serviceaccount", "robot", "-n", ns)
    who = f"--as=system:serviceaccount:{ns}:robot"

    def can_i(*args: str) -> str:
        return kube_cluster.kubectl("auth", "can-i", *args, "-n", ns, who, check=False).stdout.strip()

    assert can_i("create", "jobs.batch") == "no"
    denied = kube_cluster.kubectl("get", "pods", "-n", ns, who, check=False)
    assert denied.returncode != 0
    assert f'User "system:serviceaccount:{ns}:robot" cannot list resource "pods"' in denied.stderr

    kube_cluster.kubectl("create", "role", "jobs", "--verb=create,get", "--resource=jobs.batch", "-n", ns)
    kube_cluster.kubectl("create", "rolebinding", "jobs", "--role=jobs", f"--serviceaccount={ns}:robot", "-n", ns)
    assert can_i("create", "jobs.batch") == "yes"
    assert can_i("delete", "jobs.batch") == "no"


def test_kserve_inferenceservice_crd_accepts_an_isvc(kube_cluster: KubeCluster, k8s_namespace: str) -> None:
    crds = kube_cluster.install_kserve_crds("full")
    assert "inferenceservices.serving.kserve.io" in crds
    crd = get_json(kube_cluster, "crd", "inferenceservices.serving.kserve.io")
    assert crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["predictor"]

    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "defect-detector"},
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "model": {
                    "modelFormat": {"name": "onnx"},
                    "storageUri": "s3://models/visionops/defect-detector/1",
                    "resources": {"limits": {"cpu": "1", "memory": "2Gi"}},
                },
            }
        },
    }
    kube_cluster.kubectl("create", "-n", k8s_namespace, "-f", "-", input=json.dumps(isvc))
    stored = get_json(kube_cluster, "inferenceservice", "defect-detector", "-n", k8s_namespace)
    assert stored["spec"]["predictor"]["model"]["storageUri"] == "s3://models/visionops/defect-detector/1"
    assert stored["spec"]["predictor"]["model"]["modelFormat"] == {"name": "onnx"}

    bad = dict(isvc, metadata={"name": "bad"}, spec={"predictor": {"minReplicas": "many"}})
    rejected = kube_cluster.kubectl("create", "-n", k8s_namespace, "-f", "-", input=json.dumps(bad), check=False)
    assert rejected.returncode != 0
    assert "spec.predictor.minReplicas" in rejected.stderr
