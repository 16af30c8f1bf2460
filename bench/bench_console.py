"""Console benchmark: time to a usable page against the raw API calls that page needs, measured in the same run.

A real control plane with 200 TrainingRuns (status filled in as the operator writes it) and a real MLflow server
with 50 training runs registered as 50 versions of one model. For three pages, the console's answer (the HTML,
which carries everything the page shows: it is usable when it arrives) is timed against the same Kubernetes and
MLflow calls made directly by this process with the same clients:

- the runs list   ``GET /training``            list TrainingRuns (the published schema of the form is cached 60 s)
- a run page      ``GET /training/<name>``     get the TrainingRun, 10 metric histories, pods, Events
- the deploy page ``GET /deploy``              registered models, the model, its versions, their runs, the
                                               ModelDeployments, the ISVC

    .venv/bin/python bench/bench_console.py [--runs 200] [--versions 50] [--repeat 15] [--kubeconfig PATH]

Without --kubeconfig it starts a throw-away cluster with hack/cluster.sh (and stops it at the end). Targets (issue
11): each page under 1 s, and the console's own overhead under 1.5x the raw calls. Exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes
import requests

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION = "visionops.io", "v1alpha1"
MODEL = "bench-detector"
KEYS = ("train/box_loss", "train/cls_loss", "train/dfl_loss", "val/box_loss", "val/cls_loss", "val/dfl_loss",
        "precision", "recall", "map50", "map50_95")


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    fn()  # warm: connections, caches of the first answer
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def fill_mlflow(uri: str, versions: int) -> list[str]:
    """``versions`` finished training runs (10 epochs of history each), each registered as a version."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.create_experiment(f"bench-console-{uuid.uuid4().hex[:6]}")
    client.create_registered_model(MODEL)
    run_ids = []
    for i in range(versions):
        run = client.create_run(experiment, tags={"visionops.io/kind": "training", "visionops.io/name": f"run-{i:03d}"})
        now = int(time.time() * 1000)
        metrics = [Metric(key, 1.0 / (step + i + 1), now, step) for key in KEYS for step in range(1, 11)]
        client.log_batch(run.info.run_id, metrics=metrics)
        client.log_param(run.info.run_id, "epochs", "10")
        client.set_terminated(run.info.run_id)
        client.create_model_version(MODEL, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        run_ids.append(run.info.run_id)
    client.set_registered_model_alias(MODEL, "production", str(versions))
    client.set_registered_model_alias(MODEL, "staging", str(versions - 1))
    return run_ids


def fill_cluster(api: kubernetes.client.ApiClient, namespace: str, count: int, run_ids: list[str]) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)

    def one(i: int) -> None:
        name = f"run-{i:03d}"
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingRun", "metadata": {"name": name},
                "spec": {"dataset": {"pvc": "datasets", "path": "vision"}, "hyperparameters": {"epochs": 10}}}
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "trainingruns", body)
        status = {"phase": "Succeeded", "jobName": f"{name}-train", "startTime": "2026-01-01T00:00:00Z",
                  "completionTime": "2026-01-01T00:10:00Z",
                  "progress": {"epoch": 10, "epochs": 10, "display": "10/10"},
                  "metrics": {"map50": 0.5, "map50_95": 0.3, "precision": 0.6, "recall": 0.5},
                  "promotion": {"decision": "Rejected", "reason": "bench"}}
        if i < len(run_ids):
            status |= {"mlflowRunId": run_ids[i], "modelVersion": str(i + 1)}
        custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, "trainingruns", name,
                                                     {"status": status})

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(count)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="TrainingRuns (default %(default)s)")
    parser.add_argument("--versions", type=int, default=50, help="model versions (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=15, help="timed requests per page (default %(default)s)")
    parser.add_argument("--kubeconfig", default=os.environ.get("VISIONOPS_KUBECONFIG"),
                        help="use this cluster; default: start a throw-away one")
    args = parser.parse_args(argv)
    from visionops.local_mlflow import free_port, start_mlflow_server

    work = Path(tempfile.mkdtemp(prefix="bench-console-"))
    state = None
    kubeconfig = args.kubeconfig
    if not kubeconfig:
        state = str(work / "cluster")
        out = subprocess.run([str(REPO / "hack" / "cluster.sh"), "up"], check=True, capture_output=True, text=True,
                             env=dict(os.environ, VISIONOPS_CLUSTER_DIR=state)).stdout
        kubeconfig = out.strip().splitlines()[-1]
    mlflow_proc, mlflow_uri = start_mlflow_server(work / "mlflow")
    console = None
    namespace = f"bench-console-{uuid.uuid4().hex[:6]}"
    kubectl = subprocess.run([str(REPO / "hack" / "build-k8s.sh"), "--print-bin-dir"], check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1] + "/kubectl"
    try:
        for cmd in (["apply", "--server-side", "--force-conflicts", "-f", str(REPO / "manifests" / "crds")],
                    ["wait", "--for=condition=Established", "crd/trainingruns.visionops.io"],
                    ["create", "namespace", namespace]):
            subprocess.run([kubectl, "--kubeconfig", kubeconfig, *cmd], check=True, capture_output=True)
        api = kubernetes.config.new_client_from_config(kubeconfig)
        print(f"filling MLflow ({args.versions} runs and versions) and the cluster ({args.runs} TrainingRuns)...",
              file=sys.stderr)
        run_ids = fill_mlflow(mlflow_uri, args.versions)
        fill_cluster(api, namespace, args.runs, run_ids)

        port = free_port()
        log = (work / "console.log").open("wb")
        console = subprocess.Popen([sys.executable, "-m", "visionops_console", "--port", str(port), "--kubeconfig",
                                    kubeconfig, "--namespace", namespace, "--mlflow-uri", mlflow_uri, "--model-name",
                                    MODEL], stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or console.poll() is not None:
                raise RuntimeError("the console did not start")
            time.sleep(0.3)
        session = requests.Session()

        def page(path: str) -> Callable[[], None]:
            def get() -> None:
                answer = session.get(base + path, timeout=60)
                answer.raise_for_status()
            return get

        from mlflow.tracking import MlflowClient

        custom, core = kubernetes.client.CustomObjectsApi(api), kubernetes.client.CoreV1Api(api)
        mlflow = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
        pool = ThreadPoolExecutor(4)
        target = "run-000"

        def raw_runs() -> None:
            custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "trainingruns")

        def raw_run() -> None:
            run = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "trainingruns", target)
            list(pool.map(lambda key: mlflow.get_metric_history(run["status"]["mlflowRunId"], key), KEYS))
            core.list_namespaced_pod(namespace, label_selector=f"{GROUP}/training-run={target}")
            for kind, name in (("TrainingRun", target), ("Job", f"{target}-train")):
                core.list_namespaced_event(namespace, field_selector=f"involvedObject.kind={kind},"
                                                                     f"involvedObject.name={name}")

        def raw_deploy() -> None:
            mlflow.search_registered_models()
            mlflow.get_registered_model(MODEL)
            found = list(mlflow.search_model_versions(f"name='{MODEL}'"))
            experiments = [e.experiment_id for e in mlflow.search_experiments()]
            ids = ", ".join(f"'{v.run_id}'" for v in found)
            mlflow.search_runs(experiments, filter_string=f"attributes.run_id IN ({ids})", max_results=1000)
            custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments")  # production
            with contextlib.suppress(kubernetes.client.rest.ApiException):  # none here: a 404, as the console gets
                custom.get_namespaced_custom_object("serving.kserve.io", "v1beta1", namespace, "inferenceservices",
                                                    "visionops-predictor")

        rows = []
        for label, path, raw in (("runs list (200 TrainingRuns)", "/training", raw_runs),
                                 ("run page (10 metric histories)", f"/training/{target}", raw_run),
                                 ("deploy page (50 versions)", "/deploy", raw_deploy)):
            console_s = statistics.median(timed(page(path), args.repeat))
            raw_s = statistics.median(timed(raw, args.repeat))
            rows.append((label, console_s, raw_s))
    finally:
        if console is not None:
            console.terminate()
            console.wait(timeout=30)
        mlflow_proc.terminate()
        mlflow_proc.wait(timeout=30)
        if state:
            subprocess.run([str(REPO / "hack" / "cluster.sh"), "down", "--purge"],
                           env=dict(os.environ, VISIONOPS_CLUSTER_DIR=state), capture_output=True)
        elif kubeconfig:
            subprocess.run([kubectl, "--kubeconfig", kubeconfig, "delete", "namespace", namespace, "--wait=false"],
                           capture_output=True)
    print(f"\nConsole benchmark ({args.runs} TrainingRuns, {args.versions} model versions; median of {args.repeat})\n")
    print(f"{'page':<34}{'console ms':>11}{'raw calls ms':>14}{'ratio':>8}   target: < 1000 ms, < 1.5x")
    ok = True
    for label, console_s, raw_s in rows:
        ratio = console_s / raw_s if raw_s else float("inf")
        met = console_s < 1.0 and ratio < 1.5
        ok &= met
        print(f"{label:<34}{console_s * 1000:>11.0f}{raw_s * 1000:>14.0f}{ratio:>7.2f}x   {'yes' if met else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
