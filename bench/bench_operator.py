"""Operator benchmark against a real control plane, next to a baseline measured in the same run.

1. idle: TrainingRuns applied one at a time to an idle operator -> the moment their Job appears (p95);
2. burst: N TrainingRuns applied at once -> all N Jobs exist (against N Jobs created directly through the
   API by the same client pool: the floor any controller is compared with), duplicates (must be 0); and,
   to tell the operator's cost from the API server's, against every write a run needs made directly by the
   same pool (the run, its Job, its first status, its JobCreated Event: the "API floor");
3. completion: Jobs of the burst made to fail (the bench plays the kubelet, as tests/fixtures/pod_runner.py
   does) -> the moment the Job's end is in the TrainingRun's status (p95);
4. the operator's peak RSS through all of it.

    .venv/bin/python bench/bench_operator.py [--count 200] [--idle 20] [--complete 20] [--kubeconfig PATH]

Without --kubeconfig it starts a throw-away cluster with hack/cluster.sh (and stops it at the end). The issue's
targets are printed beside the numbers; the exit status is 1 when a Job is missing or duplicated.
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
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
import psutil

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION = "visionops.io", "v1alpha1"
RUN_LABEL = f"{GROUP}/training-run"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


class Watcher(threading.Thread):
    """Records the local time at which ``seen(obj)`` first holds for each object of a watched list."""

    def __init__(self, list_fn: Callable[..., Any], list_args: tuple[Any, ...], seen: Callable[[Any], bool]) -> None:
        super().__init__(daemon=True)
        self.list_fn, self.list_args, self.seen_fn = list_fn, list_args, seen
        self.seen: dict[str, float] = {}
        self.objects: dict[str, Any] = {}
        self.ready = threading.Event()

    def run(self) -> None:
        self.ready.set()
        while True:  # a watch can end or fail (expired resourceVersion): list and watch again
            try:
                for event in kubernetes.watch.Watch().stream(self.list_fn, *self.list_args, timeout_seconds=1800):
                    if event["type"] == "ERROR":
                        break
                    obj = event["object"]
                    name = obj["metadata"]["name"] if isinstance(obj, dict) else obj.metadata.name
                    self.objects[name] = obj
                    if name not in self.seen and event["type"] != "DELETED" and self.seen_fn(obj):
                        self.seen[name] = time.monotonic()
            except Exception as exc:  # reported, then watched again
                print(f"watch {self.list_fn.__name__}: {type(exc).__name__}: {exc}", file=sys.stderr)
                time.sleep(0.2)

    def wait(self, names: list[str], timeout: float) -> float:
        """The time the last of ``names`` was seen (or now, after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while any(n not in self.seen for n in names) and time.monotonic() < deadline:
            time.sleep(0.02)
        return max((self.seen[n] for n in names if n in self.seen), default=time.monotonic())


def job_watcher(api: kubernetes.client.ApiClient, namespace: str, finished: bool = False) -> Watcher:
    def done(job: Any) -> bool:  # the Job controller's first word on the end (SuccessCriteriaMet/FailureTarget)
        ends = ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget")
        return any(c.type in ends and c.status == "True" for c in job.status.conditions or [])

    watcher = Watcher(kubernetes.client.BatchV1Api(api).list_namespaced_job, (namespace,),
                      done if finished else (lambda _: True))
    watcher.start()
    watcher.ready.wait()
    return watcher


def wait_alive(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until kopf answers its liveness probe (its watches run), plus a moment for their initial lists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=1):
                time.sleep(1)
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the operator did not come up (exit code {proc.poll()})")


def create_namespace(api: kubernetes.client.ApiClient, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kubernetes.client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


def baseline(api: kubernetes.client.ApiClient, count: int, workers: int) -> dict[str, float]:
    """N Jobs created directly by a pool of clients: the floor."""
    ns = create_namespace(api, "bench-direct")
    watcher = job_watcher(api, ns)
    time.sleep(0.5)
    batch = kubernetes.client.BatchV1Api(api)
    applied: dict[str, float] = {}

    def make(i: int) -> None:
        name = f"direct-{i}"
        applied[name] = time.monotonic()
        batch.create_namespaced_job(ns, {
            "metadata": {"name": name},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "c", "image": "none"}]}}},
        })

    start = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(make, range(count)))
    end = watcher.wait(list(applied), 300)
    lat = [watcher.seen[n] - applied[n] for n in applied if n in watcher.seen]
    kubernetes.client.CoreV1Api(api).delete_namespace(ns)
    return {"all": end - start, "p50": percentile(lat, 0.5), "p95": percentile(lat, 0.95), "jobs": len(watcher.seen)}


