"""Pure builders and readers of the operator: no cluster needed (specs defaulted like the apiserver does)."""

from __future__ import annotations

from crds import defaulted
from visionops_operator import builders
from visionops_operator.conditions import set_condition
from visionops_operator.jobs import FAILED, SUCCEEDED, failure_reason, job_outcome
from visionops_operator.settings import OperatorSettings

SETTINGS = OperatorSettings(mlflow_uri="http://mlflow:5000", job_image="job:1")


def run(**spec) -> dict:
    base = {"dataset": {"pvc": "data", "path": "vision"}}
    base.update(spec)
    return {"metadata": {"name": "tr1", "namespace": "ns", "uid": "u-1", "generation": 1},
            "spec": defaulted("TrainingRun", base)}


def test_training_job_passes_the_complete_spec_and_is_hardened():
    job = builders.training_job(run(hyperparameters={"epochs": 3, "lr0": 0.02}), SETTINGS)
    container = job["spec"]["template"]["spec"]["containers"][0]
    args = dict(zip(container["args"][::2], container["args"][1::2], strict=False))
    assert job["metadata"]["name"] == "tr1-train"
    assert args["--epochs"] == "3" and args["--lr0"] == "0.02"
    assert args["--batch"] == "8" and args["--experiment"] == "visionops-training"  # the CRD's defaults
    assert container["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000" and env["VISIONOPS_UID"] == "u-1"
    assert job["spec"]["template"]["metadata"]["labels"][builders.LABEL_TRAINING_RUN] == "tr1"


def test_gpu_request_goes_to_limits_and_device():
    job = builders.training_job(run(resources={"cpu": "2", "memory": "4Gi", "gpu": 1}), SETTINGS)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}
    assert "--device" in container["args"]


def test_child_names_are_deterministic_and_short():
    long = "x" * 80
    assert builders.child_name(long, "train") == builders.child_name(long, "train")
    assert len(builders.child_name(long, "train")) <= 63
    assert builders.child_name(long, "train") != builders.child_name(long + "y", "train")


def test_inference_service_patch_keeps_user_env_and_replaces_model_uri():
    isvc = {"spec": {"predictor": {"containers": [
        {"name": "kserve-container", "env": [{"name": "A", "value": "1"},
                                             {"name": builders.MODEL_URI_ENV, "value": "old"}]}]}}}
    patch = builders.inference_service_patch(isvc, "models:/m/3", "3")
    env = patch["spec"]["predictor"]["containers"][0]["env"]
    assert env == [{"name": "A", "value": "1"}, {"name": builders.MODEL_URI_ENV, "value": "models:/m/3"}]
    assert patch["spec"]["predictor"]["annotations"][builders.ANNOTATION_MODEL_VERSION] == "3"


def test_inference_service_patch_for_model_spec():
    patch = builders.inference_service_patch({"spec": {"predictor": {"model": {"modelFormat": {}}}}}, "u", "1")
    assert patch["spec"]["predictor"]["model"]["env"] == [{"name": builders.MODEL_URI_ENV, "value": "u"}]


def test_retraining_run_name_is_fixed_by_the_check_job():
    check = {"metadata": {"name": "dc", "namespace": "ns"},
             "spec": {"onDrift": {"trainingRunTemplate": {"dataset": {"pvc": "d"}}}}}
    a = builders.retraining_run(check, "dc-check-g1", 0.75)
    assert a["metadata"]["name"] == builders.retraining_run(check, "dc-check-g1", 0.75)["metadata"]["name"]
    assert a["metadata"]["name"] != builders.retraining_run(check, "dc-check-g2", 0.75)["metadata"]["name"]
    assert a["spec"] == {"dataset": {"pvc": "d"}}
    assert a["metadata"]["labels"][builders.LABEL_DRIFT_CHECK] == "dc"


