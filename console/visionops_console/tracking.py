"""The console's MLflow side: training runs (as docs/mlflow-layout.md lays them out), metric histories, the
artifacts the pages show, and the model registry. ``MlflowClient`` only; names come from the shared library
(:mod:`visionops.registry`, :mod:`visionops.analysis`, :mod:`visionops.lineage`).

Artifacts of finished runs never change, so files are downloaded once into a cache folder; a failing or absent
server becomes :class:`TrackingUnavailable` with a sentence a person can read.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionops import analysis, registry
from visionops.contract import (
    DATASET_ARTIFACT_DIR,
    DIGEST_TAG,
    KIND_TAG,
    MAP50,
    MAP50_95,
    NAME_TAG,
    PER_CLASS_ARTIFACT,
    PRECISION,
    PROGRESS_TAG,
    PROMOTION_REASON_TAG,
    PROMOTION_TAG,
    RECALL,
    UID_TAG,
)
from visionops.contract import PLOTS_ARTIFACT_DIR as PLOTS_DIR

SUMMARY = (PRECISION, RECALL, MAP50, MAP50_95)  # in the order the pages show them
LOSSES = ("train/box_loss", "train/cls_loss", "train/dfl_loss", "val/box_loss", "val/cls_loss", "val/dfl_loss")
# Artifact folders the console serves (images only): the Job's plots, the analysis, the dataset samples.
SERVED_DIRS = (PLOTS_DIR, analysis.ARTIFACT_DIR, DATASET_ARTIFACT_DIR)
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
_RUN_ID = re.compile(r"^[0-9a-f]{8,64}$")
PROBE_SECONDS = 5.0
# The plots a person looks at first, in this order; the others follow by name.
PLOT_ORDER = ("results.png", "BoxPR_curve.png", "confusion_matrix_normalized.png", "confusion_matrix.png",
              "BoxF1_curve.png", "BoxP_curve.png", "BoxR_curve.png", "labels.jpg")


class TrackingUnavailable(RuntimeError):
    """MLflow is not configured or does not answer; the message says which."""


@dataclass(frozen=True)
class RunSummary:
    """One training run as the lists show it."""

    run_id: str
    name: str  # the TrainingRun's name (tag), else MLflow's run name
    status: str
    start_time: int | None
    end_time: int | None
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    experiment_id: str = ""

    @property
    def training_run(self) -> str:
        return self.tags.get(NAME_TAG, "")

    @property
    def progress(self) -> str:
        return self.tags.get(PROGRESS_TAG, "")


def valid_run_id(run_id: str) -> bool:
    return bool(_RUN_ID.match(run_id or ""))


def order_plots(names: Iterable[str]) -> list[str]:
    """Plot file names, the most telling first (:data:`PLOT_ORDER`), then the rest by name."""
    names = list(names)
    rank = {name: i for i, name in enumerate(PLOT_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def history_series(points: dict[str, list[tuple[int, float]]], keys: Iterable[str]) -> list[dict[str, Any]]:
    """``[{"name", "points": [[step, value], ...]}]`` for the keys that have points (the charts' input)."""
    return [{"name": key, "points": [[s, v] for s, v in points[key]]} for key in keys if points.get(key)]


class Tracking:
    """Reads of one MLflow server, safe to share between request threads."""

    def __init__(self, uri: str, cache_dir: Path | None = None, timeout: float = 10.0):
        self.uri = uri
        self.timeout = timeout
        self._client_obj: Any = None
        self._lock = threading.Lock()
        self._cache_dir = cache_dir or Path(tempfile.mkdtemp(prefix="visionops-console-"))
        self._probe: tuple[float, str | None] = (0.0, None)
        self._json: dict[tuple[str, str], Any] = {}
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mlflow")

    @property
    def configured(self) -> bool:
        return bool(self.uri)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self._cache_dir, ignore_errors=True)

    def _client(self) -> Any:
        if not self.uri:
            raise TrackingUnavailable("no MLflow tracking URI is configured (--mlflow-uri)")
        with self._lock:
            if self._client_obj is None:
                import os

                from mlflow.tracking import MlflowClient

                # a dead server must not hold a page for minutes: fail fast (MLflow retries 7 times by default)
                os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
                os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(self.timeout)))
                self._client_obj = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
            return self._client_obj

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except MlflowException as exc:
            text = str(exc)
            if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")):
                raise
            if "Max retries" in text or "Connection" in text or "timed out" in text.lower():
                with self._lock:
                    self._probe = (time.monotonic(), f"MLflow at {self.uri} does not answer")
                raise TrackingUnavailable(f"MLflow at {self.uri} does not answer: {text.splitlines()[0][:300]}") \
                    from None
            raise

    def unavailable(self) -> str | None:
        """``None`` when MLflow answers, else why not; cached a few seconds."""
        if not self.uri:
            return "no MLflow tracking URI is configured (--mlflow-uri)"
        with self._lock:
            when, reason = self._probe
        if time.monotonic() - when < PROBE_SECONDS:
            return reason
        try:
            self._call(self._client().search_experiments, max_results=1)
            reason = None
        except TrackingUnavailable as exc:
            reason = str(exc)
        except Exception as exc:
            reason = f"MLflow at {self.uri} answered {type(exc).__name__}: {str(exc)[:300]}"
        with self._lock:
            self._probe = (time.monotonic(), reason)
        return reason

    # runs ----------------------------------------------------------------------------------------------------

    def _experiment_ids(self) -> list[str]:
        return [e.experiment_id for e in self._call(self._client().search_experiments)]

    def training_runs(self, max_results: int = 100, run_ids: list[str] | None = None) -> list[RunSummary]:
        """Training runs, newest first (all experiments); only ``run_ids`` when given."""
        experiments = self._experiment_ids()
        if not experiments:
            return []
        filter_string = f"tags.`{KIND_TAG}` = 'training'"
        if run_ids is not None:
            ids = [r for r in run_ids if valid_run_id(r)]
            if not ids:
                return []
            filter_string = "attributes.run_id IN (" + ", ".join(f"'{r}'" for r in ids) + ")"
        runs = self._call(self._client().search_runs, experiments, filter_string=filter_string,
                          max_results=max_results, order_by=["attributes.start_time DESC"])
        return [self._summary(run) for run in runs]

    @staticmethod
    def _summary(run: Any) -> RunSummary:
        tags = dict(run.data.tags)
        return RunSummary(
            run_id=run.info.run_id, name=tags.get(NAME_TAG) or run.info.run_name or run.info.run_id[:8],
            status=run.info.status, start_time=run.info.start_time, end_time=run.info.end_time,
            metrics=dict(run.data.metrics), params=dict(run.data.params), tags=tags,
            experiment_id=run.info.experiment_id,
        )

    def run(self, run_id: str) -> RunSummary | None:
        from mlflow.exceptions import MlflowException

        if not valid_run_id(run_id):
            return None
        try:
            return self._summary(self._call(self._client().get_run, run_id))
        except MlflowException:
            return None

    def find_run_for_uid(self, uid: str) -> str | None:
        """Newest run tagged with a custom resource's uid (the TrainingRun's run before its status names it)."""
        experiments = self._experiment_ids()
        if not experiments or not re.fullmatch(r"[0-9a-f-]{8,64}", uid or ""):
            return None
        runs = self._call(self._client().search_runs, experiments, filter_string=f"tags.`{UID_TAG}` = '{uid}'",
                          max_results=1, order_by=["attributes.start_time DESC"])
        return runs[0].info.run_id if runs else None

    def histories(self, run_id: str, keys: Iterable[str]) -> dict[str, list[tuple[int, float]]]:
        """Metric history per key, ``[(step, value)]`` sorted by step (several keys fetched in parallel)."""
        keys = list(keys)
        client = self._client()

        def one(key: str) -> list[tuple[int, float]]:
            metrics = self._call(client.get_metric_history, run_id, key)
            by_step = {m.step: m.value for m in sorted(metrics, key=lambda m: m.timestamp)}
            return sorted(by_step.items())

        return dict(zip(keys, self._pool.map(one, keys), strict=True))

    # artifacts -----------------------------------------------------------------------------------------------

    def list_artifacts(self, run_id: str, path: str) -> list[str]:
        """File names directly under ``path`` of the run's artifacts (empty when there is none)."""
        from mlflow.exceptions import MlflowException

        try:
            items = self._call(self._client().list_artifacts, run_id, path)
        except MlflowException:
            return []
        return sorted(Path(a.path).name for a in items if not a.is_dir)

    def artifact_file(self, run_id: str, path: str) -> Path | None:
        """A local copy of one artifact file (downloaded once), or ``None`` when the run has no such file."""
        from mlflow.exceptions import MlflowException

        if not valid_run_id(run_id) or ".." in Path(path).parts or path.startswith("/"):
            return None
        target = self._cache_dir / run_id / path
        if target.is_file():
            return target
        staging = Path(tempfile.mkdtemp(dir=self._cache_dir, prefix=".dl-"))
        try:
            local = Path(self._call(self._client().download_artifacts, run_id, path, str(staging)))
            if not local.is_file():
                return None
            target.parent.mkdir(parents=True, exist_ok=True)
            local.replace(target)
            return target
        except (MlflowException, OSError):
            return None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def json_artifact(self, run_id: str, path: str, finished: bool) -> Any:
        """A JSON artifact parsed, or ``None``; kept in memory once the run is finished."""
        key = (run_id, path)
        if key in self._json:
            return self._json[key]
        local = self.artifact_file(run_id, path)
        if local is None:
            return None
        try:
            value = json.loads(local.read_text())
        except (OSError, ValueError):
            value = None
        if finished:
            self._json[key] = value
        else:
            local.unlink(missing_ok=True)
        return value

    def per_class_ap50(self, run: RunSummary) -> dict[str, float]:
        """AP50 per class of a run: ``per_class_ap50.json``, else the ``ap50/<product>.<class>`` metrics."""
        data = self.json_artifact(run.run_id, PER_CLASS_ARTIFACT, run.status == "FINISHED")
        if isinstance(data, dict):
            return {str(k): float(v) for k, v in data.items()}
        return registry.per_class_from_metrics(run.metrics)

    def analysis_report(self, run: RunSummary) -> dict[str, Any] | None:
        data = self.json_artifact(run.run_id, f"{analysis.ARTIFACT_DIR}/{analysis.REPORT_JSON}",
                                  run.status == "FINISHED")
        return data if isinstance(data, dict) else None

    # registry ------------------------------------------------------------------------------------------------

    def registered_models(self) -> list[str]:
        return sorted(m.name for m in self._call(self._client().search_registered_models))

    def model_versions(self, name: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """Versions of ``name`` newest first, each with its aliases, run metrics, tags; and ``{alias: version}``."""
        from mlflow.exceptions import MlflowException

        if not name or "'" in name:
            return [], {}
        client = self._client()
        try:
            model = self._call(client.get_registered_model, name)
        except MlflowException:
            return [], {}
        aliases = dict(model.aliases or {})
        versions = list(self._call(client.search_model_versions, f"name='{name}'"))
        runs = {r.run_id: r for r in self.training_runs(max_results=1000,
                                                        run_ids=sorted({v.run_id for v in versions if v.run_id}))}
        by_version: dict[str, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(str(version), []).append(alias)
        out = []
        for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
            run = runs.get(v.run_id)
            tags = dict(v.tags or {})
            out.append({
                "version": str(v.version), "aliases": sorted(by_version.get(str(v.version), [])),
                "run_id": v.run_id or "", "created": v.creation_timestamp, "status": v.status,
                "metrics": {k: run.metrics[k] for k in SUMMARY if run and k in run.metrics},
                "training_run": tags.get(NAME_TAG) or (run.training_run if run else ""),
                "promotion": tags.get(PROMOTION_TAG, ""), "promotion_reason": tags.get(PROMOTION_REASON_TAG, ""),
                "dataset_digest": tags.get(DIGEST_TAG, ""),
            })
        return out, {alias: str(version) for alias, version in aliases.items()}

    def drift_report(self, run_id: str) -> Path | None:
        """The Evidently HTML report of a drift check run (``report/*.html``)."""
        names = [n for n in self.list_artifacts(run_id, "report") if n.endswith(".html")]
        return self.artifact_file(run_id, f"report/{names[0]}") if names else None
