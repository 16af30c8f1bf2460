"""What is in production: the ModelDeployment resource's names, the production history kept in MLflow, and the
patch every tool sends to change it.

The one truth is the registered model's production alias in MLflow; a ModelDeployment
(``manifests/crds/modeldeployments.visionops.io.yaml``) is its Kubernetes face, kept equal to it by the operator.
The CLI (``visionops deploy``), the console and the operator's promotion all change production by
:func:`set_version_patch` on the ModelDeployment; the MLflow UI does it by moving the alias. Nothing here talks to
Kubernetes; the MLflow helpers take a client (``MlflowClient`` or :class:`visionops.mlflow_rest.MlflowRestClient`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from visionops import registry
from visionops.contract import API_GROUP, API_VERSION, TAG_PREFIX

if TYPE_CHECKING:
    from visionops.registry import Client

GROUP, VERSION, PLURAL, KIND = API_GROUP, API_VERSION, "modeldeployments", "ModelDeployment"
CHANGE_CAUSE = f"{GROUP}/change-cause"  # annotation sent with spec.version by the tools: why
HISTORY_TAG = TAG_PREFIX + "production-history"  # registered-model tag: JSON list, newest last
ROLLOUT_TAG = TAG_PREFIX + "rollout"  # model-version tag: served | failed
ROLLOUT_MESSAGE_TAG = TAG_PREFIX + "rollout-message"
HISTORY_LIMIT = 20
# ModelDeployment status.phase (the CRD's enum): the operator writes them, the console and the CLI read them.
NO_MODEL, ROLLING_OUT, SERVING, ROLLOUT_FAILED = "NoModel", "RollingOut", "Serving", "RolloutFailed"
# status.rollout.outcome of a ModelDeployment: the rollout of its version.
IN_PROGRESS, SUCCEEDED, FAILED = "InProgress", "Succeeded", "Failed"
TAG_VALUE_LIMIT = 5000  # MLflow's limit on a tag value
ACTIVE_MODEL_METRIC = "visionops_active_model_info"  # the predictor's gauge naming the version it serves
ALIAS_MOVER = "mlflow-alias"  # movedBy of a change made by moving the alias in MLflow
ROLLBACK_MOVER = "rollout-failed"  # movedBy of the operator going back after a failed rollout
_VERSION = re.compile(r"^[1-9][0-9]*$")
_METRIC_LINE = re.compile(r'^' + ACTIVE_MODEL_METRIC + r'\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class ProductionError(ValueError):
    """A request to change production that cannot be done (the message says why)."""


def check_version(version: str | int) -> str:
    """A registered version number as text; :class:`ProductionError` for anything else."""
    text = str(version).strip()
    if not _VERSION.match(text):
        raise ProductionError(f"a model version is a registered version number like 3, got {version!r}")
    return text


def model_uri(model_name: str, version: str) -> str:
    """The pinned URI the InferenceService is pointed at for ``version``."""
    return f"models:/{model_name}/{version}"


def set_version_patch(version: str | int, cause: str = "") -> dict[str, Any]:
    """The merge patch that asks a ModelDeployment for ``version`` (with why, as the change cause)."""
    return {"metadata": {"annotations": {CHANGE_CAUSE: cause[:500] or None}},
            "spec": {"version": check_version(version)}}


def rollback_target(status: Mapping[str, Any]) -> str:
    """The version a rollback goes back to: the one that served before the current one."""
    previous = str(status.get("previousVersion") or "")
    if previous:
        return previous
    serving = status.get("servingVersion") or status.get("desiredVersion")
    for entry in reversed(list(status.get("history") or [])):
        version = str(entry.get("version") or "")
        if version and version != serving and entry.get("outcome") != ROLLOUT_FAILED:
            return version
    raise ProductionError("nothing to roll back to: no version served before the current one")


def history_entry(version: str, moved_by: str, time: str, run_id: str = "", cause: str = "") -> dict[str, str]:
    """One line of the production history (the ModelDeployment's status and the MLflow tag share it)."""
    entry = {"version": version, "time": time, "movedBy": moved_by}
    if run_id:
        entry["runId"] = run_id
    if cause:
        entry["cause"] = cause[:500]
    return entry


def append_history(history: Iterable[Mapping[str, Any]] | None, entry: Mapping[str, Any],
                   limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
    """``history`` with ``entry`` appended, the oldest dropped beyond ``limit``."""
    return [*(dict(h) for h in history or []), dict(entry)][-limit:]


def mark_last(history: Iterable[Mapping[str, Any]] | None, version: str, outcome: str) -> list[dict[str, Any]]:
    """``history`` with the newest entry of ``version`` given its ``outcome`` (Served, RolloutFailed)."""
    out = [dict(h) for h in history or []]
    for entry in reversed(out):
        if entry.get("version") == version:
            entry["outcome"] = outcome
            break
    return out


def history_tag_value(history: Iterable[Mapping[str, Any]]) -> str:
    """The history as the MLflow tag's JSON, oldest entries dropped until it fits a tag value."""
    entries = list(history)
    while True:
        text = json.dumps(entries, separators=(",", ":"))
        if len(text) <= TAG_VALUE_LIMIT or not entries:
            return text
        entries = entries[1:]


def read_history_tag(tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """The history kept on a registered model's tags (``[]`` when none or unreadable)."""
    try:
        value = json.loads(tags.get(HISTORY_TAG) or "[]")
    except ValueError:
        return []
    return [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []


def served_versions(metrics_text: str, model_name: str | None = None) -> list[str]:
    """Versions the predictor's ``/metrics`` says it serves (:data:`ACTIVE_MODEL_METRIC` at 1)."""
    found = []
    for line in metrics_text.splitlines():
        match = _METRIC_LINE.match(line)
        if not match or float(match["value"]) != 1.0:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if model_name is None or labels.get("model_name") == model_name:
            found.append(labels.get("version", ""))
    return found


# ---------------------------------------------------------------- MLflow: the alias and the history tag


def alias_version(client: Client, model_name: str) -> str:
    """The version under the production alias ("" when there is none yet); MLflow errors propagate."""
    current = registry.production_version(client, model_name)
    return str(current.version) if current is not None else ""


def version_run_id(client: Client, model_name: str, version: str) -> str:
    """The MLflow run of ``version``; :class:`ProductionError` when the version does not exist."""
    try:
        return client.get_model_version(model_name, version).run_id or ""
    except Exception as error:
        if getattr(error, "error_code", None) in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise ProductionError(f"version {version} of registered model {model_name!r} does not exist") from error
        raise


def move_alias(client: Client, model_name: str, version: str, reason: str) -> None:
    """Point the production alias at ``version`` (tagging it with why), unless it is there already."""
    if alias_version(client, model_name) != version:
        registry.promote(client, model_name, version, reason[:500] or "set production")


def record_history(client: Client, model_name: str, history: Iterable[Mapping[str, Any]]) -> None:
    """Keep the production history on the registered model (tag :data:`HISTORY_TAG`)."""
    client.set_registered_model_tag(model_name, HISTORY_TAG, history_tag_value(history))


def tag_rollout(client: Client, model_name: str, version: str, outcome: str, message: str = "") -> None:
    """Tag a version with how its rollout went (served | failed) and the message."""
    client.set_model_version_tag(model_name, version, ROLLOUT_TAG, outcome)
    if message:
        client.set_model_version_tag(model_name, version, ROLLOUT_MESSAGE_TAG, message[:TAG_VALUE_LIMIT])
