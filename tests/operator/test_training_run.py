"""TrainingRun behaviour against the real control plane, MLflow and training job (tests play the kubelet)."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import fixtures.predictor_pods
import pytest
from k8s import batch, condition, core, create, custom, get, jobs, settled_event_reasons, wait_until
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.cluster, pytest.mark.mlflow, pytest.mark.slow]

ISVC = ("serving.kserve.io", "v1beta1")
HYPER = {"epochs": 2, "batch": 8, "imgsz": 64, "seed": 1}


def waiter_running(waiter: subprocess.Popen) -> bool:
    return waiter.poll() is None


def predictor_pod(namespace: str, isvc_name: str, uri: str) -> None:
    """A Ready predictor pod of ``uri``, as KServe and a kubelet would make it (no node here)."""
    fixtures.predictor_pods.predictor_pod(core(), namespace, isvc_name, f"{isvc_name}-predictor-1", uri)


def isvc(namespace: str, name: str) -> dict:
    body = {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": name, "annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
        "spec": {"predictor": {"containers": [{
            "name": "kserve-container", "image": "visionops-predictor:0.1.0",
            "env": [{"name": "KEEP_ME", "value": "1"}],
        }]}},
    }
    created = custom().create_namespaced_custom_object(*ISVC, namespace, "inferenceservices", body)
    custom().patch_namespaced_custom_object_status(*ISVC, namespace, "inferenceservices", name, {
        "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    return created


def training_spec(model: str, threshold: float, target: str | None = None, path: str = "vision") -> dict:
    promotion: dict = {"map50Threshold": threshold}
    if target:
        promotion["inferenceService"] = target
    return {"dataset": {"pvc": "datasets", "path": path}, "hyperparameters": HYPER,
            "model": {"name": model}, "promotion": promotion}


@pytest.fixture
def claims(pod_runner, synth_vision_root: Path) -> None:
    pod_runner.claims["datasets"] = synth_vision_root.parent


def kubectl_wait(cluster, namespace: str, name: str, condition_arg: str, timeout: int = 120) -> subprocess.Popen:
    """``kubectl wait tr/NAME --for=...`` started in the background (as a user would, before the run ends)."""
    cmd = [str(cluster.bin_dir / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, "wait",
           f"trainingrun/{name}", f"--for={condition_arg}", f"--timeout={timeout}s"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def ended(waiter: subprocess.Popen, timeout: float = 30) -> str:
    """Wait for a background ``kubectl wait``; fail unless it ended successfully."""
    out, _ = waiter.communicate(timeout=timeout)
    assert waiter.returncode == 0, out
    return out


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def phase_is(namespace: str, name: str, *phases: str):
    def check():
        obj = get(namespace, "trainingruns", name)
        return obj if (obj.get("status") or {}).get("phase") in phases else None
    return check


def test_happy_path_trains_registers_promotes_and_rolls_out(
    run_operator, pod_runner, claims, k8s_namespace, mlflow_uri, kube_cluster
):
    ns, model = k8s_namespace, f"detector-{k8s_namespace}"
    isvc(ns, "detector")
    with run_operator():
        run = create(ns, "trainingruns", "tr-ok", training_spec(model, 0.0, "detector"))
        ready = kubectl_wait(kube_cluster, ns, "tr-ok", "condition=Ready")
        pod = pod_runner.wait_for_pod("visionops.io/training-run=tr-ok")
        job = jobs(ns, "visionops.io/training-run=tr-ok")[0]
        assert job.metadata.owner_references[0].uid == run["metadata"]["uid"]
        assert pod.spec.containers[0].security_context.run_as_non_root is True
        proc = pod_runner.run(pod)
        assert proc.returncode == 0, proc.stderr[-2000:]
        # Promoted is not done until the predictor serves the version: RollingOut until a Ready pod of it exists.
        rolling = wait_until(phase_is(ns, "tr-ok", "RollingOut"), 120, what="the run to be RollingOut")
        assert condition(rolling, "Promoted")["status"] == "Unknown" and waiter_running(ready)
        version = rolling["status"]["modelVersion"]
        predictor_pod(ns, "detector", f"models:/{model}/{version}")
        ended(ready, 60)
        done = get(ns, "trainingruns", "tr-ok")
        reasons = settled_event_reasons(ns, "TrainingRun", "tr-ok")
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    for type_ in ("Trained", "Registered", "Promoted", "Ready", "Succeeded"):
        assert condition(done, type_)["status"] == "True", status["conditions"]
    assert condition(done, "Promoted")["reason"] == condition(done, "Ready")["reason"] == "RolledOut"
    assert not condition(done, "Failed")
    # One Event per transition, from apply to done; none from progress reads or kopf's own bookkeeping.
    assert Counter(reasons) == Counter(["JobCreated", "TrainingSucceeded", "VersionRegistered", "RollingOut",
                                        "RolledOut"]), reasons
    # The spec that ran is the stored one: the CRD's defaults filled in what the test left out.
    assert done["spec"]["hyperparameters"]["patience"] == 5 and done["spec"]["promotion"]["mode"] == "auto"
    assert status["promotion"]["decision"] == "Promoted"
    assert status["progress"]["epoch"] == 2
    assert set(status["metrics"]) == {"map50", "map50_95", "precision", "recall"}
    version = status["modelVersion"]
    client = MlflowClient(mlflow_uri)
    assert client.get_model_version_by_alias(model, "production").version == version
    assert client.get_run(status["mlflowRunId"]).data.tags["visionops.io/uid"] == run["metadata"]["uid"]
    served = custom().get_namespaced_custom_object(*ISVC, ns, "inferenceservices", "detector")
    env = {e["name"]: e["value"] for e in served["spec"]["predictor"]["containers"][0]["env"]}
    assert env == {"KEEP_ME": "1", "VISIONOPS_MODEL_URI": f"models:/{model}/{version}"}
    assert served["metadata"]["annotations"]["visionops.io/model-version"] == version
    deployment = get(ns, "modeldeployments", "detector")  # made by the promotion: one per InferenceService
    assert deployment["spec"]["version"] == version and deployment["status"]["servingVersion"] == version
    assert deployment["status"]["history"][-1]["cause"].startswith("TrainingRun tr-ok: ")


def test_rejected_promotion_keeps_production_and_says_why(
    run_operator, pod_runner, claims, k8s_namespace, mlflow_uri
):
    ns, model = k8s_namespace, f"detector-{k8s_namespace}"
    isvc(ns, "detector")
    with run_operator():
        create(ns, "trainingruns", "tr-low", training_spec(model, 1.0, "detector"))
        pod = pod_runner.wait_for_pod("visionops.io/training-run=tr-low")
        assert pod_runner.run(pod).returncode == 0
        done = wait_until(phase_is(ns, "tr-low", "Succeeded", "Failed"), 120, what="TrainingRun to finish")
    assert done["status"]["phase"] == "Succeeded"
    assert condition(done, "Registered")["status"] == "True"
    promoted = condition(done, "Promoted")
    assert promoted["status"] == "False" and promoted["reason"] == "GateRejected"
    assert "threshold" in done["status"]["promotion"]["reason"]
    served = custom().get_namespaced_custom_object(*ISVC, ns, "inferenceservices", "detector")
    assert "VISIONOPS_MODEL_URI" not in {e["name"] for e in served["spec"]["predictor"]["containers"][0]["env"]}
    aliases = MlflowClient(mlflow_uri).get_registered_model(model).aliases
    assert "production" not in aliases


def test_manual_promotion_waits_for_the_annotation(run_operator, pod_runner, claims, k8s_namespace, mlflow_uri):
    """``spec.promotion.mode: manual``: the run waits, and ``kubectl annotate tr/X visionops.io/promote=true``
    promotes it (the README's words; the annotation once never reached the operator: kopf hid our prefix)."""
    ns, model = k8s_namespace, f"detector-{k8s_namespace}"
    spec = training_spec(model, 0.0)
    spec["promotion"]["mode"] = "manual"
    with run_operator():
        create(ns, "trainingruns", "tr-manual", spec)
        pod = pod_runner.wait_for_pod("visionops.io/training-run=tr-manual")
        assert pod_runner.run(pod).returncode == 0
        waiting = wait_until(phase_is(ns, "tr-manual", "Succeeded"), 120, what="the run to succeed")
        assert condition(waiting, "Promoted")["reason"] == "AwaitingManualPromotion", waiting["status"]
        assert "production" not in MlflowClient(mlflow_uri).get_registered_model(model).aliases
        custom().patch_namespaced_custom_object("visionops.io", "v1alpha1", ns, "trainingruns", "tr-manual",
                                                {"metadata": {"annotations": {"visionops.io/promote": "true"}}})

        def promoted():
            obj = get(ns, "trainingruns", "tr-manual")
            return obj if condition(obj, "Promoted")["status"] == "True" else None

        done = wait_until(promoted, 30, what="the annotated run to be promoted")
    version = done["status"]["modelVersion"]
    assert MlflowClient(mlflow_uri).get_model_version_by_alias(model, "production").version == version
    # kopf's own state is no JSON blob on the object: its diff base lives in the operator's memory
    annotations = done["metadata"].get("annotations") or {}
    assert not [key for key in annotations if "last-handled-configuration" in key or "kopf-managed" in key]


def test_failed_job_shows_its_reason(run_operator, pod_runner, claims, k8s_namespace, kube_cluster):
    ns = k8s_namespace
    with run_operator():
        create(ns, "trainingruns", "tr-bad", training_spec(f"m-{ns}", 0.0, path="no-such-dataset"))
        waiters = [kubectl_wait(kube_cluster, ns, "tr-bad", arg)
                   for arg in ("condition=Failed", "condition=Ready=False", "jsonpath={.status.completionTime}")]
        pod = pod_runner.wait_for_pod("visionops.io/training-run=tr-bad")
        assert pod_runner.run(pod).returncode != 0
        for waiter in waiters:  # every way of waiting for a failed run ends
            ended(waiter, 90)
        done = get(ns, "trainingruns", "tr-bad")
        reasons = settled_event_reasons(ns, "TrainingRun", "tr-bad")
    assert done["status"]["phase"] == "Failed"
    for type_ in ("Trained", "Ready"):
        assert condition(done, type_)["status"] == "False" and condition(done, type_)["reason"] == "JobFailed"
    assert condition(done, "Failed")["status"] == "True" and not condition(done, "Succeeded")
    assert "no-such-dataset" in done["status"]["message"], done["status"]["message"]
    assert "no-such-dataset" in condition(done, "Ready")["message"]
    assert Counter(reasons) == Counter(["JobCreated", "JobFailed"]), reasons
    # The Job's end reached the run by its watch, not a poll: within about a second (timestamps have seconds).
    job = batch().read_namespaced_job("tr-bad-train", ns)
    failed_at = next(c.last_transition_time for c in job.status.conditions if c.type == "Failed").timestamp()
    assert seconds(done["status"]["jobCompletionTime"]) - failed_at <= 2, (failed_at, done["status"])


def test_operator_restart_mid_run_makes_no_second_job(run_operator, pod_runner, claims, k8s_namespace):
    ns = k8s_namespace
    with run_operator():
        create(ns, "trainingruns", "tr-restart", training_spec(f"m-{ns}", 0.0))
        pod = pod_runner.wait_for_pod("visionops.io/training-run=tr-restart")
        pod_runner.set_running(pod)
        wait_until(phase_is(ns, "tr-restart", "Running"), 30, what="phase Running")
    with run_operator():
        time.sleep(4)  # several reconcile intervals of the restarted operator
        assert len(jobs(ns, "visionops.io/training-run=tr-restart")) == 1
        assert pod_runner.run(pod).returncode == 0
        done = wait_until(phase_is(ns, "tr-restart", "Succeeded", "Failed"), 120, what="TrainingRun to finish")
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert len(jobs(ns, "visionops.io/training-run=tr-restart")) == 1


def test_no_finalizer_so_deleting_works_with_the_operator_down(run_operator, pod_runner, claims, k8s_namespace,
                                                               kube_cluster):
    ns = k8s_namespace
    with run_operator():
        create(ns, "trainingruns", "tr-gone", training_spec(f"m-{ns}", 0.0))
        pod = pod_runner.wait_for_pod("visionops.io/training-run=tr-gone")
        pod_runner.set_running(pod)
        running = wait_until(phase_is(ns, "tr-gone", "Running"), 30, what="phase Running")
    assert not running["metadata"].get("finalizers"), running["metadata"]
    kube_cluster.kubectl("delete", "-n", ns, "trainingrun/tr-gone", "--timeout=20s")  # the operator is stopped
    wait_until(lambda: not jobs(ns, "visionops.io/training-run=tr-gone"), 60,
               what="the Job to be garbage-collected through its ownerReference")
