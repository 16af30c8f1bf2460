"""Operator fan-out benchmark: apply N TrainingRuns at once against a real control plane.

Measures the time until all N Jobs exist, duplicate Jobs (must be 0), p50/p95 latency from a
TrainingRun's creation to its Job's appearance, and the operator's peak RSS. The baseline, measured
in the same run on the same cluster, is N Jobs created directly through the API by the same client
pool: the floor any controller is compared with.

    .venv/bin/python bench/bench_operator.py [--count 200] [--kubeconfig PATH]

Without --kubeconfig it starts a throw-away cluster with hack/cluster.sh (and stops it at the end).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kubernetes
import psutil

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION = "visionops.io", "v1alpha1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


class JobWatcher(threading.Thread):
    """Records the local time each Job of a namespace is first seen (a watch, not polling)."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str, label: str) -> None:
        super().__init__(daemon=True)
        self.batch = kubernetes.client.BatchV1Api(api)
        self.namespace, self.label = namespace, label
        self.seen: dict[str, float] = {}
        self.by_owner: dict[str, list[str]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        watch = kubernetes.watch.Watch()
        for event in watch.stream(self.batch.list_namespaced_job, self.namespace, timeout_seconds=600):
            job = event["object"]
            if event["type"] == "ADDED" and job.metadata.name not in self.seen:
                self.seen[job.metadata.name] = time.monotonic()
                owner = (job.metadata.labels or {}).get(self.label, job.metadata.name)
                self.by_owner.setdefault(owner, []).append(job.metadata.name)
            if self.stop.is_set():
                watch.stop()


def wait_for(count: int, watcher: JobWatcher, timeout: float) -> float:
    start = time.monotonic()
    while len(watcher.seen) < count and time.monotonic() - start < timeout:
        time.sleep(0.05)
    return time.monotonic()


def create_namespace(api: kubernetes.client.ApiClient, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kubernetes.client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


def baseline(api: kubernetes.client.ApiClient, count: int, workers: int) -> dict[str, float]:
    """N Jobs created directly by a pool of clients: the floor."""
    ns = create_namespace(api, "bench-direct")
    watcher = JobWatcher(api, ns, "bench")
    watcher.start()
    time.sleep(0.5)
    batch = kubernetes.client.BatchV1Api(api)
    applied: dict[str, float] = {}

    def make(i: int) -> None:
        name = f"direct-{i}"
        applied[name] = time.monotonic()
        batch.create_namespaced_job(ns, {
            "metadata": {"name": name, "labels": {"bench": name}},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "c", "image": "none"}]}}},
        })

    start = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(make, range(count)))
    end = wait_for(count, watcher, 300)
    watcher.stop.set()
    lat = [watcher.seen[n] - applied[n] for n in applied if n in watcher.seen]
    kubernetes.client.CoreV1Api(api).delete_namespace(ns)
    return {"all": end - start, "p50": percentile(lat, 0.5), "p95": percentile(lat, 0.95),
            "jobs": len(watcher.seen), "dups": 0, "rss": float("nan")}


def through_operator(api: kubernetes.client.ApiClient, kubeconfig: str, count: int, workers: int) -> dict[str, float]:
    ns = create_namespace(api, "bench-operator")
    env = dict(os.environ, KUBECONFIG=kubeconfig, VISIONOPS_MLFLOW_URI="", VISIONOPS_POLL_SECONDS="10",
               PYTHONPATH=str(REPO / "operator"))
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "visionops_operator", "--namespace", ns,
                             "--liveness", f"http://127.0.0.1:{free_port()}/healthz"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    operator = psutil.Process(proc.pid)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                peak = max(peak, operator.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.1)

    threading.Thread(target=sample, daemon=True).start()
    time.sleep(6)  # let kopf start its watches
    watcher = JobWatcher(api, ns, f"{GROUP}/training-run")
    watcher.start()
    custom = kubernetes.client.CustomObjectsApi(api)
    applied: dict[str, float] = {}

    def make(i: int) -> None:
        name = f"tr-{i}"
        applied[name] = time.monotonic()
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingruns", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingRun", "metadata": {"name": name},
            "spec": {"dataset": {"pvc": "datasets"}, "hyperparameters": {"epochs": 1}},
        })

    start = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(make, range(count)))
    end = wait_for(count, watcher, 600)
    time.sleep(3)  # a few more reconcile cycles: would a duplicate appear?
    watcher.stop.set()
    stop.set()
    proc.terminate()
    proc.wait(30)
    dups = sum(len(v) - 1 for v in watcher.by_owner.values())
    lat = [watcher.seen[f"{n}-train"] - applied[n] for n in applied if f"{n}-train" in watcher.seen]
    kubernetes.client.CoreV1Api(api).delete_namespace(ns)
    return {"all": end - start, "p50": percentile(lat, 0.5), "p95": percentile(lat, 0.95),
            "jobs": len(watcher.seen), "dups": dups, "rss": peak / 2**20}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="TrainingRuns to apply (default %(default)s)")
    parser.add_argument("--workers", type=int, default=16, help="concurrent API clients (default %(default)s)")
    parser.add_argument("--kubeconfig", default=os.environ.get("VISIONOPS_KUBECONFIG"),
                        help="use this cluster (must have the CRDs applied); default: start a throw-away one")
    args = parser.parse_args(argv)
    state = None
    kubeconfig = args.kubeconfig
    if not kubeconfig:
        state = tempfile.mkdtemp(prefix="bench-cluster-")
        env = dict(os.environ, VISIONOPS_CLUSTER_DIR=state)
        out = subprocess.run([str(REPO / "hack" / "cluster.sh"), "up"], env=env, check=True,
                             capture_output=True, text=True).stdout
        kubeconfig = out.strip().splitlines()[-1]
    try:
        kubectl = subprocess.run([str(REPO / "hack" / "build-k8s.sh"), "--print-bin-dir"], check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1] + "/kubectl"
        subprocess.run([kubectl, "--kubeconfig", kubeconfig, "apply", "--server-side", "-f",
                        str(REPO / "manifests" / "crds")], check=True, capture_output=True)
        subprocess.run([kubectl, "--kubeconfig", kubeconfig, "wait", "--for=condition=Established",
                        "crd/trainingruns.visionops.io"], check=True, capture_output=True)
        api = kubernetes.config.new_client_from_config(kubeconfig)
        api.configuration.connection_pool_maxsize = args.workers * 2
        direct = baseline(api, args.count, args.workers)
        op = through_operator(api, kubeconfig, args.count, args.workers)
    finally:
        if state:
            subprocess.run([str(REPO / "hack" / "cluster.sh"), "down", "--purge"],
                           env=dict(os.environ, VISIONOPS_CLUSTER_DIR=state), capture_output=True)
    print(f"\n{args.count} objects applied at once with {args.workers} concurrent clients\n")
    print(f"{'path':<28}{'all Jobs exist s':>18}{'p50 s':>9}{'p95 s':>9}{'Jobs':>7}{'dups':>6}{'peak RSS MiB':>14}")
    for label, r in (("baseline: Jobs via API", direct), ("TrainingRuns via operator", op)):
        print(f"{label:<28}{r['all']:>18.2f}{r['p50']:>9.3f}{r['p95']:>9.3f}{r['jobs']:>7.0f}{r['dups']:>6.0f}"
              f"{r['rss']:>14.1f}")
    print(f"\noperator / baseline (time until all Jobs exist): {op['all'] / direct['all']:.2f}x")
    return 0 if op["dups"] == 0 and op["jobs"] == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
