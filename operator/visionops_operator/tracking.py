"""The operator's reads of MLflow: find a TrainingRun's run, its epoch progress, its final result.

Through :class:`visionops.mlflow_rest.MlflowRestClient` (the REST API alone, no ``mlflow`` import); the
registration and the promotion gate live in :mod:`visionops.registry` (shared with the CLI).
"""

from __future__ import annotations

from typing import Any

from visionops.contract import EPOCH_METRIC, SUMMARY_METRICS, UID_TAG, TrainingResult
from visionops.mlflow_rest import MlflowRestClient


def client(uri: str) -> MlflowRestClient:
    """A client for ``uri`` (the operator never relies on an ambient tracking URI)."""
    return MlflowRestClient(uri)


def find_run_id(mlflow: MlflowRestClient, uid: str) -> str | None:
    """Newest run tagged with this custom resource's uid, across experiments."""
    experiments = [e.experiment_id for e in mlflow.search_experiments()]
    if not experiments:
        return None
    runs = mlflow.search_runs(
        experiments, filter_string=f"tags.`{UID_TAG}` = '{uid}'", order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def epoch_progress(mlflow: MlflowRestClient, run_id: str) -> tuple[int | None, int | None]:
    """(epochs completed, epochs planned) as the training job logs them while it runs."""
    run = mlflow.get_run(run_id)
    epoch = run.data.metrics.get(EPOCH_METRIC)
    planned = run.data.params.get("epochs")
    return (
        int(epoch) if epoch is not None else None,
        int(planned) if planned not in (None, "") else None,
    )


def result_from_run(mlflow: MlflowRestClient, run_id: str) -> dict[str, Any]:
    """A training result rebuilt from MLflow when the pod's termination message is gone (its fields, as
    :func:`.jobs.pod_result` gives them)."""
    run = mlflow.get_run(run_id)
    metrics = run.data.metrics
    scores = {k: metrics[k] for k in SUMMARY_METRICS if k in metrics}
    return TrainingResult(run_id=run_id, status=run.info.status, metrics=scores).to_dict()

