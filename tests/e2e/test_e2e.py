"""End to end on a real node: the chart, the operator, training, promotion, serving and drift, as users run them.

Every component runs as a pod from the project's own images: the operator and MLflow from the chart, the
training and drift Jobs the operator starts, the predictor KServe rolls out. MLflow stores as production runs
it: its backend store on a real PostgreSQL and its artifacts on a real S3 server, outside the cluster
(``fixtures.stores``), and both fail on purpose: MLflow and the database restart while a pod trains, MLflow
restarts during a rollout, the database once more with the whole registry in it. The tests act like users:
``kubectl apply`` of CRs, HTTP to NodePorts. The steps build on each other (one module, run in file
order); a step whose predecessor failed is skipped rather than left to time out.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.browser import screenshot
from fixtures.e2e import PROMETHEUS, Release, prometheus_in
from fixtures.prometheus import alert_states, query
from fixtures.stores import ExternalStores

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(5400)]

MODEL = "vision-defect-detector"  # the chart's predictor.modelName and configs/training.yaml's model
DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "visionops" / "dashboards" / "visionops.json"
PREDICTOR = "visionops-predictor"  # the chart's InferenceService and predictor Service
CONSOLE = "visionops-console"  # the chart's console Service
TRAINING_RUN = "e2e-train"
DRIFT_CHECK = "e2e-drift"
TRAINING_LABEL = "visionops.io/training-run"
DRIFT_LABEL = "visionops.io/drift-check"
OPERATOR_SELECTOR = "app.kubernetes.io/component=operator"
MLFLOW_SELECTOR = "app.kubernetes.io/component=mlflow"
OPERATOR_PEERING = "visionops-operator"  # the chart's KopfPeering (operator.replicas: 2 in e2e-values.yaml)
PREDICTOR_SELECTOR = f"serving.kserve.io/inferenceservice={PREDICTOR}"
# The demo's run (30 epochs at 160 px: about 3 minutes on two cores). The gate at 0 promotes whatever it
# learns (the gate has its own tests). No CPU request: a 2-CPU kind node has about 0.8 CPU left unrequested
# beside its control plane, KServe and the chart, and a request is also the pod's limit.
TRAINING_SPEC = {
    "dataset": {"pvc": "visionops-datasets", "path": "synthetic"},
    "hyperparameters": {"epochs": 30, "imgsz": 160, "batch": 8},
    "resources": {"memory": "3Gi"},
    "promotion": {"map50Threshold": 0.0, "inferenceService": PREDICTOR},
}

_passed: set[str] = set()


@pytest.fixture(scope="module")
def release_settings() -> dict[str, str]:
    """The console's Production page reads this module's live Prometheus (:func:`prometheus`)."""
    return {"console.prometheusUrl": f"http://{PROMETHEUS}:9090"}


@pytest.fixture(scope="module")
def mlflow_stores(external_mlflow_stores: ExternalStores) -> ExternalStores:
    """This module's MLflow: PostgreSQL and S3 outside the cluster (the other e2e modules keep SQLite)."""
    return external_mlflow_stores


@pytest.fixture(scope="module")
def prometheus(e2e_release: Release, e2e_images: dict[str, str]) -> Iterator[str]:
    """A live Prometheus in the release's namespace from the first test on (it sees the whole loop), finding its
    targets as the chart's ServiceMonitors describe and evaluating the chart's alerting rules."""
    with prometheus_in(e2e_release, e2e_images["operator"]) as url:
        yield url


def requires(step: str) -> None:
    if step not in _passed:
        pytest.skip(f"needs the earlier step {step!r}, which did not pass")


def http(url: str, body: dict | None = None, timeout: float = 60,
         auth: tuple[str, str] | None = None) -> tuple[int, Any]:
    """GET (or POST ``body`` as JSON), signed in with ``auth`` (basic); ``(status, parsed JSON or text)``, 4xx/5xx
    included."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def answers(url: str) -> bool:
    """``GET url`` gives 200. Refused connections count as not yet: a NodePort refuses while kube-proxy has
    no ready endpoint for it, which can outlast the InferenceService's Ready condition by a moment."""
    try:
        return http(url, timeout=5)[0] == 200
    except OSError:  # urllib's URLError included
        return False


def cr(kind: str, name: str, spec: dict) -> str:
    return json.dumps({"apiVersion": "visionops.io/v1alpha1", "kind": kind, "metadata": {"name": name},
                       "spec": spec})


def jobs_of(release: Release, label: str, name: str, component: str = "training") -> list[str]:
    """Names of the Jobs of one CR (a retraining's Job also carries its DriftCheck's label)."""
    selector = f"{label}={name},app.kubernetes.io/component={component}"
    return [j["metadata"]["name"] for j in release.get("jobs", "-l", selector)["items"]]