def api_floor(kubeconfig: str, count: int, workers: int) -> dict[str, float]:
    """The writes of N runs (the run, its Job as the operator builds it, its first status as the operator decides
    it, its Event) made directly by a pool of clients through the operator's own REST layer; no operator."""
    os.environ["KUBECONFIG"] = kubeconfig
    sys.path.insert(0, str(REPO / "operator"))
    from visionops_operator import builders, decisions, kube, settings

    kube.reset()
    api = kubernetes.config.new_client_from_config(kubeconfig)
    ns = create_namespace(api, "bench-floor")
    watcher = job_watcher(api, ns)
    time.sleep(0.5)
    config = settings.OperatorSettings()
    runs = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/trainingruns"

    def write(i: int) -> None:
        run = kube.request("POST", runs, training_run(f"floor-{i}"))
        job = builders.training_job(run, config)
        kube.request("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", job)
        st = decisions.Status({}, datetime.now(UTC), run["metadata"]["generation"])
        decisions.training_job_created(st, job["metadata"]["name"], created=True)
        kube.patch_status(ns, "trainingruns", run["metadata"]["name"], st.changes, run["metadata"]["resourceVersion"])
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        kube.request("POST", f"/api/v1/namespaces/{ns}/events", {
            "metadata": {"generateName": "floor-"}, "type": "Normal", "reason": "JobCreated",
            "message": f"created Job {job['metadata']['name']}", "firstTimestamp": now, "lastTimestamp": now,
            "source": {"component": "bench"}, "involvedObject": {
                "apiVersion": run["apiVersion"], "kind": run["kind"], "name": run["metadata"]["name"],
                "namespace": ns, "uid": run["metadata"]["uid"]}})

    start = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(write, range(count)))
    end = watcher.wait([f"floor-{i}-train" for i in range(count)], 300)
    kubernetes.client.CoreV1Api(api).delete_namespace(ns)
    return {"all": end - start}


def training_run(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingRun", "metadata": {"name": name},
            "spec": {"dataset": {"pvc": "datasets"}, "hyperparameters": {"epochs": 1}}}


def fail_pod(core: kubernetes.client.CoreV1Api, namespace: str, job: str) -> None:
    """Write a failed container into the Job's pod, as a kubelet would; the Job controller fails the Job."""
    deadline = time.monotonic() + 60
    while not (pods := core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no pod for Job {job}")
        time.sleep(0.1)
    pod = pods[0]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    core.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": {
        "phase": "Failed", "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{"name": pod.spec.containers[0].name, "image": pod.spec.containers[0].image,
                               "imageID": "", "ready": False, "restartCount": 0,
                               "state": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now,
                                                        "finishedAt": now, "message": '{"error": "bench"}'}}}],
    }})


