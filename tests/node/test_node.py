"""The local node runs pods for real: containerd + kubelet + kube-proxy + CoreDNS (hack/cluster.sh up --node).

Every pod here uses the node's static test image (``visionops.local/probe``, FROM scratch, imported into
containerd by ``hack/cluster.sh``), so nothing is pulled. The last test starts a second cluster with a
node of its own beside the session's, runs a pod on it, stops it and checks the host is as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
from fixtures.cluster import (
    CLUSTER_SCRIPT,
    NODE_NAME,
    PROBE_IMAGE,
    KubeCluster,
    get_json,
    node_prerequisites_missing,
    wait_until,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]





def probe_pod(name: str, args: list[str], labels: dict[str, str] | None = None, restart: str = "Never") -> str:
    """A one-container pod of the probe image (never pulled: it only exists on the node)."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {
                "restartPolicy": restart,
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "probe", "image": PROBE_IMAGE, "imagePullPolicy": "Never", "args": args}],
            },
        }
    )


def pod_phase(cluster: KubeCluster, namespace: str, name: str) -> str:
    return cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "jsonpath={.status.phase}").stdout


def wait_phase(cluster: KubeCluster, namespace: str, name: str, phases: set[str], timeout: float = 90) -> str:
    def reached() -> str:
        phase = pod_phase(cluster, namespace, name)
        return phase if phase in phases else ""

    try:
        return str(wait_until(f"pod {namespace}/{name} in {sorted(phases)}", reached, timeout))
    except TimeoutError:
        described = cluster.kubectl("describe", "pod", name, "-n", namespace, check=False).stdout
        raise TimeoutError(f"pod {namespace}/{name} never reached {sorted(phases)}:\n{described}") from None


def test_node_is_ready_and_schedulable(kube_node_cluster: KubeCluster) -> None:
    node = get_json(kube_node_cluster, "node", NODE_NAME)
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True", node["status"]["conditions"]
    # The node lifecycle controller lifts the not-ready taint shortly after Ready.
    wait_until("no taints", lambda: not get_json(kube_node_cluster, "node", NODE_NAME)["spec"].get("taints"), 30)
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.4"
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    images = {name for image in node["status"]["images"] for name in image.get("names", [])}
    assert any(PROBE_IMAGE in name for name in images), images


def test_static_image_pod_runs_to_completion(kube_node_cluster: KubeCluster, node_namespace: str) -> None:
    ns = node_namespace
    kube_node_cluster.apply(probe_pod("once", []), namespace=ns)
    assert wait_phase(kube_node_cluster, ns, "once", {"Succeeded", "Failed"}) == "Succeeded"
    pod = get_json(kube_node_cluster, "pod", "once", "-n", ns)
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "Completed" and terminated["exitCode"] == 0
    assert pod["spec"]["nodeName"] == NODE_NAME
    # Logs come from the kubelet (apiserver -> kubelet:10250 through the node's veth).
    assert kube_node_cluster.kubectl("logs", "once", "-n", ns).stdout.strip() == "probe ok"

    kube_node_cluster.apply(probe_pod("fails", ["exit", "3"]), namespace=ns)
    assert wait_phase(kube_node_cluster, ns, "fails", {"Succeeded", "Failed"}) == "Failed"
    state = get_json(kube_node_cluster, "pod", "fails", "-n", ns)["status"]["containerStatuses"][0]["state"]
    assert state["terminated"]["exitCode"] == 3


def test_job_pods_really_run_and_the_job_completes(kube_node_cluster: KubeCluster, node_namespace: str) -> None:
    ns = node_namespace
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "work"},
        "spec": {
            "completions": 2,
            "parallelism": 2,
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "w", "image": PROBE_IMAGE, "imagePullPolicy": "Never", "args": ["sleep", "1"]}
                    ],
                }
            },
        },
    }
    kube_node_cluster.apply(json.dumps(job), namespace=ns)

    def complete() -> bool:
        status = get_json(kube_node_cluster, "job", "work", "-n", ns).get("status", {})
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        assert conditions.get("Failed") != "True", status
        return conditions.get("Complete") == "True"

    wait_until("Job work Complete", complete, timeout=120)
    pods = get_json(kube_node_cluster, "pods", "-n", ns, "-l", "job-name=work")["items"]
    assert len(pods) == 2
    for pod in pods:
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["exitCode"] == 0
        started = terminated["startedAt"]
        assert started <= terminated["finishedAt"]
        assert pod["status"]["podIP"], pod["status"]