def ready_pod(release: Release, selector: str) -> str:
    """Name of a Ready pod matching ``selector`` (not being deleted), or ''."""
    for pod in release.get("pods", "-l", selector)["items"]:
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        if conditions.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp"):
            return pod["metadata"]["name"]
    return ""


def restart_mlflow(release: Release) -> str:
    """MLflow's pod goes (its Deployment starts another): returns once it no longer answers."""
    old = ready_pod(release, MLFLOW_SELECTOR)
    assert old, f"no Ready MLflow pod\n{release.diagnostics()}"
    release.kubectl("delete", "pod", old, "--wait=false")
    health = f"{release.node_port_url('visionops-mlflow')}/health"
    release.wait("MLflow to stop answering", lambda: not answers(health), 60, 0.5)
    return old


def mlflow_back(release: Release, old: str) -> float:
    """Seconds until a new MLflow pod is Ready and answers."""
    started = time.monotonic()
    release.wait("a new Ready MLflow pod", lambda: (p := ready_pod(release, MLFLOW_SELECTOR)) != old and p, 240)
    release.wait("MLflow to answer", lambda: answers(f"{release.node_port_url('visionops-mlflow')}/health"), 60, 0.5)
    return time.monotonic() - started


def epoch_reached(release: Release, epoch: int) -> bool:
    progress = release.get("trainingrun", TRAINING_RUN).get("status", {}).get("progress") or {}
    return progress.get("epoch", 0) >= epoch


def mlflow(release: Release, path: str, **params: str) -> dict:
    url = f"{release.node_port_url('visionops-mlflow')}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(params)}"
    status, body = http(url, auth=release.mlflow_admin())
    assert status == 200, f"MLflow GET {url} -> {status}: {body}"
    return body


