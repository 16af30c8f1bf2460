"""The CRDs are the API's truth: every field documented for `kubectl explain`, every default declared and
named, configs/*.yaml agreeing with those defaults, every condition reason documented. No cluster needed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from crds import defaulted, fields, schema, version
from visionops_operator.conditions import REASONS

from visionops.config import load as load_config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operator.md"
KINDS = ["TrainingRun", "DriftCheck", "ModelDeployment"]

# configs/<file>.yaml key path -> the CRD field whose default it must equal
CONFIG_DEFAULTS = {
    "TrainingRun": {
        ("training", "epochs"): "hyperparameters.epochs",
        ("training", "batch"): "hyperparameters.batch",
        ("training", "imgsz"): "hyperparameters.imgsz",
        ("training", "lr0"): "hyperparameters.lr0",
        ("training", "patience"): "hyperparameters.patience",
        ("training", "seed"): "hyperparameters.seed",
        ("training", "int8"): "quantization.int8",
        ("training", "int8_max_drop"): "quantization.maxMap50Drop",
        ("training", "experiment"): "model.experiment",
        ("training", "registered_model_name"): "model.name",
        ("model", "promotion.map50_threshold"): "promotion.map50Threshold",
        ("model", "promotion.max_class_regression_points"): "promotion.maxClassRegressionPoints",
    },
    "DriftCheck": {
        ("drift", "drift_share"): "thresholds.driftShare",
        ("drift", "min_reference_samples"): "thresholds.minReferenceSamples",
        ("drift", "min_current_samples"): "thresholds.minCurrentSamples",
        ("drift", "experiment"): "experiment",
    },
    "ModelDeployment": {
        ("serving", "model_name"): "model.name",
    },
}
MINIMAL = {"TrainingRun": {"dataset": {"pvc": "data"}},
           "DriftCheck": {"reference": {"pvc": "data"}, "current": {"path": "batch"}},
           "ModelDeployment": {"inferenceService": "predictor"}}


def _dig(data: dict, dotted: str):
    for key in dotted.split("."):
        data = data[key]
    return data


SCHEMA_KEYS = {
    "type", "description", "default", "properties", "items", "required", "enum", "minimum", "maximum",
    "exclusiveMinimum", "minLength", "maxLength", "maxItems", "pattern", "format", "multipleOf",
    "additionalProperties", "anyOf", "x-kubernetes-validations", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
}


@pytest.mark.parametrize("kind", KINDS)
def test_schema_nodes_hold_only_schema_keywords(kind):
    """A comma in an unquoted flow-style description makes a bogus key: caught here, not at apply time."""
    bad = {path: set(node) - SCHEMA_KEYS for path, node in fields(schema(kind)) if set(node) - SCHEMA_KEYS}
    assert not bad, bad


@pytest.mark.parametrize("kind", KINDS)
def test_every_spec_and_status_field_is_described(kind):
    root = schema(kind)
    missing = [path for part in ("spec", "status") for path, node in fields(root["properties"][part], part)
               if not (node.get("description") or "").strip()]
    assert not missing, f"{kind} fields without a description (kubectl explain shows nothing): {missing}"


@pytest.mark.parametrize("kind", KINDS)
def test_every_default_is_named_in_its_description(kind):
    """kubectl explain shows descriptions, not `default:`: each default is spelled out as 'Default: X.'"""
    for path, node in fields(schema(kind)["properties"]["spec"], "spec"):
        if "default" in node and node["default"] != {}:
            default = node["default"]
            text = json.dumps(default) if isinstance(default, bool) else str(default)
            assert f"Default: {text}." in " ".join(node["description"].split()), (path, node["description"])


@pytest.mark.parametrize("kind", KINDS)
def test_configs_agree_with_the_crd_defaults(kind):
    """configs/*.yaml (the local CLI and demo) and the CRD defaults (the cluster) are the same numbers."""
    spec = defaulted(kind, MINIMAL[kind])
    for (config, key), crd_field in CONFIG_DEFAULTS[kind].items():
        assert _dig(load_config(config), key) == _dig(spec, crd_field), (config, key, crd_field)


def test_a_minimal_spec_is_complete_after_defaulting():
    spec = defaulted("TrainingRun", MINIMAL["TrainingRun"])
    assert spec["hyperparameters"] == {"epochs": 10, "batch": 8, "imgsz": 640, "lr0": 0.01, "patience": 5, "seed": 0}
    assert spec["promotion"] == {"mode": "auto", "map50Threshold": 0.1, "maxClassRegressionPoints": 5}
    assert spec["dataset"]["path"] == "vision" and spec["backoffLimit"] == 0
    check = defaulted("DriftCheck", MINIMAL["DriftCheck"])
    assert check["onDrift"] == {"retrain": False, "cooldownSeconds": 3600}
    assert check["reference"] == {"pvc": "data", "path": "vision", "split": "train", "modelFeatures": False}


@pytest.mark.parametrize("kind", KINDS)
def test_every_reason_is_documented_in_the_crd_and_the_docs(kind):
    described = " ".join(schema(kind)["properties"]["status"]["properties"]["conditions"]["description"].split())
    docs = DOCS.read_text()
    for reason in REASONS[kind]:
        assert re.search(rf"\b{reason}\b", described), f"{kind} CRD conditions do not name {reason}"
        assert re.search(rf"`{reason}`", docs), f"docs/operator.md does not explain {reason}"


@pytest.mark.parametrize("kind", KINDS)
def test_printer_columns(kind):
    columns = {c["name"]: c for c in version(kind)["additionalPrinterColumns"]}
    assert columns["Message"]["priority"] == 1 and "Ready" in columns["Message"]["jsonPath"]
    assert {"Phase", "Age"} <= set(columns)
    if kind == "DriftCheck":
        assert columns["Result"]["jsonPath"] == ".status.result"
