"""Log one drift check to MLflow: one run with params, metrics, the HTML report and the feature tables."""

from __future__ import annotations

import contextlib
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from visionops.contract import (
    DRIFT_KIND,
    DRIFT_REASON_TAG,
    DRIFT_SCORE_METRIC_PREFIX,
    DRIFT_STATUS_TAG,
    FEATURES_ARTIFACT_DIR,
    IDENTITY_TAGS,
    KIND_TAG,
    NAME_TAG,
    REPORT_ARTIFACT_DIR,
    RESULT_ARTIFACT,
)


class TrackingError(RuntimeError):
    """MLflow cannot be reached or refused a request."""


def check_reachable(uri: str, timeout: float = 5.0, attempts: int = 3) -> None:
    """Fail fast (``TrackingError``) when an HTTP tracking server does not answer ``/health``."""
    if not uri.startswith(("http://", "https://")):
        return
    error: Exception | None = None
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as resp:
                if resp.status == 200:
                    return
                error = TrackingError(f"HTTP {resp.status}")
        except (urllib.error.URLError, OSError) as exc:
            error = exc
        if attempt + 1 < attempts:
            time.sleep(1.0)
    raise TrackingError(f"MLflow tracking server {uri} is unreachable: {error}")


def identity_tags(namespace: str | None, name: str | None, uid: str | None) -> dict[str, str]:
    """The kind tag (drift) plus the DriftCheck identity tags that are set."""
    identity = {"namespace": namespace, "name": name, "uid": uid}
    return {KIND_TAG: DRIFT_KIND, **{IDENTITY_TAGS[key]: value for key, value in identity.items() if value}}


def experiment_id(client: MlflowClient, name: str) -> str:
    """Id of the experiment ``name``, created when missing (tolerates a concurrent creation)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def metrics_of(result: dict[str, Any]) -> dict[str, float]:
    """The numeric metrics of a drift result: share, verdict, counts and one score per feature."""
    metrics: dict[str, float] = {
        "reference_count": float(result["reference_count"]),
        "current_count": float(result["current_count"]),
        "drift_detected": float(bool(result.get("drift_detected"))),
    }
    if result.get("drift_share") is not None:
        metrics["drift_share"] = float(result["drift_share"])
        metrics["drifted_count"] = float(len(result.get("drifted_features", [])))
    for feature, score in (result.get("feature_scores") or {}).items():
        if score.get("score") is not None:
            metrics[DRIFT_SCORE_METRIC_PREFIX + feature] = float(score["score"])
    return metrics


def log_check(
    uri: str,
    experiment: str,
    tags: dict[str, str],
    params: dict[str, Any],
    result: dict[str, Any],
    report: Path | None,
    tables: dict[str, Path],
) -> tuple[str, str | None]:
    """Record one check as a finished MLflow run; return ``(run_id, report artifact URI or None)``."""
    client = MlflowClient(tracking_uri=uri)
    try:
        exp_id = experiment_id(client, experiment)
        run_tags = {**tags, DRIFT_STATUS_TAG: str(result["status"])}
        if tags.get(NAME_TAG):
            run_tags["mlflow.runName"] = f"drift-{tags[NAME_TAG]}"
        run = client.create_run(exp_id, tags=run_tags)
    except MlflowException as exc:
        raise TrackingError(f"MLflow at {uri} refused to create the drift run: {exc.message}") from exc
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, 0) for k, v in metrics_of(result).items()],
            params=[Param(k, str(v)[:6000]) for k, v in params.items() if v is not None],
            tags=[RunTag(DRIFT_REASON_TAG, result["reason"])] if result.get("reason") else [],
        )
        report_uri = None
        if report is not None:
            client.log_artifact(run_id, str(report), REPORT_ARTIFACT_DIR)
            report_uri = f"{run.info.artifact_uri}/{REPORT_ARTIFACT_DIR}/{report.name}"
        for path in tables.values():
            client.log_artifact(run_id, str(path), FEATURES_ARTIFACT_DIR)
        client.log_dict(run_id, result, RESULT_ARTIFACT)
        client.set_terminated(run_id, "FINISHED")
    except Exception as exc:
        with contextlib.suppress(MlflowException):
            client.set_terminated(run_id, "FAILED")
        raise TrackingError(f"logging the drift check to MLflow run {run_id} failed: {exc}") from exc
    return run_id, report_uri
