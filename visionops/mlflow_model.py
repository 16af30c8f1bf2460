"""A training run's ``model/`` folder as an MLflow pyfunc model: ``mlflow.pyfunc.load_model(...).predict`` finds boxes.

:func:`save` adds MLflow's files (``MLmodel``, ``requirements.txt``, ``conda.yaml``, ``python_env.yaml``, the input
example) to a folder that holds ``best.onnx`` and ``class_map.json``. The ``python_function`` flavor's loader is this
module, with no ``data`` path: :func:`_load_pyfunc` gets the model root and opens an ONNX Runtime session on the
``best.onnx`` the predictor serves, so the file is stored once. Detection is :func:`visionops.onnx_detector.detect`,
the predictor's own pre- and post-processing.

- input: a DataFrame with a binary column ``image``, one encoded PNG or JPEG per row (base64 text over JSON, as
  MLflow's scoring server takes binary columns; a base64 ``str`` is also accepted in Python);
- params: ``confidence``, ``iou`` (defaults: ``configs/serving.yaml`` when saved) and ``max_detections``;
- output: a DataFrame, one row per box: ``image`` (row index), ``class_id``, ``class_name``, ``confidence``,
  ``x1``, ``y1``, ``x2``, ``y2`` (pixels of the image as sent, upright).

Loading needs the ``visionops`` package installed (this repository; it is not on PyPI, so ``requirements.txt``
names only the PyPI packages, and the ``MLmodel`` metadata says so).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from visionops.images import check_pixels
from visionops.onnx_detector import MAX_DETECTIONS, check_model, detect

ONNX_FILE = "best.onnx"
CLASS_MAP_FILE = "class_map.json"
LOADER_MODULE = __name__
REQUIREMENTS = ("mlflow", "onnxruntime", "numpy", "pandas", "pillow")
MAX_IMAGE_PIXELS = 8192 * 8192  # per image, as the predictor's default max_image_pixels
OUTPUT_COLUMNS = {"image": "long", "class_id": "long", "class_name": "string", "confidence": "double",
                  "x1": "double", "y1": "double", "x2": "double", "y2": "double"}


def signature(confidence: float, iou: float) -> Any:
    """The model's ``ModelSignature``: binary ``image`` column in, boxes out, detection thresholds as params."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("binary", "image")]),
        outputs=Schema([ColSpec(kind, name) for name, kind in OUTPUT_COLUMNS.items()]),
        params=ParamSchema([ParamSpec("confidence", "double", float(confidence)),
                            ParamSpec("iou", "double", float(iou)),
                            ParamSpec("max_detections", "long", MAX_DETECTIONS)]))


def example_image() -> bytes:
    """A small PNG (gray, a dark square): the input example, a few hundred bytes."""
    pixels = np.full((48, 64, 3), 200, dtype=np.uint8)
    pixels[12:36, 20:44] = 40
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def pip_requirements() -> list[str]:
    """What the loader imports from PyPI, pinned to the versions installed here."""
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def save(model_dir: Path, confidence: float | None = None, iou: float | None = None) -> None:
    """Make ``model_dir`` (holding ``best.onnx`` and ``class_map.json``) an MLflow pyfunc model too; the default
    thresholds are the predictor's (``configs/serving.yaml``). Overwrites MLflow files saved there before."""
    import mlflow.pyfunc
    from mlflow.models import Model

    import visionops
    from visionops import config

    serving = config.load("serving")
    confidence = float(serving["confidence"] if confidence is None else confidence)
    iou = float(serving["iou"] if iou is None else iou)
    with tempfile.TemporaryDirectory(prefix="visionops-mlmodel-") as tmp:
        staged = Path(tmp) / "model"  # save_model wants an empty folder: saved apart, then moved in
        mlflow.pyfunc.save_model(
            str(staged), loader_module=LOADER_MODULE, signature=signature(confidence, iou),
            input_example=pd.DataFrame({"image": [example_image()]}), pip_requirements=pip_requirements(),
            metadata={"visionops_version": visionops.__version__, "onnx_model": ONNX_FILE,
                      "class_map": CLASS_MAP_FILE,
                      "requires": f"the visionops package ({LOADER_MODULE} loads the model; not on PyPI)"})
        for path in staged.iterdir():
            shutil.move(str(path), str(model_dir / path.name))
    meta = Model.load(str(model_dir / "MLmodel"))
    meta.model_size_bytes = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file() and p.name != "MLmodel")
    meta.save(str(model_dir / "MLmodel"))


def read_image(value: Any, index: int) -> Image.Image:
    """One ``image`` cell (encoded bytes, or their base64 text) -> the upright 8-bit image."""
    if isinstance(value, str):
        try:
            value = base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"image {index}: text that is not base64 ({exc})") from exc
    if not isinstance(value, bytes | bytearray):
        raise ValueError(f"image {index}: expected encoded image bytes, got {type(value).__name__}")
    image = Image.open(io.BytesIO(value), formats=("PNG", "JPEG"))
    check_pixels(image.size, MAX_IMAGE_PIXELS)
    image.load()
    ImageOps.exif_transpose(image, in_place=True)
    if image.mode.startswith(("I", "F")):
        raise ValueError(f"image {index} has {image.mode} pixels; send an 8-bit PNG or JPEG")
    return image


class OnnxDetectorModel:
    """The pyfunc implementation: an ONNX Runtime session on ``best.onnx`` and the class names."""

    def __init__(self, model_dir: Path):
        import onnxruntime as ort

        path = model_dir / ONNX_FILE
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        task = self.session.get_modelmeta().custom_metadata_map.get("task")
        self.input_size, channels = check_model(path, [list(i.shape) for i in inputs],
                                                [list(o.shape) for o in outputs], task)
        self.class_names: list[str] = json.loads((model_dir / CLASS_MAP_FILE).read_text())["names"]
        if channels - 4 != len(self.class_names):
            raise ValueError(f"{CLASS_MAP_FILE} names {len(self.class_names)} classes but {path} scores "
                             f"{channels - 4}; the two files come from different runs")
        self._input, self._output = inputs[0].name, outputs[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self._output], {self._input: batch})[0]

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One row per box of every image of ``model_input["image"]`` (see the module docstring)."""
        params = params or {}
        confidence, iou = float(params.get("confidence", 0.25)), float(params.get("iou", 0.45))
        max_detections = int(params.get("max_detections", MAX_DETECTIONS))
        rows: list[tuple[Any, ...]] = []
        for index, value in enumerate(model_input["image"]):
            found = detect(self.run, self.input_size, read_image(value, index), confidence, iou, max_detections)
            rows += [(index, int(c), self.class_names[int(c)], float(s), *map(float, box))
                     for box, s, c in zip(found.boxes, found.scores, found.class_ids, strict=True)]
        frame = pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))
        return frame.astype({"image": "int64", "class_id": "int64", "confidence": "float64", "x1": "float64",
                             "y1": "float64", "x2": "float64", "y2": "float64"})


def _load_pyfunc(data_path: str, model_config: dict[str, Any] | None = None) -> OnnxDetectorModel:
    """MLflow's loader hook: ``data_path`` is the model root (the flavor has no ``data`` folder)."""
    return OnnxDetectorModel(Path(data_path))
