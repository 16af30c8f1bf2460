"""MLflow Model Registry helpers: register a training run's model, move aliases, apply the gate.

Sync functions taking an ``MlflowClient`` or a :class:`visionops.mlflow_rest.MlflowRestClient` (the same
methods, through the REST API alone: the operator's light client); the caller picks the tracking URI.
Nothing here imports MLflow. A version's source
is the run's ``model/`` artifact folder (``best.pt``, ``best.onnx``, ``class_map.json``,
``data_card.json``); ``mlflow.register_model`` is not used: in MLflow 3 it fails for plain
artifacts, ``create_model_version`` with the artifact URI works.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from visionops import config, contract
from visionops.contract import (  # names of a version's layout and tags (also read from here by others)
    AP50_METRIC_PREFIX,
    DIGEST_TAG,
    MODEL_ARTIFACT_PATH,
    PER_CLASS_ARTIFACT,
    PROMOTION_REASON_TAG,
    PROMOTION_TAG,
    SOURCE_TAG,
)
from visionops.promotion import PromotionDecision, decide

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from visionops.mlflow_rest import MlflowRestClient

    Client = MlflowClient | MlflowRestClient  # the same methods; the REST one imports no MLflow

# What a version must hold: the weights (retraining, analysis), the ONNX model and the class names (serving).
REQUIRED_MODEL_FILES = contract.MODEL_FILES
# Run tags copied onto the model version, so a version names the TrainingRun that produced it.
IDENTITY_TAGS = tuple(contract.IDENTITY_TAGS.values())
# Run tags a registered version copies: who trained it and from which dataset version (visionops.lineage).
VERSION_TAGS_FROM_RUN = (*IDENTITY_TAGS, DIGEST_TAG, SOURCE_TAG)
_RESERVED_ALIAS = re.compile(r"^[vV]\d+$")
_METRIC_UNSAFE = re.compile(r"[^\w.\- ]")


class RegistryError(RuntimeError):
    """A run or model version cannot be registered or evaluated (the message says why)."""


@dataclass(frozen=True)
class ModelMetrics:
    """What the gate needs from a run: overall mAP@0.50 and AP50 per class name (fractions)."""

    run_id: str
    map50: float
    per_class: dict[str, float]


def aliases() -> tuple[str, str]:
    """``(staging, production)`` alias names from ``configs/model.yaml``."""
    gate = config.load("model").get("promotion", {})
    staging, production = gate.get("staging_alias", "staging"), gate.get("production_alias", "production")
    for alias in (staging, production):
        if _RESERVED_ALIAS.match(alias):
            raise ValueError(f"alias {alias!r} is reserved by MLflow (v<number>); pick another name")
    return staging, production


def class_metric_key(class_name: str) -> str:
    """MLflow metric key for a class's AP50: ``ap50/casting.inclusoes`` for ``casting/inclusoes``."""
    return AP50_METRIC_PREFIX + _METRIC_UNSAFE.sub("_", class_name.replace("/", "."))


def per_class_from_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """AP50 by class name from a run's ``ap50/<product>.<class>`` metrics (:func:`class_metric_key` read back)."""
    return {key[len(AP50_METRIC_PREFIX):].replace(".", "/", 1): value
            for key, value in metrics.items() if key.startswith(AP50_METRIC_PREFIX)}


def _error_code(error: BaseException) -> str | None:
    """The MLflow error code of an MlflowException or MlflowRestError (``None`` for anything else)."""
    return getattr(error, "error_code", None)


def _is_missing(error: BaseException) -> bool:
    return _error_code(error) == "RESOURCE_DOES_NOT_EXIST"


def _check_name(name: str) -> str:
    if not name or "'" in name or '"' in name:
        raise ValueError(f"registered model name must be non-empty and free of quotes, got {name!r}")
    return name


def ensure_registered_model(client: Client, name: str) -> None:
    """Create the registered model ``name`` unless it exists (safe against a concurrent creator)."""
    try:
        client.get_registered_model(name)
        return
    except Exception as error:
        if not _is_missing(error):
            raise
    try:
        client.create_registered_model(name, description="YOLOv8n defect detector trained by VisionOps")
    except Exception as error:
        if _error_code(error) != "RESOURCE_ALREADY_EXISTS":
            raise


def versions(client: Client, name: str, run_id: str | None = None) -> list[ModelVersion]:
    """All versions of ``name`` (of one run if given), oldest first."""
    query = f"name='{_check_name(name)}'" + (f" and run_id='{run_id}'" if run_id else "")
    found = list(client.search_model_versions(query))
    return sorted(found, key=lambda mv: int(mv.version))


