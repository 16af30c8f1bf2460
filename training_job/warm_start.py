"""Warm start (``--init-from``, a TrainingRun's ``spec.initFrom``): the weights a run starts from.

The source is a registered model version (``models:/<name>/<N>`` or ``models:/<name>@<alias>``, fetched
from MLflow) or a weights file (``best.pt``, e.g. on the dataset volume); never a model hub. How much
transfers depends on the class maps:

- the same classes in the same order: everything, the class head included (``full``): the run
  continues from what that model knows;
- other classes (added, removed or reordered): the backbone, the neck and the box regression transfer,
  the class-prediction layers start fresh (``backbone``), so no class inherits another one's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionops.contract import CLASS_MAP_FILE

FULL, BACKBONE = "full", "backbone"


class WarmStartError(ValueError):
    """The ``--init-from`` source cannot be used (the message says which and why)."""


@dataclass(frozen=True)
class InitWeights:
    """Resolved starting weights: what was asked, the local file, its class names, its model version."""

    source: str
    weights: Path
    names: list[str]
    version: str | None = None


def transfer_mode(source_names: list[str], target_names: list[str]) -> str:
    """``full`` when both class maps are equal (same names, same order), else ``backbone``."""
    return FULL if list(source_names) == list(target_names) else BACKBONE


def resolve(source: str, tracking_uri: str, dst: Path) -> InitWeights:
    """Fetch or check the starting weights; :class:`WarmStartError` with one line when they are unusable."""
    if source.startswith("models:"):
        return _from_registry(source, tracking_uri, dst)
    path = Path(source)
    if not path.is_file():
        raise WarmStartError(f"init-from {source}: no such weights file (expected a .pt file or models:/<name>/<N> "
                             "or models:/<name>@<alias>)")
    if path.suffix != ".pt":
        raise WarmStartError(f"init-from {source}: not a .pt weights file")
    return InitWeights(source, path, _names_of(path, path.with_name(CLASS_MAP_FILE)))


def _from_registry(source: str, tracking_uri: str, dst: Path) -> InitWeights:
    from visionops import model_versions as mv

    try:
        ref = mv.parse_models_uri(source)
    except ValueError as error:
        raise WarmStartError(f"init-from {source}: expected models:/<name>/<N> or models:/<name>@<alias>") from error
    try:
        version = mv.resolve(tracking_uri, ref)
        weights = mv.download_weights(tracking_uri, version, dst)
        class_map = mv.download_file(tracking_uri, version, CLASS_MAP_FILE, dst)
    except mv.ModelVersionError as error:
        raise WarmStartError(f"init-from {source}: {str(error).splitlines()[0][:300]}") from error
    return InitWeights(source, weights, _names_of(weights, class_map), version.version)


def _names_of(weights: Path, class_map: Path) -> list[str]:
    """The class names the weights predict: their ``class_map.json`` beside them, else the checkpoint's own."""
    if class_map.is_file():
        from visionops.data.classmap import load_class_map

        return load_class_map(class_map).names
    from ultralytics import YOLO

    try:
        names = YOLO(str(weights)).names
    except Exception as error:  # a corrupt or foreign file: one line, not ultralytics' traceback
        raise WarmStartError(f"init-from {weights}: not a readable YOLO checkpoint ({error})") from error
    return [names[i] for i in sorted(names)]


def model(architecture: str, init: InitWeights | None, target_names: list[str]) -> tuple[Any, str | None]:
    """The ultralytics model to train and the transfer mode (``None``: from scratch)."""
    from ultralytics import YOLO

    if init is None:
        return YOLO(architecture), None
    mode = transfer_mode(init.names, target_names)
    if mode == FULL:
        return YOLO(str(init.weights)), mode
    # Built from the architecture (80 classes), then loaded by name and shape: the class convs never match.
    return YOLO(architecture).load(str(init.weights)), mode
