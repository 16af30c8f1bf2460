"""What the production model sees, per image: its backbone embedding and its predictions.

One forward pass per batch gives both. The embedding is the global-average-pooled output of the last
backbone layer (SPPF in YOLOv8: 256 values for YOLOv8n), the same vector ultralytics' ``embed()`` returns
for that layer, captured by a forward hook while the model predicts. The prediction features:

- ``pred_confidence_max``: the highest box confidence on the image (0 when no box reaches
  :data:`CONFIDENCE_FLOOR`), a continuous view of how sure the model is;
- ``pred_detections``: boxes at or above the serving confidence (``configs/serving.yaml``), what the
  predictor would return;
- ``pred_class``: the class of the most confident of those boxes, ``none`` without one (categorical:
  the class mix).

Images are decoded one at a time (after the header check against ``max_pixels``), shrunk to at most the
inference size on their longer side and run in batches, so memory stays at one decoded image plus one
batch of small ones. Weights are only ever a local file (from MLflow or a volume): ultralytics runs offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from visionops.images import open_image
from visionops.progress import bar

PREDICTION_FEATURES: tuple[str, ...] = ("pred_confidence_max", "pred_detections", "pred_class")
CATEGORICAL_FEATURES: frozenset[str] = frozenset({"pred_class"})
EMBEDDING = "backbone_embedding"
NO_DETECTION = "none"
CONFIDENCE_FLOOR = 0.01
MAX_DETECTIONS = 100
DEFAULT_IMGSZ = 640


@dataclass(frozen=True)
class ModelSettings:
    """How the model is run: inference size (``None``: the model's own), batch, device, thresholds."""

    imgsz: int | None = None
    batch: int = 16
    device: str = "cpu"
    confidence: float = 0.25
    iou: float = 0.45


@dataclass(frozen=True)
class ModelFeatures:
    """Prediction features (``image`` + :data:`PREDICTION_FEATURES`) and embeddings, row for row."""

    table: pd.DataFrame
    embeddings: np.ndarray


@dataclass(frozen=True)
class ImageModel:
    """A loaded detection model whose backbone output is pooled into ``pooled`` on every forward pass."""

    yolo: Any
    layer: int
    pooled: list[np.ndarray]


def load_model(weights: Path) -> ImageModel:
    """An ultralytics YOLO detection model from a local weights file (offline; never a hub)."""
    from visionops import offline

    offline.configure()
    from ultralytics import YOLO

    if not Path(weights).is_file():
        raise FileNotFoundError(f"model weights {weights} do not exist or are not a file")
    yolo = YOLO(str(weights))
    if yolo.task != "detect":
        raise ValueError(f"model {weights} is a {yolo.task!r} model; the drift job needs a detection model")
    layer = backbone_layer(yolo)
    pooled: list[np.ndarray] = []

    def keep_pooled(_module: Any, _inputs: Any, output: Any) -> None:
        pooled.append(output.detach().double().mean(dim=(2, 3)).cpu().numpy())  # summed in float64

    # Registered before the first prediction: ultralytics deep-copies the network into its predictor and
    # the copy keeps this hook (deepcopy shares functions), so every forward pass lands in ``pooled``.
    yolo.model.model[layer].register_forward_hook(keep_pooled)
    return ImageModel(yolo, layer, pooled)


def model_imgsz(model: Any) -> int:
    """The size the model was trained at (its checkpoint's ``imgsz``), else :data:`DEFAULT_IMGSZ`."""
    size = model.overrides.get("imgsz") or DEFAULT_IMGSZ
    return int(max(size) if isinstance(size, list | tuple) else size)


def backbone_layer(model: Any) -> int:
    """Index of the last backbone layer (from the model's YAML), else ultralytics' ``embed()`` default."""
    network = model.model
    backbone = (getattr(network, "yaml", None) or {}).get("backbone")
    return len(backbone) - 1 if backbone else len(network.model) - 2


def model_input(path: Path, max_pixels: int, side: int) -> np.ndarray:
    """An image as the model gets it: a BGR array (ultralytics' order) whose longer side is at most ``side``."""
    with open_image(path, max_pixels) as img:
        image: Image.Image = img
        image.draft("RGB", (side, side))  # JPEG only: decode at a reduced scale
        image = image.convert("RGB")
        if max(image.size) > side:
            image.thumbnail((side, side), Image.Resampling.BILINEAR)
        return np.ascontiguousarray(np.asarray(image)[:, :, ::-1])


def prediction_row(confidences: np.ndarray, classes: np.ndarray, names: dict[int, str],
                   confidence: float) -> dict[str, Any]:
    """The prediction features of one image from its boxes' confidences and class ids."""
    kept = confidences >= confidence
    top = int(np.argmax(np.where(kept, confidences, -1.0))) if kept.any() else -1
    return {
        "pred_confidence_max": float(confidences.max()) if confidences.size else 0.0,
        "pred_detections": int(kept.sum()),
        "pred_class": names.get(int(classes[top]), str(int(classes[top]))) if top >= 0 else NO_DETECTION,
    }


def model_features(model: ImageModel, paths: Sequence[Path], settings: ModelSettings, max_pixels: int,
                   desc: str = "model") -> ModelFeatures:
    """Embeddings and prediction features of ``paths`` (all must be readable: the image pass ran first)."""
    imgsz = settings.imgsz or model_imgsz(model.yolo)
    rows: list[dict[str, Any]] = []
    vectors: list[np.ndarray] = []
    batches = [list(paths[i:i + settings.batch]) for i in range(0, len(paths), settings.batch)]
    for batch in bar(batches, total=len(batches), desc=desc, unit="batch"):
        model.pooled.clear()
        results = model.yolo.predict([model_input(p, max_pixels, imgsz) for p in batch], imgsz=imgsz,
                                     conf=CONFIDENCE_FLOOR, iou=settings.iou, max_det=MAX_DETECTIONS,
                                     device=settings.device, verbose=False)
        if not model.pooled or len(model.pooled[-1]) != len(batch):
            raise RuntimeError(f"the model's backbone layer {model.layer} gave no embedding for a batch of "
                               f"{len(batch)} images")
        vectors.append(model.pooled[-1])  # the last forward pass is this batch's (a GPU warm-up runs first)
        for path, result in zip(batch, results, strict=True):
            boxes = result.boxes
            rows.append({"image": str(path), **prediction_row(boxes.conf.cpu().numpy(), boxes.cls.cpu().numpy(),
                                                              result.names, settings.confidence)})
    model.pooled.clear()
    table = pd.DataFrame(rows, columns=["image", *PREDICTION_FEATURES])
    table = table.astype({"pred_confidence_max": "float64", "pred_detections": "int64", "pred_class": "object"})
    width = vectors[0].shape[1] if vectors else 0
    embeddings = np.concatenate(vectors) if vectors else np.zeros((0, width))
    return ModelFeatures(table, embeddings)
