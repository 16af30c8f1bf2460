"""Pure builders: custom resource spec -> Job / CronJob / TrainingRun / InferenceService patch.

Nothing here talks to the API server; every function is a dict in, dict out.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from typing import Any

from visionops.contract import DRIFT_CHECK_LABEL as LABEL_DRIFT_CHECK
from visionops.contract import (
    KIND_ENV,
    MODEL_URI_ENV,
    NAME_ENV,
    NAMESPACE_ENV,
    TERMINATION_LOG,
    TRACKING_URI_ENV,
    UID_ENV,
)
from visionops.contract import MODEL_VERSION_ANNOTATION as ANNOTATION_MODEL_VERSION
from visionops.contract import TRAINING_RUN_LABEL as LABEL_TRAINING_RUN

from . import GROUP, VERSION
from .settings import OperatorSettings

LABEL_COMPONENT = "app.kubernetes.io/component"
ANNOTATION_GENERATION = f"{GROUP}/generation"  # on a check Job: the DriftCheck generation it checks
PREDICTOR_CONTAINER = "kserve-container"

DATA_MOUNT = "/data"
CURRENT_MOUNT = "/current"
WORK_MOUNT = "/work"
MAX_NAME = 63

# spec.hyperparameters field -> training job flag
HYPERPARAMETER_FLAGS = {
    "epochs": "--epochs", "batch": "--batch", "imgsz": "--imgsz",
    "lr0": "--lr0", "patience": "--patience", "seed": "--seed",
}


def child_name(owner: str, suffix: str) -> str:
    """Deterministic child name ``<owner>-<suffix>`` within 63 characters (hashed when too long)."""
    name = f"{owner}-{suffix}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = MAX_NAME - len(suffix) - len(digest) - 2
    return f"{owner[:keep].rstrip('-.')}-{digest}-{suffix}"


def drift_check_selector(name: str) -> str:
    """Label selector of the check Jobs of one DriftCheck."""
    return f"{LABEL_DRIFT_CHECK}={name},{LABEL_COMPONENT}=drift-check"


def _security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(spec_resources: Mapping[str, Any] | None) -> dict[str, Any]:
    res = dict(spec_resources or {})
    amounts: dict[str, Any] = {}
    if res.get("cpu") is not None:
        amounts["cpu"] = str(res["cpu"])
    if res.get("memory"):
        amounts["memory"] = res["memory"]
    limits = dict(amounts)
    if int(res.get("gpu") or 0) > 0:
        limits["nvidia.com/gpu"] = str(int(res["gpu"]))
    out: dict[str, Any] = {}
    if amounts:
        out["requests"] = amounts
    if limits:
        out["limits"] = limits
    return out


def _identity_env(kind: str, name: str, namespace: str, uid: str, settings: OperatorSettings) -> list[dict]:
    env = [
        {"name": NAMESPACE_ENV, "value": namespace},
        {"name": NAME_ENV, "value": name},
        {"name": UID_ENV, "value": uid},
        {"name": KIND_ENV, "value": kind},
        {"name": "HOME", "value": WORK_MOUNT},
        {"name": "MPLCONFIGDIR", "value": f"{WORK_MOUNT}/.matplotlib"},
        {"name": "YOLO_CONFIG_DIR", "value": f"{WORK_MOUNT}/.yolo"},
    ]
    if settings.mlflow_uri:
        env.append({"name": TRACKING_URI_ENV, "value": settings.mlflow_uri})
    if settings.job_mlflow_secret:  # MLflow's client reads these; the password stays in the Secret
        env += [{"name": name, "valueFrom": {"secretKeyRef": {"name": settings.job_mlflow_secret, "key": key}}}
                for name, key in (("MLFLOW_TRACKING_USERNAME", "username"), ("MLFLOW_TRACKING_PASSWORD", "password"))]
    return env


def _job_container(name: str, module: str, args: list[str], owner: Mapping[str, Any], kind: str,
                   settings: OperatorSettings, resources: dict[str, Any], mounts: list[dict]) -> dict[str, Any]:
    """The hardened container of a data-plane Job: ``python -m <module> <args>``, result in the termination log."""
    meta = owner["metadata"]
    return {
        "name": name,
        "image": (owner.get("spec") or {}).get("image") or settings.job_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", module],
        "args": args,
        "env": _identity_env(kind, meta["name"], meta.get("namespace", ""), meta.get("uid", ""), settings),
        "resources": resources,
        "securityContext": _security_context(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": mounts,
    }


def _pod_spec(container: dict[str, Any], volumes: list[dict], settings: OperatorSettings) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
    }
    if settings.job_service_account:
        pod["serviceAccountName"] = settings.job_service_account
    return pod


def _job(name: str, labels: dict[str, str], pod: dict[str, Any], backoff: int, deadline: int | None) -> dict:
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "backoffLimit": backoff,
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
        },
    }
    if deadline:
        job["spec"]["activeDeadlineSeconds"] = deadline
    return job


def training_job(run: Mapping[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """The Job that trains one TrainingRun (``run`` is the custom resource as a dict)."""
    meta, spec = run["metadata"], run.get("spec", {})
    name = meta["name"]
    dataset = spec["dataset"]
    args = [
        "--dataset", f"{DATA_MOUNT}/{dataset['path']}",
        "--workdir", WORK_MOUNT,
        "--result-file", TERMINATION_LOG,
    ]
    if dataset.get("products"):
        args += ["--products", ",".join(dataset["products"])]
    for field_name, flag in HYPERPARAMETER_FLAGS.items():
        value = (spec.get("hyperparameters") or {}).get(field_name)
        if value is not None:
            args += [flag, str(value)]
    model = spec.get("model") or {}
    if model.get("experiment"):
        args += ["--experiment", model["experiment"]]
    gpus = int((spec.get("resources") or {}).get("gpu") or 0)
    if gpus > 0:  # every requested device, in one pod (ultralytics trains data-parallel on "0,1,...")
        args += ["--device", ",".join(str(i) for i in range(gpus))]
    quantization = spec.get("quantization") or {}
    if quantization.get("int8") is False:
        args += ["--no-int8"]
    if quantization.get("maxMap50Drop") is not None:
        args += ["--int8-max-drop", str(quantization["maxMap50Drop"])]
    if spec.get("initFrom"):
        source = spec["initFrom"]
        args += ["--init-from", source if source.startswith("models:") else f"{DATA_MOUNT}/{source}"]
    labels = {"app.kubernetes.io/name": "visionops", LABEL_COMPONENT: "training", LABEL_TRAINING_RUN: name}
    container = _job_container(
        "train", "training_job", args, run, "TrainingRun", settings, _resources(spec.get("resources")),
        [
            {"name": "dataset", "mountPath": DATA_MOUNT, "readOnly": True},
            {"name": "work", "mountPath": WORK_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "shm", "mountPath": "/dev/shm"},
        ],
    )
    volumes = [
        {"name": "dataset", "persistentVolumeClaim": {"claimName": dataset["pvc"], "readOnly": True}},
        {"name": "work", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
    ]
    pod = _pod_spec(container, volumes, settings)
    scheduling = spec.get("scheduling") or {}
    for key in ("nodeSelector", "tolerations", "priorityClassName"):
        if scheduling.get(key):
            pod[key] = scheduling[key]
    return _job(
        child_name(name, "train"), labels, pod, int(spec.get("backoffLimit") or 0), spec.get("activeDeadlineSeconds"),
    )


def drift_job_template(check: Mapping[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """The Job template (metadata + spec) of one check of a DriftCheck."""
    meta, spec = check["metadata"], check.get("spec", {})
    name = meta["name"]
    ref, cur = spec["reference"], spec["current"]
    thresholds = spec.get("thresholds") or {}
    same_volume = not cur.get("pvc") or cur.get("pvc") == ref["pvc"]
    current_root = DATA_MOUNT if same_volume else CURRENT_MOUNT
    if ref.get("fromModel"):  # the data the version was trained on (its dataset tags), on the same volume
        args = ["--reference-from-model", ref["fromModel"]]
        if ref.get("modelFeatures"):
            args += ["--model-uri", ref["fromModel"]]
    else:
        args = ["--reference", f"{DATA_MOUNT}/{ref['path']}"]
        if ref.get("products"):
            args += ["--products", ",".join(ref["products"])]
    args += [
        "--reference-split", ref["split"],
        "--current", f"{current_root}/{cur['path']}",
        "--result-file", TERMINATION_LOG,
    ]
    for field_name, flag in (("driftShare", "--drift-share"), ("minReferenceSamples", "--min-reference"),
                             ("minCurrentSamples", "--min-current")):
        if thresholds.get(field_name) is not None:
            args += [flag, str(thresholds[field_name])]
    if spec.get("experiment"):
        args += ["--experiment", spec["experiment"]]
    mounts = [
        {"name": "dataset", "mountPath": DATA_MOUNT, "readOnly": True},
        {"name": "work", "mountPath": WORK_MOUNT},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes = [
        {"name": "dataset", "persistentVolumeClaim": {"claimName": ref["pvc"], "readOnly": True}},
        {"name": "work", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    if not same_volume:
        mounts.append({"name": "current", "mountPath": CURRENT_MOUNT, "readOnly": True})
        volumes.append({"name": "current", "persistentVolumeClaim": {"claimName": cur["pvc"], "readOnly": True}})
    labels = {"app.kubernetes.io/name": "visionops", LABEL_COMPONENT: "drift-check", LABEL_DRIFT_CHECK: name}
    container = _job_container(
        "drift", "drift_job", args, check, "DriftCheck", settings,
        {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}}, mounts,
    )
    job = _job("", labels, _pod_spec(container, volumes, settings), 0, 3600)
    annotations = {ANNOTATION_GENERATION: str(meta.get("generation", 1))}
    return {"metadata": {"labels": labels, "annotations": annotations}, "spec": job["spec"]}


def drift_job(check: Mapping[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """The one-off Job of a DriftCheck's current generation (a spec change makes a new check)."""
    template = drift_job_template(check, settings)
    generation = check["metadata"].get("generation", 1)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": child_name(check["metadata"]["name"], f"check-g{generation}"), **template["metadata"]},
        "spec": template["spec"],
    }


