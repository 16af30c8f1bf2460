"""The CRDs of manifests/crds as data: their schemas, and the apiserver's structural defaulting in Python
(so pure tests see the complete spec the operator gets from the apiserver)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

CRD_DIR = Path(__file__).resolve().parents[2] / "manifests" / "crds"
PLURALS = {"TrainingRun": "trainingruns", "DriftCheck": "driftchecks", "ModelDeployment": "modeldeployments"}


def crd(kind: str) -> dict[str, Any]:
    return yaml.safe_load((CRD_DIR / f"{PLURALS[kind]}.visionops.io.yaml").read_text())


def version(kind: str) -> dict[str, Any]:
    (served,) = crd(kind)["spec"]["versions"]
    return served


def schema(kind: str) -> dict[str, Any]:
    return version(kind)["schema"]["openAPIV3Schema"]


def _default(node: dict[str, Any], value: Any) -> Any:
    """Apply ``node``'s nested defaults to ``value`` like the apiserver (absent fields with a default get it)."""
    if isinstance(value, dict) and node.get("type") == "object":
        for key, child in (node.get("properties") or {}).items():
            if key not in value and "default" in child:
                value[key] = copy.deepcopy(child["default"])
            if key in value:
                value[key] = _default(child, value[key])
    elif isinstance(value, list) and node.get("items"):
        value = [_default(node["items"], item) for item in value]
    return value


def defaulted(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` as the apiserver stores it: every declared default filled in."""
    return _default(schema(kind)["properties"]["spec"], copy.deepcopy(spec))


def fields(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (dotted path, schema) below ``node``."""
    for key, child in (node.get("properties") or {}).items():
        yield f"{path}.{key}".lstrip("."), child
        yield from fields(child, f"{path}.{key}")
    if node.get("items"):
        yield from fields(node["items"], f"{path}[]")
