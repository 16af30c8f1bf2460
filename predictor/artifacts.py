"""Where the model comes from: a local dir or an MLflow registry URI, and what it must contain.

Model artifact layout (the ``model/`` folder training logs and the registry registers):
``best.onnx`` (the ultralytics ONNX export the predictor runs) and ``class_map.json``
(``{"names": [...], ...}``) are required; ``data_card.json`` is fetched when present; ``best.pt``
(the PyTorch weights) may be there and is neither used nor downloaded here. ``best_int8.xml``/``.bin``, the
OpenVINO INT8 model, are there when the version passed its INT8 gate (training_job.quantize): fetched, and served
instead of ``best.onnx`` by the OpenVINO runtime (:func:`int8_model`).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from visionops import model_versions
from visionops.contract import CLASS_MAP_FILE, DATA_CARD_FILE, INT8_FILES, INT8_MODEL_FILE, TRACKING_URI_ENV
from visionops.contract import ONNX_FILE as MODEL_FILE
from visionops.model_versions import ModelRef as RegistryRef
from visionops.model_versions import parse_models_uri  # noqa: F401  (re-exported)

REQUIRED_FILES = (MODEL_FILE, CLASS_MAP_FILE)
OPTIONAL_FILES = (DATA_CARD_FILE, *INT8_FILES)
UNKNOWN = "unknown"

# models:/<name>@<alias>  or  models:/<name>/<version>  or  models:/<name> (default alias)


class ModelArtifactError(RuntimeError):
    """The model source is unreachable or does not hold the expected artifact layout."""


class ModelUnavailable(ModelArtifactError):
    """The source names no model version yet (no such registered model, alias or version) or the registry cannot
    be reached: looking again later may find one, unlike a version whose files are wrong."""


@dataclass(frozen=True)
class ModelInfo:
    """Identity of the served model; ``unknown`` where the source does not say."""

    name: str
    version: str = UNKNOWN
    run_id: str = UNKNOWN
    alias: str = UNKNOWN
    source: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "run_id": self.run_id,
                "alias": self.alias, "source": self.source}


def read_class_names(path: Path) -> list[str]:
    """Class names (index = class id) from a ``class_map.json``; precise error when malformed."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelArtifactError(f"{path} is not readable JSON: {exc}") from exc
    names = data.get("names") if isinstance(data, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ModelArtifactError(f"{path} must hold {{\"names\": [\"<product>/<class>\", ...]}} with at least "
                                 f"one non-empty name, got {str(data)[:200]}")
    return names


def validate_model_dir(model_dir: Path) -> tuple[Path, list[str]]:
    """Return ``(ONNX model path, class names)`` of a model dir, or raise naming what is missing."""
    if not model_dir.is_dir():
        raise ModelArtifactError(f"model dir {model_dir} does not exist or is not a directory")
    missing = [name for name in REQUIRED_FILES if not (model_dir / name).is_file()]
    if missing:
        present = sorted(p.name for p in model_dir.iterdir())[:20]
        raise ModelArtifactError(f"model dir {model_dir} lacks {', '.join(missing)} (expected "
                                 f"{' and '.join(REQUIRED_FILES)}; found {present})")
    return model_dir / MODEL_FILE, read_class_names(model_dir / CLASS_MAP_FILE)


def int8_model(model_dir: Path) -> Path | None:
    """The INT8 model's ``.xml`` when the model dir holds both of its files (the version passed its gate)."""
    if all((model_dir / name).is_file() for name in INT8_FILES):
        return model_dir / INT8_MODEL_FILE
    return None


def fetch_from_registry(ref: RegistryRef, tracking_uri: str | None, dst: Path | None = None) -> tuple[Path, ModelInfo]:
    """Download what the predictor needs of a registered model version (``best.onnx``, ``class_map.json``,
    ``data_card.json`` if present); return the local dir and the version's identity."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if not tracking_uri:
        raise ModelArtifactError(f"{ref.uri} needs an MLflow tracking URI (--tracking-uri or {TRACKING_URI_ENV})")
    try:
        version = model_versions.resolve(tracking_uri, ref)  # no such version or alias (yet): wait for one
    except model_versions.ModelVersionError as exc:
        said = getattr(exc.__cause__, "message", None) or str(exc)
        raise ModelUnavailable(f"cannot fetch {ref.uri} from {tracking_uri}: {said}") from exc
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        # the version's own artifact location: the files are those of the version reported even if the
        # alias moves meanwhile, and no models:/ URI needs a separately configured registry URI
        version_uri = client.get_model_version_download_uri(ref.name, version.version)
        listing = mlflow.artifacts.list_artifacts(artifact_uri=version_uri, tracking_uri=tracking_uri)
        present = sorted(f.path.rsplit("/", 1)[-1] for f in listing if not f.is_dir)
        missing = [name for name in REQUIRED_FILES if name not in present]
        if missing:
            raise ModelArtifactError(f"{ref.uri} (version {version.version}, source {version.source}) lacks "
                                     f"{', '.join(missing)} (expected {' and '.join(REQUIRED_FILES)}; found {present})")
        dst = dst or Path(tempfile.mkdtemp(prefix="visionops-model-"))
        for name in (*REQUIRED_FILES, *(n for n in OPTIONAL_FILES if n in present)):
            mlflow.artifacts.download_artifacts(artifact_uri=f"{version_uri}/{name}", dst_path=str(dst),
                                                tracking_uri=tracking_uri)
    except MlflowException as exc:
        raise ModelArtifactError(f"cannot fetch {ref.uri} from {tracking_uri}: {exc.message}") from exc
    alias = ref.alias or (version.aliases[0] if version.aliases else UNKNOWN)
    info = ModelInfo(name=ref.name, version=str(version.version), run_id=version.run_id or UNKNOWN,
                     alias=alias, source=ref.uri)
    return dst, info