def through_operator(api: kubernetes.client.ApiClient, kubeconfig: str, args: argparse.Namespace) -> dict[str, Any]:
    ns = create_namespace(api, "bench-operator")
    env = dict(os.environ, KUBECONFIG=kubeconfig, VISIONOPS_MLFLOW_URI="", VISIONOPS_METRICS_PORT="0",
               PYTHONPATH=str(REPO / "operator"))
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    proc = subprocess.Popen([sys.executable, "-m", "visionops_operator", "--namespace", ns, "--liveness", liveness],
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
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    custom = kubernetes.client.CustomObjectsApi(api)
    jobs = job_watcher(api, ns)
    finished_jobs = job_watcher(api, ns, finished=True)
    runs = Watcher(custom.list_namespaced_custom_object, (GROUP, VERSION, ns, "trainingruns"),
                   lambda tr: bool((tr.get("status") or {}).get("jobCompletionTime")))
    runs.start()
    runs.ready.wait()
    wait_alive(liveness, proc)
    out: dict[str, Any] = {}
    try:
        # 1. one at a time, to an idle operator
        idle = []
        for i in range(args.idle):
            name = f"idle-{i}"
            applied = time.monotonic()
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingruns", training_run(name))
            idle.append(jobs.wait([f"{name}-train"], 30) - applied)
            time.sleep(0.3)
        out["idle_p50"], out["idle_p95"] = percentile(idle, 0.5), percentile(idle, 0.95)

        # 2. a burst
        applied: dict[str, float] = {}

        def make(i: int) -> None:
            name = f"tr-{i}"
            applied[name] = time.monotonic()
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, "trainingruns", training_run(name))

        cpu = sum(operator.cpu_times()[:2])
        start = time.monotonic()
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(make, range(args.count)))
        out["applying"] = time.monotonic() - start
        end = jobs.wait([f"{n}-train" for n in applied], 600)
        out["burst_cpu"] = sum(operator.cpu_times()[:2]) - cpu
        time.sleep(3)  # would a duplicate appear?
        lat = [jobs.seen[f"{n}-train"] - applied[n] for n in applied if f"{n}-train" in jobs.seen]
        owners = [(j.metadata.labels or {}).get(RUN_LABEL, "") for j in jobs.objects.values()]
        burst = [o for o in owners if o.startswith("tr-")]
        out |= {"all": end - start, "p50": percentile(lat, 0.5), "p95": percentile(lat, 0.95), "max": max(lat),
                "jobs": len(set(burst)), "dups": len(burst) - len(set(burst))}

        # 3. Job completion -> status
        core = kubernetes.client.CoreV1Api(api)
        chosen = [f"tr-{i}" for i in range(min(args.complete, args.count))]
        for name in chosen:  # --complete 0 skips this part (a big burst keeps the Job controller busy for long)
            fail_pod(core, ns, f"{name}-train")
        finished_jobs.wait([f"{n}-train" for n in chosen], 120)
        runs.wait(chosen, 120)
        delays = [runs.seen[n] - finished_jobs.seen[f"{n}-train"] for n in chosen
                  if n in runs.seen and f"{n}-train" in finished_jobs.seen]
        out |= {"done_p50": percentile(delays, 0.5) if delays else 0.0,
                "done_p95": percentile(delays, 0.95) if delays else 0.0, "done_n": len(delays)}
    finally:
        stop.set()
        proc.terminate()
        proc.wait(30)
        kubernetes.client.CoreV1Api(api).delete_namespace(ns)
    out["rss"] = peak / 2**20
    out["log"] = log.name
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="TrainingRuns applied at once (default %(default)s)")
    parser.add_argument("--idle", type=int, default=20, help="TrainingRuns applied one at a time (default %(default)s)")
    parser.add_argument("--complete", type=int, default=20,
                        help="Jobs of the burst made to end, for the completion latency (default %(default)s)")
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
        subprocess.run([kubectl, "--kubeconfig", kubeconfig, "apply", "--server-side", "--force-conflicts", "-f",
                        str(REPO / "manifests" / "crds")], check=True, capture_output=True)
        subprocess.run([kubectl, "--kubeconfig", kubeconfig, "wait", "--for=condition=Established",
                        "crd/trainingruns.visionops.io"], check=True, capture_output=True)
        api = kubernetes.config.new_client_from_config(kubeconfig)
        api.configuration.connection_pool_maxsize = args.workers * 2
        direct = baseline(api, args.count, args.workers)
        floor = api_floor(kubeconfig, args.count, args.workers)
        op = through_operator(api, kubeconfig, args)
    finally:
        if state:
            subprocess.run([str(REPO / "hack" / "cluster.sh"), "down", "--purge"],
                           env=dict(os.environ, VISIONOPS_CLUSTER_DIR=state), capture_output=True)
    ratio = op["all"] / direct["all"]
    rows = [
        ("idle: apply -> Job, p95 s", f"{op['idle_p95']:.3f} (p50 {op['idle_p50']:.3f}, n={args.idle})", "< 1",
         op["idle_p95"] < 1),
        (f"burst {args.count}: all Jobs exist s", f"{op['all']:.2f} (direct {direct['all']:.2f}: {ratio:.2f}x)",
         "< 3x direct", ratio < 3),
        ("burst: apply -> Job p50 / p95 / max s",
         f"{op['p50']:.3f} / {op['p95']:.3f} / {op['max']:.3f} (direct p95 {direct['p95']:.3f})", "",
         True),
        ("burst: the API floor s", f"{floor['all']:.2f} (operator / floor: {op['all'] / floor['all']:.2f}x)", "",
         True),
        ("burst: applying the runs took s", f"{op['applying']:.2f} (the Jobs direct: {direct['all']:.2f})", "", True),
        ("burst: operator CPU s", f"{op['burst_cpu']:.2f} ({op['burst_cpu'] / op['all']:.0%} of a core)", "", True),
        ("burst: Jobs / duplicates", f"{op['jobs']} / {op['dups']}", f"{args.count} / 0",
         op["jobs"] == args.count and op["dups"] == 0),
        ("Job end -> status, p95 s", f"{op['done_p95']:.3f} (p50 {op['done_p50']:.3f}, n={op['done_n']})", "< 2",
         op["done_p95"] < 2),
        ("operator peak RSS MiB", f"{op['rss']:.1f}", "< 150", op["rss"] < 150),
    ]
    print(f"\nOperator benchmark ({args.workers} concurrent clients; operator log: {op['log']})\n")
    print(f"{'measure':<36}{'value':<44}{'target':<14}met")
    for label, value, target, met in rows:
        print(f"{label:<36}{value:<44}{target:<14}{'yes' if met else 'NO'}")
    return 0 if op["jobs"] == args.count and op["dups"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
