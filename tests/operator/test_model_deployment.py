"""ModelDeployment against the real control plane and MLflow: spec.version and the MLflow production alias stay
equal whichever side moves, the InferenceService follows, the history says who moved it, a rollout is done only
when a Ready predictor pod of the version exists, and one that never gets there goes back. The tests play the
predictor pods (no node here): a pod object whose status they set, as a kubelet would."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import fixtures.predictor_pods
import pytest
from k8s import condition, core, create, custom, get, wait_until
from mlflow.tracking import MlflowClient

from visionops import production

pytestmark = [pytest.mark.cluster, pytest.mark.mlflow, pytest.mark.slow]

ISVC = ("serving.kserve.io", "v1beta1")
ISVC_NAME = "detector"


def inference_service(namespace: str) -> None:
    body = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": ISVC_NAME, "annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
            "spec": {"predictor": {"containers": [{"name": "kserve-container", "image": "visionops-predictor:0.1.0"}]}}}
    custom().create_namespaced_custom_object(*ISVC, namespace, "inferenceservices", body)
    custom().patch_namespaced_custom_object_status(*ISVC, namespace, "inferenceservices", ISVC_NAME, {
        "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})


def served_uri(namespace: str) -> str:
    isvc = custom().get_namespaced_custom_object(*ISVC, namespace, "inferenceservices", ISVC_NAME)
    env = isvc["spec"]["predictor"]["containers"][0].get("env") or []
    return next((e["value"] for e in env if e["name"] == "VISIONOPS_MODEL_URI"), "")


def predictor_pod(namespace: str, name: str, uri: str, ready: bool = True) -> None:
    fixtures.predictor_pods.predictor_pod(core(), namespace, ISVC_NAME, name, uri, ready)


def registered(mlflow_uri: str, model: str, count: int) -> list[str]:
    """``count`` versions of ``model``, each from its own finished run with a model/ folder."""
    client = MlflowClient(mlflow_uri)
    client.create_registered_model(model)
    experiment = client.create_experiment(f"exp-{model}")
    versions = []
    for _ in range(count):
        run = client.create_run(experiment)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "class_map.json").write_text("{}")
            client.log_artifact(run.info.run_id, str(Path(tmp) / "class_map.json"), "model")
        client.set_terminated(run.info.run_id)
        mv = client.create_model_version(model, f"{run.info.artifact_uri}/model", run.info.run_id)
        versions.append(mv.version)
    return versions


def alias(mlflow_uri: str, model: str) -> str:
    try:
        return MlflowClient(mlflow_uri).get_model_version_by_alias(model, "production").version
    except Exception:
        return ""


def kubectl_patch_version(cluster, namespace: str, version: str) -> None:
    """What a kubectl user types."""
    subprocess.run([str(cluster.bin_dir / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace,
                    "patch", "modeldeployment", ISVC_NAME, "--type=merge", "-p",
                    json.dumps({"spec": {"version": version}})], check=True, capture_output=True)


def status_of(namespace: str) -> dict:
    return get(namespace, "modeldeployments", ISVC_NAME).get("status") or {}


def test_spec_version_and_the_alias_follow_each_other_and_the_history_says_who(
    run_operator, k8s_namespace, mlflow_uri, kube_cluster
):
    ns, model = k8s_namespace, f"md-{k8s_namespace}"
    v1, v2 = registered(mlflow_uri, model, 2)
    inference_service(ns)
    with run_operator():
        create(ns, "modeldeployments", ISVC_NAME, {"model": {"name": model}, "inferenceService": ISVC_NAME})
        md = wait_until(lambda: status_of(ns).get("phase") == "NoModel" and get(ns, "modeldeployments", ISVC_NAME),
                        30, what="NoModel before any alias")
        assert condition(md, "Ready")["reason"] == "NoModel"
        assert md["spec"]["rollout"]["timeoutSeconds"] == 300  # the CRD's default, stored

        # The MLflow side moves: spec.version and the InferenceService follow.
        MlflowClient(mlflow_uri).set_registered_model_alias(model, "production", v1)
        wait_until(lambda: get(ns, "modeldeployments", ISVC_NAME)["spec"].get("version") == v1, 30,
                   what="spec.version to follow the alias")
        wait_until(lambda: served_uri(ns) == f"models:/{model}/{v1}", 30, what="the InferenceService to follow")
        assert status_of(ns)["phase"] == "RollingOut"
        predictor_pod(ns, "pred-v1", f"models:/{model}/{v1}")
        wait_until(lambda: status_of(ns).get("servingVersion") == v1, 30, what="v1 to serve")
        assert status_of(ns)["phase"] == "Serving"

        # The kubectl side moves: the alias follows.
        kubectl_patch_version(kube_cluster, ns, v2)
        wait_until(lambda: alias(mlflow_uri, model) == v2, 30, what="the alias to follow spec.version")
        wait_until(lambda: served_uri(ns) == f"models:/{model}/{v2}", 30, what="the InferenceService to follow")
        core().delete_namespaced_pod("pred-v1", ns, grace_period_seconds=0)
        predictor_pod(ns, "pred-v2", f"models:/{model}/{v2}")
        done = wait_until(lambda: status_of(ns).get("servingVersion") == v2 and status_of(ns), 30, what="v2 serves")
        wait_until(lambda: MlflowClient(mlflow_uri).get_model_version(model, v2).tags.get(production.ROLLOUT_TAG),
                   10, what="the rollout tag in MLflow (written after the status)")
    assert done["phase"] == "Serving" and done["previousVersion"] == v1
    assert done["rollout"]["outcome"] == "Succeeded" and done["rollout"]["seconds"] >= 0
    moved = [(h["version"], h["movedBy"], h.get("outcome")) for h in done["history"]]
    assert moved == [(v1, "mlflow-alias", "Served"), (v2, "kubectl-patch", "Served")], moved
    client = MlflowClient(mlflow_uri)
    kept = production.read_history_tag(client.get_registered_model(model).tags)
    assert [h["version"] for h in kept] == [v1, v2]
    assert client.get_model_version(model, v2).tags[production.ROLLOUT_TAG] == "served"


def test_a_version_that_never_serves_goes_back_and_an_unknown_one_is_refused(
    run_operator, k8s_namespace, mlflow_uri, kube_cluster
):
    ns, model = k8s_namespace, f"md-{k8s_namespace}"
    v1, v2 = registered(mlflow_uri, model, 2)
    inference_service(ns)
    predictor_pod(ns, "pred-v1", f"models:/{model}/{v1}")
    with run_operator():
        create(ns, "modeldeployments", ISVC_NAME, {"model": {"name": model}, "inferenceService": ISVC_NAME,
                                                   "version": v1, "rollout": {"timeoutSeconds": 10}})
        wait_until(lambda: status_of(ns).get("phase") == "Serving", 30, what="v1 to serve")
        assert alias(mlflow_uri, model) == v1

        kubectl_patch_version(kube_cluster, ns, v2)  # no pod of v2 ever becomes ready
        wait_until(lambda: served_uri(ns) == f"models:/{model}/{v2}", 30, what="the rollout of v2 to start")
        predictor_pod(ns, "pred-v2", f"models:/{model}/{v2}", ready=False)
        failed = wait_until(lambda: status_of(ns).get("phase") == "RolloutFailed" and get(
            ns, "modeldeployments", ISVC_NAME), 40, what="RolloutFailed")
        assert failed["spec"]["version"] == v1 and served_uri(ns) == f"models:/{model}/{v1}"
        assert alias(mlflow_uri, model) == v1
        st = failed["status"]
        assert condition(failed, "Ready")["reason"] == "RolloutFailed"
        assert f"version {v2} did not become ready within 10 s" in st["message"], st["message"]
        assert "went back to version" in st["message"]
        assert st["servingVersion"] == v1 and st["rollout"] == dict(st["rollout"], version=v2, outcome="Failed")
        assert [(h["version"], h["movedBy"]) for h in st["history"]][-1] == (v1, "rollout-failed")
        assert MlflowClient(mlflow_uri).get_model_version(model, v2).tags[production.ROLLOUT_TAG] == "failed"

        kubectl_patch_version(kube_cluster, ns, "99")
        refused = wait_until(lambda: condition(get(ns, "modeldeployments", ISVC_NAME), "Ready").get(
            "reason") == "VersionNotFound" and get(ns, "modeldeployments", ISVC_NAME), 30, what="VersionNotFound")
        wait_until(lambda: get(ns, "modeldeployments", ISVC_NAME)["spec"].get("version") == v1, 30,
                   what="spec.version to go back")
    assert "version 99" in refused["status"]["message"] and alias(mlflow_uri, model) == v1