def drift_cronjob(check: Mapping[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """The CronJob running a DriftCheck on its schedule (kube-controller-manager does the timing)."""
    spec = check["spec"]
    template = drift_job_template(check, settings)
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": child_name(check["metadata"]["name"], "drift"),
                     "labels": dict(template["metadata"]["labels"])},
        "spec": {
            "schedule": spec["schedule"],
            "suspend": bool(spec.get("suspend", False)),
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": template,
        },
    }


def retraining_run(check: Mapping[str, Any], job_name: str, drift_share: float | None,
                   init_from: str | None = None) -> dict[str, Any]:
    """The TrainingRun a DriftCheck creates on drift; its name is fixed by the check Job, so no duplicate.
    ``init_from`` (the production version) is its starting point unless the template names its own."""
    meta = check["metadata"]
    template = copy.deepcopy((check["spec"].get("onDrift") or {}).get("trainingRunTemplate") or {})
    spec = template.get("spec", template)
    if init_from and not spec.get("initFrom"):
        spec["initFrom"] = init_from
    digest = hashlib.sha256(job_name.encode()).hexdigest()[:6]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingRun",
        "metadata": {
            "name": child_name(meta["name"], f"retrain-{digest}"),
            "namespace": meta.get("namespace"),
            "labels": {"app.kubernetes.io/name": "visionops", LABEL_DRIFT_CHECK: meta["name"]},
            "annotations": {
                f"{GROUP}/triggered-by-job": job_name,
                f"{GROUP}/drift-share": "" if drift_share is None else f"{drift_share:.4f}",
            },
        },
        "spec": spec,
    }