def test_drift_job_mounts_a_second_volume_only_when_needed():
    check = {"metadata": {"name": "dc", "generation": 2},
             "spec": defaulted("DriftCheck", {"reference": {"pvc": "a"}, "current": {"pvc": "b", "path": "batch"}})}
    job = builders.drift_job(check, SETTINGS)
    assert job["metadata"]["name"] == "dc-check-g2"
    assert job["metadata"]["annotations"][builders.ANNOTATION_GENERATION] == "2"
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--current") + 1] == "/current/batch"
    check["spec"]["current"] = {"path": "batch"}
    args = builders.drift_job(check, SETTINGS)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--current") + 1] == "/data/batch"


def test_job_outcome_and_failure_reason():
    assert job_outcome({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}).state == SUCCEEDED
    failed = job_outcome({"status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "limit reached"}]}})
    assert failed.state == FAILED
    pod = {"status": {"containerStatuses": [{"state": {"terminated": {
        "exitCode": 1, "reason": "Error", "message": '{"error": "dataset /data/x not found"}'}}}]}}
    assert failure_reason(failed, pod) == "dataset /data/x not found"
    oom = {"status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}}
    assert failure_reason(failed, oom).startswith("container OOMKilled (exit code 137)")


def test_set_condition_keeps_transition_time_when_status_unchanged():
    first = set_condition(None, "Trained", None, "JobCreated", now="t1")
    same = set_condition(first, "Trained", None, "Training", now="t2")
    assert same[0]["lastTransitionTime"] == "t1" and same[0]["reason"] == "Training"
    flipped = set_condition(same, "Trained", True, "TrainingSucceeded", now="t3")
    assert flipped[0]["lastTransitionTime"] == "t3" and flipped[0]["status"] == "True"


def test_gpus_are_all_used_and_scheduling_reaches_the_pod():
    scheduling = {"nodeSelector": {"accelerator": "h200"}, "priorityClassName": "training",
                  "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}
    job = builders.training_job(run(resources={"cpu": "8", "memory": "32Gi", "gpu": 2}, scheduling=scheduling),
                                SETTINGS)
    pod = job["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--device") + 1] == "0,1"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert {k: pod[k] for k in scheduling} == scheduling


def test_init_from_a_version_or_a_file_on_the_dataset_volume():
    for source, flag in (("models:/detector@production", "models:/detector@production"),
                         ("weights/best.pt", f"{builders.DATA_MOUNT}/weights/best.pt")):
        job = builders.training_job(run(initFrom=source), SETTINGS)
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--init-from") + 1] == flag
    args = builders.training_job(run(), SETTINGS)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--init-from" not in args


def test_retraining_starts_from_the_production_version_unless_the_template_says_otherwise():
    check = {"metadata": {"name": "dc", "namespace": "ns"},
             "spec": {"onDrift": {"trainingRunTemplate": {"dataset": {"pvc": "data"}}}}}
    run = builders.retraining_run(check, "dc-check-1", 0.75, "models:/detector/3")
    assert run["spec"]["initFrom"] == "models:/detector/3"
    assert "initFrom" not in builders.retraining_run(check, "dc-check-1", 0.75, None)["spec"]
    check["spec"]["onDrift"]["trainingRunTemplate"]["initFrom"] = "weights/best.pt"
    assert builders.retraining_run(check, "dc-check-1", 0.75, "models:/detector/3")["spec"]["initFrom"] == (
        "weights/best.pt")


def test_drift_reference_from_lineage_with_model_features():
    uri = "models:/detector@production"
    spec = defaulted("DriftCheck", {"reference": {"pvc": "a", "fromModel": uri, "modelFeatures": True},
                                    "current": {"path": "batch"}})
    args = builders.drift_job({"metadata": {"name": "dc", "generation": 1}, "spec": spec}, SETTINGS)[
        "spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--reference-from-model") + 1] == uri and args[args.index("--model-uri") + 1] == uri
    assert "--reference" not in args and "--products" not in args
    assert args[args.index("--reference-split") + 1] == "train"
