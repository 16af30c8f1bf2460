"""DriftCheck behaviour: a real drift Job (features + Evidently + MLflow), results in status, exactly
one retraining TrainingRun even when drift is found again while it runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from k8s import condition, create, custom, get, jobs, wait_until
from prometheus_client import REGISTRY

from visionops.data.drift_batch import simulate

CHECK_JOBS = "visionops.io/drift-check=bright,app.kubernetes.io/component=drift-check"

pytestmark = [pytest.mark.cluster, pytest.mark.mlflow, pytest.mark.slow]


@pytest.fixture
def volume(pod_runner, synth_vision_root: Path, tmp_path: Path) -> Path:
    """A dataset volume: the synthetic VISION tree plus a brightness batch made from its val split."""
    root = tmp_path / "volume"
    shutil.copytree(synth_vision_root, root / "vision")
    simulate(root / "vision", root / "batches" / "bright", kind="brightness", severity=1.0, fraction=1.0, seed=3)
    pod_runner.claims["datasets"] = root
    return root


def drift_spec(cooldown: int = 3600) -> dict:
    return {
        "reference": {"pvc": "datasets", "path": "vision", "split": "train"},
        "current": {"path": "batches/bright"},
        "thresholds": {"minReferenceSamples": 10, "minCurrentSamples": 10},
        "onDrift": {"retrain": True, "cooldownSeconds": cooldown, "trainingRunTemplate": {
            "dataset": {"pvc": "datasets", "path": "vision"},
            "hyperparameters": {"epochs": 1, "imgsz": 64},
        }},
    }


def run_check_pod(pod_runner, name: str) -> None:
    pod = pod_runner.wait_for_pod(f"visionops.io/drift-check={name},app.kubernetes.io/component=drift-check")
    proc = pod_runner.run(pod)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_drift_triggers_exactly_one_retraining(run_operator, pod_runner, volume, k8s_namespace, mlflow_uri):
    ns = k8s_namespace
    with run_operator():
        create(ns, "driftchecks", "bright", drift_spec(cooldown=0))
        run_check_pod(pod_runner, "bright")
        checked = wait_until(lambda: (o := get(ns, "driftchecks", "bright"))["status"].get("history") and o,
                             90, what="the first check in status")
        status = checked["status"]
        assert status["driftDetected"] is True, status
        assert status["driftShare"] >= 0.5
        assert "brightness_mean" in status["driftedFeatures"]
        assert status["reportUri"] and status["mlflowRunId"]
        assert condition(checked, "DriftDetected")["status"] == "True"
        first = status["triggeredTrainingRun"]
        run = get(ns, "trainingruns", first)
        assert run["metadata"]["labels"]["visionops.io/drift-check"] == "bright"
        assert run["spec"]["hyperparameters"]["epochs"] == 1

        # a second check (new generation) drifts again while the retraining is still running
        custom().patch_namespaced_custom_object("visionops.io", "v1alpha1", ns, "driftchecks", "bright",
                                                {"spec": {"thresholds": {"minCurrentSamples": 5}}})
        wait_until(lambda: len(jobs(ns, CHECK_JOBS)) == 2, 90, what="second check Job")
        run_check_pod(pod_runner, "bright")
        again = wait_until(lambda: len((o := get(ns, "driftchecks", "bright"))["status"]["history"]) == 2 and o,
                           90, what="the second check in status")
    assert again["status"]["driftDetected"] is True
    labels = {"resource_namespace": ns, "drift_check": "bright"}
    assert REGISTRY.get_sample_value("visionops_drift_share", labels) == again["status"]["driftShare"]
    assert REGISTRY.get_sample_value("visionops_retrainings_total", labels) == 1
    runs = custom().list_namespaced_custom_object("visionops.io", "v1alpha1", ns, "trainingruns")["items"]
    assert [r["metadata"]["name"] for r in runs] == [first]
    assert "triggeredTrainingRun" not in again["status"]["history"][-1]