def inference_service_patch(isvc: Mapping[str, Any], model_uri: str, version: str) -> dict[str, Any]:
    """Merge patch pointing an InferenceService's predictor at ``model_uri`` (KServe then rolls it out).

    Works for a custom predictor container (``spec.predictor.containers``, container ``kserve-container``
    or the first one) and for ``spec.predictor.model`` with a ServingRuntime. Only the model URI
    variable and the version annotation change; the rest of the user's spec is kept.
    """
    predictor = copy.deepcopy((isvc.get("spec") or {}).get("predictor") or {})
    var = {"name": MODEL_URI_ENV, "value": model_uri}

    def with_var(env: list[dict] | None) -> list[dict]:
        return [e for e in env or [] if e.get("name") != MODEL_URI_ENV] + [var]

    patch_predictor: dict[str, Any] = {}
    if predictor.get("containers"):
        containers = predictor["containers"]
        index = next((i for i, c in enumerate(containers) if c.get("name") == PREDICTOR_CONTAINER), 0)
        containers[index]["env"] = with_var(containers[index].get("env"))
        patch_predictor["containers"] = containers
    else:
        model = predictor.get("model") or {}
        patch_predictor["model"] = {"env": with_var(model.get("env"))}
    annotations = dict(predictor.get("annotations") or {})
    annotations[ANNOTATION_MODEL_VERSION] = str(version)
    patch_predictor["annotations"] = annotations
    return {
        "metadata": {"annotations": {ANNOTATION_MODEL_VERSION: str(version)}},
        "spec": {"predictor": patch_predictor},
    }
