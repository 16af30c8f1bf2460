"""The CRD schemas (manifests/crds) reject malformed TrainingRuns and DriftChecks at the apiserver."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from k8s import GROUP, VERSION, custom
from kubernetes.client.rest import ApiException

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("cluster_env")]

GOOD_TR = {"dataset": {"pvc": "datasets", "path": "vision", "products": ["Casting"]},
           "hyperparameters": {"epochs": 3, "imgsz": 128}}
GOOD_DC = {"reference": {"pvc": "datasets"}, "current": {"path": "batches/b1"}}


def with_(base: dict, path: str, value) -> dict:
    """Copy of ``base`` with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    out = copy.deepcopy(base)
    node = out
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if value is ...:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
    return out


BAD_TRAINING_RUNS = [
    ("no dataset", with_(GOOD_TR, "dataset", ...), "spec.dataset: Required value"),
    ("no pvc", with_(GOOD_TR, "dataset.pvc", ...), "spec.dataset.pvc: Required value"),
    ("pvc not a DNS name", with_(GOOD_TR, "dataset.pvc", "My_PVC"), "spec.dataset.pvc"),
    ("absolute path", with_(GOOD_TR, "dataset.path", "/etc"), "spec.dataset.path"),
    ("path escapes the volume", with_(GOOD_TR, "dataset.path", "a/../../b"), "path must not contain '..'"),
    ("unknown product", with_(GOOD_TR, "dataset.products", ["Banana"]), "spec.dataset.products[0]"),
    ("duplicate products", with_(GOOD_TR, "dataset.products", ["Casting", "Casting"]), "Duplicate value"),
    ("zero epochs", with_(GOOD_TR, "hyperparameters.epochs", 0), "spec.hyperparameters.epochs"),
    ("initFrom: a models URI without version or alias", with_(GOOD_TR, "initFrom", "models:/detector"),
     "or the relative path of a .pt file in the dataset volume"),
    ("initFrom: an absolute path", with_(GOOD_TR, "initFrom", "/etc/best.pt"), "initFrom must be"),
    ("initFrom: out of the volume", with_(GOOD_TR, "initFrom", "a/../../best.pt"), "initFrom must be"),
    ("initFrom: not weights", with_(GOOD_TR, "initFrom", "weights/best.onnx"), "initFrom must be"),
    ("too many epochs", with_(GOOD_TR, "hyperparameters.epochs", 5000), "spec.hyperparameters.epochs"),
    ("epochs as text", with_(GOOD_TR, "hyperparameters.epochs", "ten"), "spec.hyperparameters.epochs"),
    ("imgsz not a multiple of 32", with_(GOOD_TR, "hyperparameters.imgsz", 100), "multiple of 32"),
    ("zero learning rate", with_(GOOD_TR, "hyperparameters.lr0", 0), "spec.hyperparameters.lr0"),
    ("negative batch", with_(GOOD_TR, "hyperparameters.batch", -1), "spec.hyperparameters.batch"),
    ("bad memory quantity", with_(GOOD_TR, "resources.memory", "lots"), "spec.resources.memory"),
    ("too many GPUs", with_(GOOD_TR, "resources.gpu", 64), "spec.resources.gpu"),
    ("unknown promotion mode", with_(GOOD_TR, "promotion.mode", "sometimes"), "spec.promotion.mode"),
    ("threshold above 1", with_(GOOD_TR, "promotion.map50Threshold", 1.5), "spec.promotion.map50Threshold"),
    ("regression limit above 100", with_(GOOD_TR, "promotion.maxClassRegressionPoints", 101),
     "spec.promotion.maxClassRegressionPoints"),
    ("bad model name", with_(GOOD_TR, "model.name", "my model!"), "spec.model.name"),
    ("deadline too short", with_(GOOD_TR, "activeDeadlineSeconds", 5), "spec.activeDeadlineSeconds"),
]

BAD_DRIFT_CHECKS = [
    ("fromModel not a models URI", with_(GOOD_DC, "reference.fromModel", "production"), "spec.reference.fromModel"),
    ("no reference", with_(GOOD_DC, "reference", ...), "spec.reference: Required value"),
    ("no current path", with_(GOOD_DC, "current.path", ...), "spec.current.path: Required value"),
    ("unknown split", with_(GOOD_DC, "reference.split", "test"), "spec.reference.split"),
    ("drift share zero", with_(GOOD_DC, "thresholds.driftShare", 0), "spec.thresholds.driftShare"),
    ("bad cron", with_(GOOD_DC, "schedule", "every day"), "spec.schedule"),
    ("retrain without template", with_(GOOD_DC, "onDrift", {"retrain": True}),
     "onDrift.retrain needs onDrift.trainingRunTemplate"),
    ("negative cooldown", with_(GOOD_DC, "onDrift.cooldownSeconds", -1), "spec.onDrift.cooldownSeconds"),
]


def create(namespace: str, plural: str, kind: str, spec: dict) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": "x"}, "spec": spec}
    custom().create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body, dry_run="All")


@pytest.mark.parametrize(("case", "spec", "message"), BAD_TRAINING_RUNS, ids=[c[0] for c in BAD_TRAINING_RUNS])
def test_bad_training_run_is_rejected(visionops_crds, k8s_namespace, case, spec, message):
    with pytest.raises(ApiException) as err:
        create(k8s_namespace, "trainingruns", "TrainingRun", spec)
    assert err.value.status == 422, err.value.body
    assert message in err.value.body, err.value.body


@pytest.mark.parametrize(("case", "spec", "message"), BAD_DRIFT_CHECKS, ids=[c[0] for c in BAD_DRIFT_CHECKS])
def test_bad_drift_check_is_rejected(visionops_crds, k8s_namespace, case, spec, message):
    with pytest.raises(ApiException) as err:
        create(k8s_namespace, "driftchecks", "DriftCheck", spec)
    assert err.value.status == 422, err.value.body
    assert message in err.value.body, err.value.body


def test_good_objects_are_accepted_with_defaults(visionops_crds, k8s_namespace):
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingRun", "metadata": {"name": "ok"}, "spec": GOOD_TR}
    made = custom().create_namespaced_custom_object(GROUP, VERSION, k8s_namespace, "trainingruns", body)
    assert made["spec"]["dataset"]["path"] == "vision"
    assert made["spec"]["backoffLimit"] == 0
    dc = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftCheck", "metadata": {"name": "ok"}, "spec": GOOD_DC}
    made = custom().create_namespaced_custom_object(GROUP, VERSION, k8s_namespace, "driftchecks", dc, dry_run="All")
    assert made["spec"]["reference"]["split"] == "train"


def test_training_run_spec_is_immutable(visionops_crds, k8s_namespace):
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingRun", "metadata": {"name": "frozen"}, "spec": GOOD_TR}
    custom().create_namespaced_custom_object(GROUP, VERSION, k8s_namespace, "trainingruns", body)
    with pytest.raises(ApiException) as err:
        custom().patch_namespaced_custom_object(GROUP, VERSION, k8s_namespace, "trainingruns", "frozen",
                                                {"spec": {"hyperparameters": {"epochs": 9}}})
    assert err.value.status == 422
    assert "spec is immutable" in err.value.body


SAMPLES = sorted((Path(__file__).resolve().parents[2] / "manifests" / "samples").glob("*.yaml"))


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_samples_are_valid(kube_cluster, visionops_crds, k8s_namespace, sample):
    kube_cluster.kubectl("apply", "--dry-run=server", "-n", k8s_namespace, "-f", str(sample))