def test_service_is_reachable_by_dns_name_from_a_pod(kube_node_cluster: KubeCluster, node_namespace: str) -> None:
    ns = node_namespace
    kube_node_cluster.apply(probe_pod("web", ["serve", ":8080", "hello from web"], {"app": "web"}, "Always"), ns)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    kube_node_cluster.apply(json.dumps(service), namespace=ns)
    wait_phase(kube_node_cluster, ns, "web", {"Running"})

    # Short name (search domains), then the FQDN: CoreDNS answers, kube-proxy DNATs to the pod.
    kube_node_cluster.apply(probe_pod("client", ["get", "http://web/", "60"]), namespace=ns)
    kube_node_cluster.apply(probe_pod("client-fqdn", ["get", f"http://web.{ns}.svc.cluster.local/", "60"]), ns)
    for client in ("client", "client-fqdn"):
        phase = wait_phase(kube_node_cluster, ns, client, {"Succeeded", "Failed"}, timeout=120)
        logs = kube_node_cluster.kubectl("logs", client, "-n", ns, check=False)
        assert phase == "Succeeded", logs.stdout + logs.stderr
        assert logs.stdout.strip() == "hello from web"

    # The host reaches pod IPs directly (a route through the node's veth).
    pod_ip = get_json(kube_node_cluster, "pod", "web", "-n", ns)["status"]["podIP"]
    with urllib.request.urlopen(f"http://{pod_ip}:8080/", timeout=10) as response:
        assert response.read().decode().strip() == "hello from web"


# ---- down leaves nothing behind ------------------------------------------------------------------------
def host_snapshot() -> dict[str, set[str]]:
    """What a node could leave on the host: links, netns, mounts, root-netns iptables rules."""

    def lines(*cmd: str) -> set[str]:
        return set(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines())

    mounts = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    links = {line.split(":")[1].strip().split("@")[0] for line in lines("ip", "-o", "link", "show")}
    rules = {r for t in ("filter", "nat", "mangle", "raw") for r in lines("iptables-save", "-t", t) if r[:1] in "-:"}
    return {"links": links, "netns": lines("ip", "netns", "list"), "mounts": mounts, "rules": rules}


def processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and text in cmdline and int(proc.name) != os.getpid():
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def test_down_leaves_nothing_behind(kube_node_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A second cluster with its own node, beside the session's: up, run a pod, down, compare the host."""
    if reason := node_prerequisites_missing():
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("node-down")
    env = {k: v for k, v in os.environ.items() if k not in ("NODE", "APISERVER_PORT", "ETCD_PORT")}
    env |= {"VISIONOPS_CLUSTER_DIR": str(state), "VISIONOPS_K8S_BIN": str(kube_node_cluster.bin_dir)}
    before = host_snapshot()

    def run(*args: str) -> str:
        proc = subprocess.run([str(CLUSTER_SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return proc.stdout

    kubeconfig = run("up", "--node").strip().splitlines()[-1]
    try:
        cluster = KubeCluster(Path(kubeconfig), kube_node_cluster.bin_dir, kube_node_cluster.kserve_crd_dir, state)
        index = (state / "node" / "node.env").read_text().split("=")[1].strip()
        netns, veth = f"visionops-node-{index}", f"vonode{index}"
        during = host_snapshot()
        assert netns in {n.split()[0] for n in during["netns"]} and veth in during["links"]
        cluster.kubectl("create", "namespace", "down")
        wait_until(
            "default ServiceAccount",
            lambda: not cluster.kubectl("get", "sa", "default", "-n", "down", check=False).returncode,
            90,
        )
        cluster.apply(probe_pod("sleeper", ["sleep", "3600"]), namespace="down")
        wait_phase(cluster, "down", "sleeper", {"Running"})
        assert any(m.startswith(f"{state}/") for m in host_snapshot()["mounts"]), "a running pod mounts its rootfs"
        assert processes_mentioning(str(state))
    finally:
        run("down")

    after = host_snapshot()
    assert not [m for m in after["mounts"] if m.startswith(f"{state}/") or m == str(state)]
    assert not processes_mentioning(str(state))
    assert netns not in {n.split()[0] for n in after["netns"]}
    assert veth not in after["links"]
    assert after["links"] - before["links"] == set(), after["links"] - before["links"]
    assert not [r for r in after["rules"] if veth in r or f"172.31.{index}." in r or f"10.244.{index}." in r]
    # Rules the node would add live in its own netns; the host's tables change only by others' doing.
    added = after["rules"] - before["rules"]
    assert not [r for r in added if "KUBE-" in r or "CNI-" in r], added
    assert not [d for d in Path("/sys/fs/cgroup").glob(f"*/visionops-node-{index}")]
    assert not Path(f"/run/visionops-node/{index}.owner").exists()
