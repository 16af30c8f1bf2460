"""A registered model version, named by a ``models:/`` URI: resolve it, fetch its weights, read its lineage.

``models:/<name>@<alias>`` or ``models:/<name>/<version>``. The weights are the version's own ``best.pt``
(the registry's ``model/`` layout, :mod:`visionops.registry`), downloaded from the version's artifact
location, so they are those of the version reported even if the alias moves meanwhile. Its lineage is
what the training job recorded (:mod:`visionops.lineage`) and the registry copied onto the version: the
dataset source and digest (version tags) and the products (the training run's ``products`` param).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionops.contract import TRACKING_URI_ENV, WEIGHTS_FILE
from visionops.lineage import DIGEST_TAG, SOURCE_TAG

PRODUCTS_PARAM = "products"
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))?$")


class ModelVersionError(RuntimeError):
    """A model version cannot be resolved, fetched or traced to its data (the message says why)."""


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``models:/`` URI: a registered model and either an alias or a version number."""

    name: str
    alias: str | None = None
    version: str | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}" if self.version else f"models:/{self.name}@{self.alias}"


@dataclass(frozen=True)
class ResolvedVersion:
    """A version as the registry answered: its number, training run, tags, artifact source and aliases."""

    ref: ModelRef
    version: str
    run_id: str
    tags: dict[str, str] = field(default_factory=dict)
    source: str = ""
    aliases: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, str]:
        """``{uri, name, version, run_id}`` for result documents."""
        return {"uri": self.ref.uri, "name": self.ref.name, "version": self.version, "run_id": self.run_id}


@dataclass(frozen=True)
class TrainingData:
    """What a version learned from: the dataset URI, its digest and the products."""

    source: str
    digest: str
    products: list[str]


def is_models_uri(text: str) -> bool:
    """True for anything that starts like a registry URI (``models:/``)."""
    return text.strip().startswith("models:/")


def parse_models_uri(uri: str, default_alias: str | None = None) -> ModelRef:
    """``models:/name@alias`` or ``models:/name/<version>``; with ``default_alias`` also a bare ``models:/name``
    (that alias). ``ValueError`` naming the expected forms."""
    match = _MODELS_URI.match(uri.strip())
    bare = bool(match) and not match["alias"] and not match["version"]
    if not match or (bare and default_alias is None):
        forms = "models:/<name>@<alias>, models:/<name>/<version> or models:/<name>" if default_alias else (
            "models:/<name>@<alias> or models:/<name>/<version>")
        raise ValueError(f"model URI {uri!r} must look like {forms}")
    return ModelRef(match["name"], alias=match["alias"] or (None if match["version"] else default_alias),
                    version=match["version"])


def _client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def resolve(tracking_uri: str, ref: ModelRef) -> ResolvedVersion:
    """Ask the registry at ``tracking_uri`` which version ``ref`` names (an alias is read once, here)."""
    from mlflow.exceptions import MlflowException

    if not tracking_uri:
        raise ModelVersionError(f"{ref.uri} needs an MLflow tracking URI (--tracking-uri or {TRACKING_URI_ENV})")
    client = _client(tracking_uri)
    try:
        if ref.version:
            found = client.get_model_version(ref.name, ref.version)
        else:
            found = client.get_model_version_by_alias(ref.name, ref.alias)
    except MlflowException as exc:
        raise ModelVersionError(f"cannot resolve {ref.uri} at {tracking_uri}: {exc.message}") from exc
    return ResolvedVersion(ref, str(found.version), found.run_id or "", dict(found.tags or {}),
                           found.source or "", list(getattr(found, "aliases", None) or []))


def download_weights(tracking_uri: str, version: ResolvedVersion, dst: Path) -> Path:
    """Download the version's ``best.pt`` into ``dst``; return its path."""
    return download_file(tracking_uri, version, WEIGHTS_FILE, dst)


def download_file(tracking_uri: str, version: ResolvedVersion, name: str, dst: Path) -> Path:
    """Download the file ``name`` of the version's folder (e.g. ``class_map.json``) into ``dst``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        location = client.get_model_version_download_uri(version.ref.name, version.version)
        path = mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/{name}", dst_path=str(dst),
                                                   tracking_uri=tracking_uri)
    except (MlflowException, OSError) as exc:
        raise ModelVersionError(f"{version.ref.uri} (version {version.version}) has no readable {name}: "
                                f"{getattr(exc, 'message', exc)}") from exc
    return Path(path)


def training_data(tracking_uri: str, version: ResolvedVersion) -> TrainingData:
    """The data ``version`` was trained on, from its lineage tags and its run's ``products`` param.

    A version registered without lineage tags (trained before dataset versions were recorded, or
    registered by hand) raises :class:`ModelVersionError` naming the missing tags.
    """
    from mlflow.exceptions import MlflowException

    missing = [tag for tag in (SOURCE_TAG, DIGEST_TAG) if not version.tags.get(tag)]
    if missing:
        raise ModelVersionError(
            f"model version {version.ref.name}/{version.version} ({version.ref.uri}) has no lineage tag "
            f"{' or '.join(missing)}: it does not say which data it was trained on (give the reference folder instead)")
    products: list[str] = []
    if version.run_id:
        try:
            params = _client(tracking_uri).get_run(version.run_id).data.params
        except MlflowException as exc:
            raise ModelVersionError(f"cannot read training run {version.run_id} of {version.ref.uri}: "
                                    f"{exc.message}") from exc
        products = [p.strip() for p in params.get(PRODUCTS_PARAM, "").split(",") if p.strip()]
    return TrainingData(version.tags[SOURCE_TAG], version.tags[DIGEST_TAG], products)
