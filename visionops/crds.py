"""The CRDs of ``manifests/crds/`` (the API's source of truth) read as data: their schemas, for tools that need a
field's default, range or description without an apiserver (the console's form when the published schema cannot
be read). Images that need them copy ``manifests/crds/`` beside the ``visionops`` package."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from visionops.contract import API_GROUP

CRD_DIR = Path(__file__).resolve().parent.parent / "manifests" / "crds"


@functools.cache
def spec_schema(plural: str) -> dict[str, Any]:
    """The ``spec`` schema (OpenAPI v3) of the served version of CRD ``<plural>.visionops.io``; ``{}`` when the CRD
    file is not there (an install without ``manifests/``)."""
    path = CRD_DIR / f"{plural}.{API_GROUP}.yaml"
    if not path.is_file():
        return {}
    crd = yaml.safe_load(path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("served"))
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]
