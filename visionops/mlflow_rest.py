"""A light MLflow client over the REST API (``requests`` only): the subset of ``MlflowClient`` that
:mod:`visionops.registry` and the operator use, with the same method names and entity attributes.

Importing ``mlflow`` costs ~150 MiB and seconds (it loads pandas, numpy, SQLAlchemy...); a control plane
that makes a handful of calls per TrainingRun does not need it. Errors raise :class:`MlflowRestError`
with MLflow's ``error_code`` and ``message``, as ``MlflowException`` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

TIMEOUT_SECONDS = 20.0


# MLflow's error codes for the answers its auth app gives as plain text
_STATUS_CODES = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}


class MlflowRestError(Exception):
    """An MLflow REST call failed: ``error_code`` (e.g. RESOURCE_DOES_NOT_EXIST) and ``message``."""

    def __init__(self, error_code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{error_code}: {message}")
        self.error_code, self.message, self.status = error_code, message, status


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    experiment_id: str
    status: str
    artifact_uri: str
    start_time: int | None = None
    end_time: int | None = None


@dataclass(frozen=True)
class RunData:
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    info: RunInfo
    data: RunData


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    run_id: str
    source: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FileInfo:
    path: str
    is_dir: bool
    file_size: int | None = None


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str


def _pairs(items: list[Mapping[str, Any]] | None) -> dict[str, Any]:
    return {item["key"]: item.get("value") for item in items or []}


def _run(raw: Mapping[str, Any]) -> Run:
    info, data = raw.get("info") or {}, raw.get("data") or {}
    return Run(
        RunInfo(run_id=info.get("run_id") or info.get("run_uuid", ""), experiment_id=info.get("experiment_id", ""),
                status=info.get("status", ""), artifact_uri=info.get("artifact_uri", ""),
                start_time=info.get("start_time"), end_time=info.get("end_time")),
        RunData(metrics={k: float(v) for k, v in _pairs(data.get("metrics")).items()},
                params=_pairs(data.get("params")), tags=_pairs(data.get("tags"))),
    )


def _version(raw: Mapping[str, Any]) -> ModelVersion:
    return ModelVersion(name=raw.get("name", ""), version=str(raw.get("version", "")), run_id=raw.get("run_id", ""),
                        source=raw.get("source", ""), tags=_pairs(raw.get("tags")),
                        aliases=list(raw.get("aliases") or []))


class MlflowRestClient:
    """MLflow tracking and registry calls through ``<uri>/api/2.0/mlflow``; credentials as MLflow reads them
    (``MLFLOW_TRACKING_TOKEN``, or ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD``)."""

    def __init__(self, tracking_uri: str, timeout: float = TIMEOUT_SECONDS,
                 environ: Mapping[str, str] | None = None) -> None:
        if not tracking_uri.startswith(("http://", "https://")):
            raise ValueError(f"the REST client needs an http(s) tracking URI, got {tracking_uri!r}")
        env = os.environ if environ is None else environ
        self.uri, self.timeout = tracking_uri.rstrip("/"), timeout
        self.session = requests.Session()
        if env.get("MLFLOW_TRACKING_TOKEN"):
            self.session.headers["Authorization"] = f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"
        elif env.get("MLFLOW_TRACKING_USERNAME"):
            self.session.auth = (env["MLFLOW_TRACKING_USERNAME"], env.get("MLFLOW_TRACKING_PASSWORD", ""))

    def _call(self, method: str, endpoint: str, **kwargs: Any) -> requests.Response:
        url = f"{self.uri}/{endpoint.lstrip('/')}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise MlflowRestError("TEMPORARILY_UNAVAILABLE", f"{method} {url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            code = body.get("error_code") or _STATUS_CODES.get(response.status_code) or (
                "INTERNAL_ERROR" if response.status_code >= 500 else "BAD_REQUEST")
            raise MlflowRestError(code, body.get("message") or response.text[:300], response.status_code)
        return response

    def _api(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._call(method, f"api/2.0/mlflow/{path}", **kwargs).json()

    def _pages(self, method: str, path: str, key: str, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        token = None
        while True:
            page = dict(request, page_token=token) if token else request
            body = self._api(method, path, **({"params": page} if method == "GET" else {"json": page}))
            yield from body.get(key) or []
            token = body.get("next_page_token")
            if not token:
                return

    # tracking
    def get_run(self, run_id: str) -> Run:
        return _run(self._api("GET", "runs/get", params={"run_id": run_id})["run"])

    def search_experiments(self) -> list[Experiment]:
        return [Experiment(e["experiment_id"], e.get("name", ""))
                for e in self._pages("POST", "experiments/search", "experiments", {"max_results": 1000})]

    def search_runs(self, experiment_ids: list[str], filter_string: str = "", order_by: list[str] | None = None,
                    max_results: int = 1000) -> list[Run]:
        body = self._api("POST", "runs/search", json={"experiment_ids": experiment_ids, "filter": filter_string,
                                                      "order_by": order_by or [], "max_results": max_results})
        return [_run(r) for r in body.get("runs") or []]

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        params = {"run_id": run_id, **({"path": path} if path else {})}
        files = self._api("GET", "artifacts/list", params=params).get("files") or []
        return [FileInfo(f["path"], bool(f.get("is_dir")), f.get("file_size")) for f in files]

    def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str:
        """One artifact file, through the server (``/get-artifact``), into ``dst_path``; its local path."""
        response = self._call("GET", "get-artifact", params={"run_uuid": run_id, "path": path})
        target = Path(dst_path or ".") / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(response.content)
        return str(target)

    # registry
    def get_registered_model(self, name: str) -> dict[str, Any]:
        return self._api("GET", "registered-models/get", params={"name": name})["registered_model"]

    def create_registered_model(self, name: str, description: str = "") -> dict[str, Any]:
        body = {"name": name, "description": description}
        return self._api("POST", "registered-models/create", json=body)["registered_model"]

    def search_model_versions(self, filter_string: str) -> list[ModelVersion]:
        versions = self._pages("GET", "model-versions/search", "model_versions",
                               {"filter": filter_string, "max_results": 10000})
        return [_version(v) for v in versions]

    def create_model_version(self, name: str, source: str, run_id: str, tags: Mapping[str, str] | None = None,
                             description: str = "") -> ModelVersion:
        body = {"name": name, "source": source, "run_id": run_id, "description": description,
                "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
        return _version(self._api("POST", "model-versions/create", json=body)["model_version"])

    def get_model_version(self, name: str, version: str) -> ModelVersion:
        body = self._api("GET", "model-versions/get", params={"name": name, "version": str(version)})
        return _version(body["model_version"])

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        body = self._api("GET", "registered-models/alias", params={"name": name, "alias": alias})
        return _version(body["model_version"])

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self._api("POST", "registered-models/alias", json={"name": name, "alias": alias, "version": str(version)})

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        self._api("POST", "registered-models/set-tag", json={"name": name, "key": key, "value": str(value)})

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._api("POST", "model-versions/set-tag",
                  json={"name": name, "version": str(version), "key": key, "value": str(value)})