def register_version(
    client: Client, name: str, run_id: str, artifact_path: str = MODEL_ARTIFACT_PATH
) -> ModelVersion:
    """Register the run's ``artifact_path`` folder as a version of ``name`` and move staging to the newest.

    Idempotent: a run registered before returns its existing version.
    """
    _check_name(name)
    try:
        run = client.get_run(run_id)
    except Exception as error:
        if _error_code(error) not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise  # the server is unreachable or failing: worth a retry, unlike a missing run
        raise RegistryError(f"run {run_id!r} not found on the tracking server: {error.message}") from error
    if run.info.status != "FINISHED":
        raise RegistryError(f"run {run_id} is {run.info.status}; only FINISHED training runs can be registered")
    listed = {Path(a.path).name for a in client.list_artifacts(run_id, artifact_path)}
    missing = [f"{artifact_path}/{file}" for file in REQUIRED_MODEL_FILES if file not in listed]
    if missing:
        raise RegistryError(
            f"run {run_id} lacks the artifacts {', '.join(missing)} (found: {sorted(listed) or 'nothing'})"
        )
    ensure_registered_model(client, name)
    existing = versions(client, name, run_id)
    if existing:
        version = existing[0]
    else:
        tags = {key: value for key, value in run.data.tags.items() if key in VERSION_TAGS_FROM_RUN}
        version = client.create_model_version(
            name, source=f"{run.info.artifact_uri}/{artifact_path}", run_id=run_id, tags=tags,
            description=f"model/ of training run {run_id}",
        )
    staging, _ = aliases()
    newest = versions(client, name)[-1]
    client.set_registered_model_alias(name, staging, newest.version)
    return version


def run_metrics(client: Client, run_id: str) -> ModelMetrics:
    """map50 (final logged value) and per-class AP50 of a training run.

    Per-class values come from the run's ``per_class_ap50.json`` (exact class names); runs without
    it fall back to the ``ap50/<class>`` metrics.
    """
    run = client.get_run(run_id)
    if "map50" not in run.data.metrics:
        raise RegistryError(f"run {run_id} has no map50 metric; was it a finished training run?")
    per_class: dict[str, float] | None = None
    if any(a.path == PER_CLASS_ARTIFACT for a in client.list_artifacts(run_id)):
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, PER_CLASS_ARTIFACT, tmp)
            per_class = {str(k): float(v) for k, v in json.loads(Path(path).read_text()).items()}
    if per_class is None:
        per_class = per_class_from_metrics(run.data.metrics)
    return ModelMetrics(run_id=run_id, map50=float(run.data.metrics["map50"]), per_class=per_class)


def production_version(client: Client, name: str) -> ModelVersion | None:
    """The version under the production alias, or ``None`` when there is none (or no model at all)."""
    _, production = aliases()
    try:
        return client.get_model_version_by_alias(name, production)
    except Exception as error:
        # no model: RESOURCE_DOES_NOT_EXIST; no alias: INVALID_PARAMETER_VALUE "...alias ... not found."
        message = str(getattr(error, "message", ""))
        alias_missing = _error_code(error) == "INVALID_PARAMETER_VALUE" and "alias" in message \
            and "not found" in message
        if _is_missing(error) or alias_missing:
            return None
        if _error_code(error) == "PERMISSION_DENIED" and _model_missing(client, name):
            return None  # MLflow's auth answers 403, not 404, for an alias of a model that does not exist
        raise


def _model_missing(client: Client, name: str) -> bool:
    """Whether the registered model ``name`` does not exist (a model that exists, or any other error: False)."""
    try:
        client.get_registered_model(name)
    except Exception as error:
        return _is_missing(error)
    return False


def production_metrics(client: Client, name: str) -> ModelMetrics | None:
    """Metrics of the production version's run, or ``None`` when nothing is in production."""
    current = production_version(client, name)
    return None if current is None else run_metrics(client, current.run_id)


def promote(client: Client, name: str, version: str | int, reason: str = "promoted manually") -> None:
    """Move the production alias to ``version`` and record why on the version's tags."""
    _, production = aliases()
    client.get_model_version(name, str(version))  # a clear RESOURCE_DOES_NOT_EXIST if it is not there
    client.set_registered_model_alias(name, production, str(version))
    client.set_model_version_tag(name, str(version), PROMOTION_TAG, "promoted")
    client.set_model_version_tag(name, str(version), PROMOTION_REASON_TAG, reason)


def evaluate(
    client: Client,
    name: str,
    version: str | int,
    threshold: float | None = None,
    max_regression: float | None = None,
) -> PromotionDecision:
    """The gate's decision for ``version`` against the current production version; changes nothing."""
    candidate_version = client.get_model_version(name, str(version))
    current = production_version(client, name)
    if current is not None and current.version == candidate_version.version:
        return PromotionDecision(True, f"version {candidate_version.version} is already production")
    candidate = run_metrics(client, candidate_version.run_id)
    baseline = None if current is None else run_metrics(client, current.run_id)
    return decide(
        candidate.map50, candidate.per_class, None if baseline is None else baseline.per_class,
        threshold, max_regression,
    )


def evaluate_and_promote(
    client: Client,
    name: str,
    version: str | int,
    threshold: float | None = None,
    max_regression: float | None = None,
) -> PromotionDecision:
    """Apply the gate; move production when it passes; tag the version promoted|rejected with the reason."""
    decision = evaluate(client, name, version, threshold, max_regression)
    if decision.promote:
        promote(client, name, version, decision.reason)
    else:
        reject(client, name, version, decision.reason)
    return decision


def reject(client: Client, name: str, version: str | int, reason: str) -> None:
    """Tag a version the gate refused (production is unchanged)."""
    client.set_model_version_tag(name, str(version), PROMOTION_TAG, "rejected")
    client.set_model_version_tag(name, str(version), PROMOTION_REASON_TAG, reason)