@pytest.mark.usefixtures("prometheus")
def test_training_run_trains_in_a_pod_and_survives_an_operator_restart(e2e_release: Release) -> None:
    release = e2e_release
    # Before any model: the predictor pod runs, not Ready, and says what to do; its ModelDeployment says NoModel.
    pod = release.wait("a running predictor pod", lambda: next(
        (p for p in release.get("pods", "-l", PREDICTOR_SELECTOR)["items"] if p["status"].get("phase") == "Running"),
        None), 300)
    assert not ready_pod(release, PREDICTOR_SELECTOR), "the predictor is Ready with no model"
    assert all(c.get("restartCount", 0) == 0 for c in pod["status"].get("containerStatuses", [])), pod["status"]
    release.wait("the ModelDeployment to say NoModel",
                 lambda: release.get("modeldeployment", PREDICTOR).get("status", {}).get("phase") == "NoModel", 120)
    release.kubectl("apply", "-f", "-", input=cr("TrainingRun", TRAINING_RUN, TRAINING_SPEC))

    job = release.wait("the training Job", lambda: jobs_of(release, TRAINING_LABEL, TRAINING_RUN), 120)[0]
    release.wait(f"a running pod of Job {job}",
                 lambda: any(p["status"].get("phase") == "Running"
                             for p in release.get("pods", "-l", f"job-name={job}")["items"]), 300)

    # Mid-training, the acting operator replica goes; the other one (or the pod that replaces it) adopts the Job.
    old = release.wait("an acting operator replica", lambda: acting_operator(release), 120)
    release.kubectl("delete", "pod", old, "--wait=false")
    new = release.wait("another acting operator replica", lambda: (a := acting_operator(release)) != old and a, 180)
    assert jobs_of(release, TRAINING_LABEL, TRAINING_RUN) == [job], "the restarted operator made another Job"

    # Then MLflow goes while the pod trains (the epoch's metrics and checkpoint wait for the new one), and once
    # the run logs again, the database restarts under it.
    release.wait("epoch 3 in the TrainingRun's status", lambda: epoch_reached(release, 3), 600, 1)
    outage = mlflow_back(release, restart_mlflow(release))
    epoch = release.get("trainingrun", TRAINING_RUN)["status"]["progress"]["epoch"]
    release.wait(f"epoch {epoch + 1} logged through the new MLflow", lambda: epoch_reached(release, epoch + 1), 300, 1)
    release.stores.postgres.restart()
    print(f"[e2e timing] MLflow restart mid-training: answering again after {outage:.1f} s; database restarted "
          f"at epoch {release.get('trainingrun', TRAINING_RUN)['status']['progress']['epoch']}")

    def finished() -> dict | None:
        status = release.get("trainingrun", TRAINING_RUN).get("status", {})
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = release.wait(f"TrainingRun {TRAINING_RUN} to finish", finished, 900, every=5)
    assert status["phase"] == "Succeeded", f"{status}\n{release.diagnostics()}"
    assert status["jobName"] == job
    assert jobs_of(release, TRAINING_LABEL, TRAINING_RUN) == [job], "a second Job appeared"
    assert status["promotion"]["decision"] == "Promoted", status["promotion"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["Ready"]["reason"] == "RolledOut", conditions
    assert conditions["Succeeded"]["status"] == "True" and "Failed" not in conditions, conditions
    assert new != old

    # The in-cluster MLflow has the run the pod logged, and the registry's production alias points at it.
    run = mlflow(release, "runs/get", run_id=status["mlflowRunId"])["run"]
    assert run["info"]["status"] == "FINISHED"
    tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
    assert tags.get("visionops.io/name") == TRAINING_RUN and tags.get("visionops.io/namespace") == release.namespace
    metrics = {m["key"] for m in run["data"].get("metrics", [])}
    assert "map50" in metrics, metrics
    alias = mlflow(release, "registered-models/alias", name=MODEL, alias="production")["model_version"]
    assert alias["version"] == str(status["modelVersion"]) and alias["run_id"] == status["mlflowRunId"]

    # Through both restarts: one run with every epoch once, in the database; the model in the S3 bucket.
    epochs = TRAINING_SPEC["hyperparameters"]["epochs"]
    history = mlflow(release, "metrics/get-history", run_id=run["info"]["run_id"], metric_key="epoch")["metrics"]
    assert sorted(m["step"] for m in history) == list(range(1, epochs + 1)), history
    stores = release.stores
    run_id = run["info"]["run_id"]
    assert stores.postgres.sql(f"SELECT status FROM runs WHERE run_uuid = '{run_id}'") == "FINISHED"
    assert stores.postgres.sql(f"SELECT count(*) FROM metrics WHERE run_uuid = '{run_id}' AND key = 'epoch'") \
        == str(epochs)
    objects = [o for o in stores.s3.objects() if run_id in o]
    assert any(o.endswith("model/best.onnx") for o in objects), objects
    _passed.add("train")


def predictor_env(release: Release) -> dict[str, str]:
    isvc = release.get("inferenceservice", PREDICTOR)
    container = isvc["spec"]["predictor"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def isvc_ready(release: Release) -> bool:
    conditions = release.get("inferenceservice", PREDICTOR).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def sample_images(release: Release) -> list[Path]:
    products = sorted(p for p in (release.dataset_dir / "synthetic").iterdir() if p.is_dir())
    return [img for product in products for img in sorted((product / "val").iterdir())
            if img.suffix.lower() in {".png", ".jpg", ".jpeg"}][:6]


def test_promoted_model_is_rolled_out_and_answers_over_http(e2e_release: Release) -> None:
    requires("train")
    release = e2e_release
    version = release.get("trainingrun", TRAINING_RUN)["status"]["modelVersion"]
    assert predictor_env(release).get("VISIONOPS_MODEL_URI") == f"models:/{MODEL}/{version}"
    release.wait("the InferenceService to be Ready with the promoted version", lambda: isvc_ready(release), 300)
    base = release.node_port_url(f"{PREDICTOR}-http")
    release.wait("the predictor Service to answer", lambda: answers(f"{base}/v2/models/{MODEL}/ready"), 120)

    found = 0
    for image in sample_images(release):
        b64 = base64.b64encode(image.read_bytes()).decode()
        status, body = http(f"{base}/v1/models/{MODEL}:predict", {"instances": [{"image": {"b64": b64}}]})
        assert status == 200, body
        prediction = body["predictions"][0]
        assert prediction["num_detections"] == len(prediction["detections"])
        found += prediction["num_detections"]
    assert found > 0, "the promoted model found no defect in any validation image"

    status, body = http(f"{base}/v2/models/{MODEL}/infer", {"inputs": [
        {"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64]}]})
    assert status == 200, body
    assert json.loads(body["outputs"][0]["data"][0])["image_size"]["width"] > 0
    assert body.get("model_version") == str(version)

    status, body = http(f"{base}/v1/models/{MODEL}:predict", {"instances": [{"image": {"b64": "bm90IGFuIGltYWdl"}}]})
    assert 400 <= status < 500 and "image" in json.dumps(body).lower(), (status, body)
    status, metrics_text = http(f"{base}/metrics")
    assert status == 200 and "visionops_" in metrics_text
    _passed.add("serve")


def serving_version(release: Release, image: Path) -> str:
    """The version the predictor Service answers with (V2 infer's model_version); '' when it does not answer."""
    b64 = base64.b64encode(image.read_bytes()).decode()
    try:
        status, body = http(f"{release.node_port_url(f'{PREDICTOR}-http')}/v2/models/{MODEL}/infer",
                            {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64]}]},
                            timeout=10)
    except OSError:
        return ""
    return str(body.get("model_version", "")) if status == 200 else ""


def answers_only(release: Release, image: Path, version: str, times: int = 5) -> bool:
    """Every one of ``times`` predictions comes from ``version`` (no old pod left behind the Service)."""
    return all(serving_version(release, image) == version for _ in range(times))


def deploy(release: Release, *args: str) -> subprocess.CompletedProcess:
    """``visionops deploy`` as a user runs it, against the release's ModelDeployment."""
    cmd = [sys.executable, "-m", "visionops.cli", "deploy", "--kubeconfig", str(release.cluster.kubeconfig),
           "-n", release.namespace, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def mlflow_post(release: Release, path: str, body: dict) -> dict:
    status, answer = http(f"{release.node_port_url('visionops-mlflow')}/api/2.0/mlflow/{path}", body,
                          auth=release.mlflow_admin())
    assert status == 200, f"MLflow POST {path} -> {status}: {answer}"
    return answer


def broken_version(release: Release, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A registered version whose best.onnx is not an ONNX model (uploaded through the MLflow server by its
    admin)."""
    from mlflow.tracking import MlflowClient

    user, password = release.mlflow_admin()
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    client = MlflowClient(release.node_port_url("visionops-mlflow"))
    run = client.create_run(client.get_experiment_by_name("Default").experiment_id)
    model = tmp_path / "model"
    model.mkdir()
    (model / "best.onnx").write_bytes(b"this is not an ONNX model")
    (model / "class_map.json").write_text(json.dumps({"names": ["casting/inclusoes"]}))
    client.log_artifacts(run.info.run_id, str(model), "model")
    client.set_terminated(run.info.run_id)
    return client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run.info.run_id).version


def test_any_version_goes_to_production_and_back_by_cli_mlflow_and_kubectl(
        e2e_release: Release, prometheus: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    requires("serve")
    release = e2e_release
    image = sample_images(release)[0]
    v1 = str(release.get("trainingrun", TRAINING_RUN)["status"]["modelVersion"])
    first = mlflow(release, "model-versions/get", name=MODEL, version=v1)["model_version"]
    v2 = mlflow_post(release, "model-versions/create", {"name": MODEL, "source": first["source"],
                                                        "run_id": first["run_id"]})["model_version"]["version"]
    timings: dict[str, float] = {}

    # The CLI: set v2, then roll back to v1; --wait returns once the predictor serves it.
    steps = (("rollout (CLI)", ("set", v2, "--wait"), v2), ("rollback (CLI)", ("rollback", "--wait"), v1))
    for what, args, version in steps:
        started = time.monotonic()
        proc = deploy(release, *args)
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{release.diagnostics()}"
        release.wait(f"only version {version} to answer", lambda v=version: answers_only(release, image, v), 120, 1)
        timings[what] = time.monotonic() - started
        print(f"[e2e timing] {what}: only version {version} answering {timings[what]:.1f} s after the request")

    # The MLflow UI's way: move the alias; spec.version and serving follow.
    started = time.monotonic()
    mlflow_post(release, "registered-models/alias", {"name": MODEL, "alias": "production", "version": v2})
    release.wait("serving to follow the alias", lambda: answers_only(release, image, v2), 300, 1)
    timings["alias moved in MLflow"] = time.monotonic() - started
    print(f"[e2e timing] alias moved in MLflow: only version {v2} answering {timings['alias moved in MLflow']:.1f} s "
          "after the move")
    assert release.get("modeldeployment", PREDICTOR)["spec"]["version"] == v2

    # kubectl, with a version that cannot load: RolloutFailed with the predictor's error; v2 answers throughout.
    v3 = broken_version(release, tmp_path, monkeypatch)
    release.kubectl("patch", "modeldeployment", PREDICTOR, "--type=merge", "-p", json.dumps({"spec": {"version": v3}}))
    answered = []

    def failed() -> dict | None:
        answered.append(serving_version(release, image))
        status = release.get("modeldeployment", PREDICTOR).get("status", {})
        return status if status.get("phase") == "RolloutFailed" else None

    status = release.wait("the broken version's rollout to fail", failed, 400, 1)
    assert set(answered) == {v2}, f"answers during the failed rollout: {answered}"
    assert f"version {v3} did not become ready" in status["message"], status["message"]
    assert "went back to version " + v2 in status["message"], status["message"]
    assert "cannot load the model" in status["message"], f"not the predictor's own error: {status['message']}"
    release.wait("the VisionOpsRolloutFailed alert to fire",
                 lambda: "firing" in alert_states(prometheus, "VisionOpsRolloutFailed"), 120)
    release.wait("the broken pods to go", lambda: answers_only(release, image, v2), 120, 1)
    md = release.get("modeldeployment", PREDICTOR)
    assert md["spec"]["version"] == v2 and status["servingVersion"] == v2
    alias = mlflow(release, "registered-models/alias", name=MODEL, alias="production")["model_version"]
    assert alias["version"] == v2
    moved = [(h["version"], h["movedBy"]) for h in status["history"]]
    assert moved[-5:] == [(v2, "visionops-cli"), (v1, "visionops-cli"), (v2, "mlflow-alias"), (v3, "kubectl-patch"),
                          (v2, "rollout-failed")], moved
    tags = {t["key"]: t["value"] for t in mlflow(release, "registered-models/get", name=MODEL)[
        "registered_model"].get("tags", [])}
    assert [h["version"] for h in json.loads(tags["visionops.io/production-history"])][-5:] == [v2, v1, v2, v3, v2]
    history = deploy(release, "history")
    assert history.returncode == 0 and "rollout-failed" in history.stdout, history
    _passed.add("deploy")


def test_drift_check_pod_finds_drift_and_starts_exactly_one_retraining(e2e_release: Release, prometheus: str) -> None:
    requires("train")
    release = e2e_release
    retrain = {k: v for k, v in TRAINING_SPEC.items() if k != "promotion"}
    retrain |= {"hyperparameters": {"epochs": 1, "imgsz": 64, "batch": 8},
                "promotion": {"mode": "manual", "inferenceService": PREDICTOR}}
    spec = {
        "reference": {"pvc": "visionops-datasets", "path": "synthetic", "split": "train"},
        "current": {"path": "batches/bright"},
        "thresholds": {"minReferenceSamples": 20},
        "onDrift": {"retrain": True, "cooldownSeconds": 3600, "trainingRunTemplate": retrain},
    }
    release.kubectl("apply", "-f", "-", input=cr("DriftCheck", DRIFT_CHECK, spec))

    def checked() -> dict | None:
        status = release.get("driftcheck", DRIFT_CHECK).get("status", {})
        return status if status.get("triggeredTrainingRun") or status.get("phase") == "Failed" else None

    status = release.wait(f"DriftCheck {DRIFT_CHECK} to find drift and retrain", checked, 600, every=5)
    assert status.get("driftDetected") is True, f"{status}\n{release.diagnostics()}"
    assert status["driftShare"] >= 0.5 and status["driftedFeatures"], status
    release.wait("the VisionOpsDriftDetected alert to fire",
                 lambda: "firing" in alert_states(prometheus, "VisionOpsDriftDetected"), 120)
    assert status.get("reportUri"), "no Evidently report in MLflow"
    assert jobs_of(release, DRIFT_LABEL, DRIFT_CHECK, "drift-check") == [status["lastJobName"]]

    def retraining_runs() -> list[str]:
        runs = release.get("trainingruns", "-l", f"{DRIFT_LABEL}={DRIFT_CHECK}")["items"]
        return [t["metadata"]["name"] for t in runs]

    assert retraining_runs() == [status["triggeredTrainingRun"]]
    time.sleep(15)  # later Job events and the retraining's own progress: still exactly one
    assert retraining_runs() == [status["triggeredTrainingRun"]]
    run = mlflow(release, "runs/get", run_id=status["mlflowRunId"])["run"]
    tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
    assert tags.get("visionops.io/kind") == "drift" and tags.get("visionops.io/name") == DRIFT_CHECK
    release.wait("the retraining Job", lambda: jobs_of(release, TRAINING_LABEL, status["triggeredTrainingRun"]), 60)
    _passed.add("drift")


def registry(release: Release) -> dict[str, Any]:
    """Every version of the model (number, run, source, status) and every alias, as MLflow answers them."""
    model = mlflow(release, "registered-models/get", name=MODEL)["registered_model"]
    versions = mlflow(release, "model-versions/search", filter=f"name='{MODEL}'", max_results="1000")
    return {"aliases": sorted((a["alias"], a["version"]) for a in model.get("aliases", [])),
            "versions": sorted((int(v["version"]), v["run_id"], v["source"], v["status"])
                               for v in versions["model_versions"])}


def serves_only(release: Release, image: Path, version: str) -> dict:
    """Wait until only ``version`` answers; then the ModelDeployment says it serves it. Returns its status."""
    release.wait(f"only version {version} to answer", lambda: answers_only(release, image, version), 300, 1)
    status = release.get("modeldeployment", PREDICTOR)["status"]
    assert status["phase"] == "Serving" and status["servingVersion"] == version, status
    return status


def test_a_rollout_finishes_through_an_mlflow_restart(e2e_release: Release) -> None:
    """kubectl sets production while MLflow is down: the ModelDeployment says it waits for MLflow (condition and
    Event), then rolls out once MLflow is back, and the predictor serves the version."""
    requires("deploy")
    release = e2e_release
    image = sample_images(release)[0]
    target = str(release.get("trainingrun", TRAINING_RUN)["status"]["modelVersion"])
    assert release.get("modeldeployment", PREDICTOR)["spec"]["version"] != target
    started = time.monotonic()
    old = restart_mlflow(release)
    release.kubectl("patch", "modeldeployment", PREDICTOR, "--type=merge", "-p",
                    json.dumps({"spec": {"version": target}}))

    def waiting_for_mlflow() -> dict | None:
        ready = {c["type"]: c for c in release.get("modeldeployment", PREDICTOR).get("status", {}).get(
            "conditions", [])}.get("Ready", {})
        return ready if ready.get("reason") == "MLflowUnavailable" else None

    ready = release.wait("the ModelDeployment to say it waits for MLflow", waiting_for_mlflow, 60, 0.5)
    assert ready["status"] == "False" and "trying again" in ready["message"], ready
    outage = mlflow_back(release, old)
    serves_only(release, image, target)
    print(f"[e2e timing] rollout through an MLflow restart: MLflow back after {outage:.1f} s, only version {target} "
          f"answering {time.monotonic() - started:.1f} s after the request")
    events = release.get("events", "--field-selector", f"involvedObject.name={PREDICTOR},reason=MLflowUnavailable")
    assert events["items"], "no MLflowUnavailable Event"
    alias = mlflow(release, "registered-models/alias", name=MODEL, alias="production")["model_version"]
    assert alias["version"] == target
    _passed.add("mlflow-restart")


def acting_operator(release: Release) -> str:
    """The operator replica that acts: the highest priority in the kopf peering record ('' while it has none)."""
    peers = release.get("kopfpeering", OPERATOR_PEERING).get("status") or {}
    return max(peers, key=lambda name: peers[name].get("priority", 0)) if peers else ""


def test_a_rollout_finishes_when_the_acting_operator_dies(e2e_release: Release) -> None:
    """Two operator replicas: the acting one is force-deleted as a rollout starts; the other takes over and finishes
    the rollout, recorded once."""
    requires("mlflow-restart")
    release = e2e_release
    image = sample_images(release)[0]
    current = release.get("modeldeployment", PREDICTOR)["spec"]["version"]
    source = mlflow(release, "model-versions/get", name=MODEL, version=current)["model_version"]["source"]
    target = next(str(number) for number, _, src, _ in registry(release)["versions"]
                  if src == source and str(number) != current)  # the same model under another version
    acting = acting_operator(release)
    assert acting and ready_pod(release, OPERATOR_SELECTOR), release.get("kopfpeering", OPERATOR_PEERING)
    moves = len(release.get("modeldeployment", PREDICTOR)["status"]["history"])
    release.kubectl("patch", "modeldeployment", PREDICTOR, "--type=merge", "-p",
                    json.dumps({"spec": {"version": target}}))

    def rolling() -> bool:
        status = release.get("modeldeployment", PREDICTOR).get("status", {})
        return status.get("phase") == "RollingOut" and (status.get("rollout") or {}).get("version") == target

    release.wait(f"the rollout of version {target} to start", rolling, 60, 0.2)
    killed = time.monotonic()
    release.kubectl("delete", "pod", acting, "--grace-period=0", "--force", "--wait=false")
    successor = release.wait("another replica to act",
                             lambda: (a := acting_operator(release)) != acting and a, 120, 0.5)
    took_over = time.monotonic() - killed
    status = serves_only(release, image, target)
    print(f"[e2e timing] acting operator killed mid-rollout: {successor} acted {took_over:.1f} s after; only "
          f"version {target} answering {time.monotonic() - killed:.1f} s after the kill")
    assert [h["version"] for h in status["history"][moves:]] == [target], status["history"][moves:]
    assert status["rollout"]["outcome"] == "Succeeded", status["rollout"]


def test_the_drift_alert_resolves_when_a_later_check_finds_none(e2e_release: Release, prometheus: str) -> None:
    """After the retraining, the line is back to normal: the DriftCheck, pointed at a batch like the training data,
    checks again (a new Job for the new generation), finds no drift, starts nothing, and the alert resolves."""
    requires("drift")
    release = e2e_release
    before = release.get("driftcheck", DRIFT_CHECK)["status"]
    retraining = before["triggeredTrainingRun"]

    def finished() -> dict | None:
        status = release.get("trainingrun", retraining).get("status", {})
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    assert release.wait(f"the retraining {retraining} to finish", finished, 600, every=5)["phase"] == "Succeeded"
    release.kubectl("patch", "driftcheck", DRIFT_CHECK, "--type=merge",
                    "-p", json.dumps({"spec": {"current": {"path": "batches/clean"}}}))

    def checked_again() -> dict | None:
        status = release.get("driftcheck", DRIFT_CHECK).get("status", {})
        done = status.get("lastJobName") != before["lastJobName"] and status.get("phase") in ("Completed", "Failed")
        return status if done else None

    status = release.wait(f"DriftCheck {DRIFT_CHECK} to check the clean batch", checked_again, 600, every=5)
    assert status.get("driftDetected") is False, f"{status}\n{release.diagnostics()}"
    assert status["driftShare"] < before["driftShare"], (status, before)
    release.wait("the VisionOpsDriftDetected alert to resolve",
                 lambda: not alert_states(prometheus, "VisionOpsDriftDetected"), 120)
    new_jobs = set(jobs_of(release, DRIFT_LABEL, DRIFT_CHECK, "drift-check")) - {before["lastJobName"]}
    assert new_jobs == {status["lastJobName"]}, new_jobs
    runs = release.get("trainingruns", "-l", f"{DRIFT_LABEL}={DRIFT_CHECK}")["items"]
    assert [t["metadata"]["name"] for t in runs] == [retraining], "a clean check started a retraining"


def test_the_registry_keeps_every_version_and_alias_through_a_database_restart(e2e_release: Release) -> None:
    requires("train")
    release = e2e_release
    before = registry(release)
    assert len(before["versions"]) >= 3 and "production" in dict(before["aliases"]), before
    release.stores.postgres.restart()
    after = release.wait("MLflow to read the registry again", lambda: _registry_or_none(release), 60, 1)
    assert after == before
    assert release.stores.postgres.sql(f"SELECT count(*) FROM model_versions WHERE name = '{MODEL}'") \
        == str(len(before["versions"]))
    version = dict(before["aliases"])["production"]
    release.wait("the ModelDeployment to stay Serving production",
                 lambda: (s := release.get("modeldeployment", PREDICTOR).get("status", {})).get("phase") == "Serving"
                 and s.get("servingVersion") == version, 60)


def _registry_or_none(release: Release) -> dict[str, Any] | None:
    try:
        return registry(release)
    except (AssertionError, OSError):
        return None


def test_every_dashboard_panel_shows_data(e2e_release: Release, prometheus: str) -> None:
    """After the loop (predictions, rollouts, drift): every panel query of the chart's Grafana dashboard, its variables
    set to this release, returns numbers from the live Prometheus."""
    requires("serve")
    release = e2e_release
    image = sample_images(release)[0]
    assert all(serving_version(release, image) for _ in range(5)), "the predictor does not answer"
    time.sleep(6)  # three scrapes: the rates see these predictions
    variables = {"$namespace": release.namespace, "$model": MODEL, "$__rate_interval": "2m"}
    panels = json.loads(DASHBOARD.read_text())["panels"]
    queries = [(panel["title"], target["expr"]) for panel in panels for target in panel.get("targets", [])]
    assert len(queries) >= 10, queries
    empty = []
    for title, expr in queries:
        for variable, value in variables.items():
            expr = expr.replace(variable, value)
        values = [float(sample["value"][1]) for sample in query(prometheus, expr)]
        if not [v for v in values if v == v]:  # no sample, or NaN only
            empty.append(f"{title}: {expr} -> {values}")
    assert not empty, "dashboard panels without data:\n" + "\n".join(empty)


def test_the_console_shows_production_s_defect_trend_with_the_rollouts_marked(
        e2e_release: Release, prometheus: str, browser: tuple[Any, Any]) -> None:
    """The quality engineer's view of this loop: the console pod's Production page, in a real browser, draws the
    detections per class, images and latency the predictor exported, from the live Prometheus, with the rollouts of
    the ModelDeployment's history marked on the time axis."""
    requires("deploy")
    release, (page, _) = e2e_release, browser
    moves = release.get("modeldeployment", PREDICTOR)["status"]["history"]
    console = release.node_port_url(CONSOLE)
    release.wait("the console to answer", lambda: answers(f"{console}/healthz"), 180, 1)
    response = page.goto(f"{console}/production?window=1h", wait_until="load")  # the whole module
    assert response is not None and response.status == 200
    main = page.inner_text("main")
    for panel in ("detections", "images", "latency"):
        assert page.locator(f"#panel-{panel} svg.timechart path").count() >= 1, f"panel {panel} drew nothing:\n{main}"
    legend = page.inner_text("#panel-detections .chart-legend")
    assert any(f"{product.lower()}/" in legend for product in ("Casting", "PCB_1", "Screw")), legend
    marked = [text.strip() for text in page.locator("#panel-detections svg .marker text").all_text_contents()]
    assert len(marked) >= 3 and marked[-1] == f"v{moves[-1]['version']}", (marked, moves)
    screenshot(page, "production-kind")


# Inside a pod of each image: no extra CA is installed and the system bundle holds none of the build host's
# extra CAs (hack/images.sh serves them to the builds' pip step only).
_CA_CHECK = """
import pathlib, sys
extra = sorted(str(p) for p in pathlib.Path("/usr/local/share/ca-certificates").rglob("*.crt"))
bundle = pathlib.Path("/etc/ssl/certs/ca-certificates.crt").read_text()
found = [m[:16] for m in sys.argv[1:] if m in bundle]
print(f"extra={extra} found={found} bundle={bundle.count('BEGIN CERTIFICATE')}")
sys.exit(1 if extra or found else 0)
"""


def host_ca_markers() -> list[str]:
    """One base64 line from the middle of each extra CA certificate this host trusts."""
    markers = []
    for cert in sorted(Path("/usr/local/share/ca-certificates").rglob("*.crt")):
        lines = [line for line in cert.read_text().splitlines() if line and not line.startswith("-----")]
        if len(lines) > 4:
            markers.append(lines[len(lines) // 2])
    return markers


def test_no_mlflow_password_leaves_its_secret(e2e_release: Release) -> None:
    """After the whole loop (training, promotion, rollouts, drift): no password of an MLflow account in a pod's log
    (every container, the accounts init container included), a pod spec, a ConfigMap, a custom resource, an Event,
    or the MLflow runs' params and tags."""
    requires("train")
    release = e2e_release
    secrets = {key: value for key, value in release.mlflow_passwords().items() if len(value) >= 16}
    assert {"admin", "operator", "jobs", "console", "predictor"} <= set(secrets)
    if release.stores:  # the database's password and the S3 secret key too
        secrets |= {"postgres": release.stores.postgres.password, "s3": release.stores.s3.secret_key}
    seen = {kind: release.kubectl("get", kind, "-o", "json") for kind in (
        "pods", "jobs", "configmaps", "trainingruns", "driftchecks", "modeldeployments", "inferenceservices",
        "events")}
    for pod in release.kubectl("get", "pods", "-o", "name").split():
        seen[pod] = release.kubectl("logs", pod, "--all-containers", "--prefix", check=False)
    accounts = release.kubectl("logs", "deployment/visionops-mlflow", "-c", "accounts", check=False)
    assert "visionops-jobs (jobs): EDIT on experiment *" in accounts, accounts
    for run_id in {release.get("trainingrun", TRAINING_RUN)["status"]["mlflowRunId"],
                   release.get("driftcheck", DRIFT_CHECK)["status"].get("mlflowRunId", "")} - {""}:
        seen[f"MLflow run {run_id}"] = json.dumps(mlflow(release, "runs/get", run_id=run_id)["run"]["data"])
    leaks = sorted({(where, key) for where, text in seen.items() for key, value in secrets.items() if value in text})
    assert not leaks, f"an MLflow password outside its Secret: {leaks}"


@pytest.mark.parametrize("image", ["operator", "mlflow", "job", "predictor", "console"])
def test_images_carry_nothing_of_the_build_host(e2e_release: Release, e2e_images: dict[str, str],
                                                image: str) -> None:
    release, markers = e2e_release, host_ca_markers()
    pod = f"e2e-ca-{image}"
    release.kubectl("run", pod, f"--image={e2e_images[image]}", "--image-pull-policy=Never", "--restart=Never",
                    "--command", "--", "python3", "-c", _CA_CHECK, *markers)
    phase = release.wait(f"pod {pod} to finish",
                         lambda: release.get("pod", pod)["status"].get("phase") in ("Succeeded", "Failed")
                         and release.get("pod", pod)["status"]["phase"], 180)
    logs = release.kubectl("logs", pod, check=False)
    release.kubectl("delete", "pod", pod, "--wait=false", check=False)
    assert phase == "Succeeded", f"{e2e_images[image]}: {logs}"
    assert "extra=[] found=[]" in logs and "bundle=" in logs
