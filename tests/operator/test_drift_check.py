"""DriftCheck behaviour: a real drift Job (features + Evidently + MLflow), results in status, exactly
one retraining TrainingRun even when drift is found again while it runs."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

import pytest
from k8s import condition, create, custom, event_reasons, get, jobs, settled_event_reasons, wait_until
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
        assert condition(checked, "Ready")["status"] == "True" and condition(checked, "Ready")["reason"] == "DriftFound"
        assert status["phase"] == "Completed" and status["result"] == "drift"
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
        reasons = settled_event_reasons(ns, "DriftCheck", "bright")
    # one Event per transition: a Job per generation, drift per check, one retraining
    assert Counter(reasons) == Counter(["JobCreated", "DriftFound", "RetrainingStarted", "JobCreated",
                                        "DriftFound"]), reasons
    assert condition(again, "Ready")["observedGeneration"] == again["metadata"]["generation"] == 2
    assert again["status"]["driftDetected"] is True
    labels = {"resource_namespace": ns, "drift_check": "bright"}
    assert REGISTRY.get_sample_value("visionops_drift_share", labels) == again["status"]["driftShare"]
    assert REGISTRY.get_sample_value("visionops_retrainings_total", labels) == 1
    runs = custom().list_namespaced_custom_object("visionops.io", "v1alpha1", ns, "trainingruns")["items"]
    assert [r["metadata"]["name"] for r in runs] == [first]
    assert "triggeredTrainingRun" not in again["status"]["history"][-1]


def test_failed_scheduled_check_is_ready_false_and_idle_periods_post_nothing(run_operator, pod_runner,
                                                                              k8s_namespace):
    """A scheduled check whose Job fails: Ready=False/CheckFailed, phase Failed, two Events, then silence."""
    ns = k8s_namespace
    spec = {"reference": {"pvc": "datasets"}, "current": {"path": "batches/none"}, "schedule": "0 3 * * *"}
    with run_operator():
        create(ns, "driftchecks", "nightly", spec)
        pod = pod_runner.wait_for_pod("visionops.io/drift-check=nightly,app.kubernetes.io/component=drift-check")
        pod_runner.finish(pod, 1, '{"status": "failed", "error": "no images under /data/batches/none"}')
        failed = wait_until(lambda: (o := get(ns, "driftchecks", "nightly"))["status"].get("history") and o, 60,
                            what="the failed check in status")
        assert failed["status"]["phase"] == "Failed" and failed["status"]["result"] == "failed"
        ready = condition(failed, "Ready")
        assert ready["status"] == "False" and ready["reason"] == "CheckFailed"
        assert "no images" in ready["message"]
        assert failed["spec"]["thresholds"] == {"driftShare": 0.5, "minReferenceSamples": 50, "minCurrentSamples": 20}
        reasons = settled_event_reasons(ns, "DriftCheck", "nightly")
        time.sleep(6)  # idle: the operator polls nothing, so nothing is posted or written
        assert event_reasons(ns, "DriftCheck", "nightly") == reasons
        assert get(ns, "driftchecks", "nightly")["metadata"]["resourceVersion"] == failed["metadata"]["resourceVersion"]
    assert Counter(reasons) == Counter(["JobCreated", "CheckFailed"]), reasons
