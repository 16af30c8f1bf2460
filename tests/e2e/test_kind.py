"""The kind cluster itself, as ``make kind-up`` leaves it: what a user's cluster must offer VisionOps.

The node image built here runs every system pod with
nothing pulled, the ``standard`` StorageClass provisions volumes, KServe came from its own charts, and the CNI
(kube-router) enforces NetworkPolicy, which the chart's policies rely on.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from fixtures.cluster import KubeCluster, get_json, wait_until
from fixtures.e2e import client, finished, pod

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

SERVER = ["python3", "-m", "http.server", "8080"]


@pytest.fixture()
def namespace(e2e_cluster: KubeCluster) -> Iterator[str]:
    name = f"kind-{uuid.uuid4().hex[:6]}"
    e2e_cluster.kubectl("create", "namespace", name)
    yield name
    e2e_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_system_pods_run_from_the_node_image_with_nothing_pulled(e2e_cluster: KubeCluster) -> None:
    pods = [p for p in get_json(e2e_cluster, "pods", "-A")["items"]
            if p["metadata"]["namespace"] in ("kube-system", "local-path-storage", "kserve")]
    not_ready = [p["metadata"]["name"] for p in pods
                 if not all(c.get("ready") for c in p["status"].get("containerStatuses", [{}]))]
    assert not not_ready, f"not ready: {not_ready}"
    events = get_json(e2e_cluster, "events", "-A", "--field-selector", "reason=Pulling")["items"]
    assert not events, f"images were pulled: {[e['message'] for e in events]}"
    names = " ".join(p["metadata"]["name"] for p in pods)
    for component in ("kube-router", "kube-proxy", "coredns", "etcd", "local-path-provisioner", "kserve-controller"):
        assert component in names, f"{component} not among {names}"


def test_standard_storage_class_provisions_a_volume(e2e_cluster: KubeCluster, namespace: str) -> None:
    classes = get_json(e2e_cluster, "storageclass")["items"]
    default = [c["metadata"]["name"] for c in classes
               if c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class") == "true"]
    assert default == ["standard"]
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Mi"}}}}
    writer = pod("writer", ["python3", "-c", "open('/data/x', 'w').write('ok')"], {})
    writer["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    writer["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    e2e_cluster.apply(json.dumps(claim), namespace=namespace)
    e2e_cluster.apply(json.dumps(writer), namespace=namespace)
    assert finished(e2e_cluster, namespace, "writer") == "Succeeded"
    assert get_json(e2e_cluster, "pvc", "data", "-n", namespace)["status"]["phase"] == "Bound"


def test_network_policy_is_enforced(e2e_cluster: KubeCluster, namespace: str) -> None:
    cluster = e2e_cluster
    cluster.apply(json.dumps(pod("server", SERVER, {"role": "server"})), namespace=namespace)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "server"},
               "spec": {"selector": {"role": "server"}, "ports": [{"port": 8080}]}}
    cluster.apply(json.dumps(service), namespace=namespace)
    wait_until("the server pod to run", lambda: get_json(cluster, "pod", "server", "-n", namespace)
               ["status"].get("phase") == "Running", 120, 1)
    cluster.apply(json.dumps(client("before", "http://server:8080/")), namespace=namespace)
    assert finished(cluster, namespace, "before") == "Succeeded", "the server does not answer without a policy"

    deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny-ingress"},
            "spec": {"podSelector": {"matchLabels": {"role": "server"}}, "policyTypes": ["Ingress"]}}
    cluster.apply(json.dumps(deny), namespace=namespace)
    # kube-router applies a policy within its sync period; a client started a few seconds later is refused.
    def refused() -> bool:
        name = f"after-{uuid.uuid4().hex[:4]}"
        cluster.apply(json.dumps(client(name, "http://server:8080/")), namespace=namespace)
        return finished(cluster, namespace, name) == "Failed"

    wait_until("the deny-all ingress policy to refuse the client", refused, 90, 2)
