"""YOLO detection on an ONNX export, run by ONNX Runtime or OpenVINO (:mod:`predictor.runtimes`).

The pre- and post-processing (letterbox, decode, class-wise NMS, boxes back to the image) is
:mod:`visionops.onnx_detector`, shared with the MLflow pyfunc model (:mod:`visionops.mlflow_model`); its names
are re-exported here. The served detections match what the training job's ``best.pt`` gives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from predictor.artifacts import ModelArtifactError
from predictor.runtimes import Session, open_session
from visionops.onnx_detector import (
    BAND_BYTES,
    MAX_DETECTIONS,
    MAX_NMS_CANDIDATES,
    PAD_VALUE,
    Detections,
    Letterbox,
    ModelShapeError,
    check_model,
    decode,
    detect,
    letterbox_geometry,
    nms,
    preprocess,
    resize_bilinear,
    to_image,
    xywh_to_xyxy,
)

__all__ = [
    "BAND_BYTES", "MAX_DETECTIONS", "MAX_NMS_CANDIDATES", "PAD_VALUE", "Detections", "Letterbox", "YoloOnnx",
    "decode", "letterbox_geometry", "nms", "preprocess", "resize_bilinear", "to_image", "xywh_to_xyxy",
]


class YoloOnnx:
    """An ultralytics YOLO detect model exported to ONNX, run on the CPU by ``runtime``
    (:data:`predictor.runtimes.RUNTIMES`) with ``threads`` threads per inference (0: the container's CPU limit).

    The constructor loads and checks the file (:class:`ModelArtifactError` when it is not a static
    single-image detect export). :meth:`detect` is thread-safe.
    """

    def __init__(self, path: Path, runtime: str, threads: int = 0):
        self.session: Session = open_session(runtime, path, threads)
        self.path = path
        signature = self.session.signature
        try:
            self.input_size, self.output_channels = check_model(path, signature.input_shapes,
                                                                signature.output_shapes, signature.task)
        except ModelShapeError as exc:
            raise ModelArtifactError(str(exc)) from exc
        self.num_classes = self.output_channels - 4

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The raw model output ``[1, 4 + nc, N]`` of one preprocessed image."""
        return self.session.run(batch)

    def detect(self, image: Image.Image, confidence: float, iou: float,
               max_detections: int = MAX_DETECTIONS) -> Detections:
        """Detections of one 8-bit image (read as RGB), in its own pixel coordinates."""
        return detect(self.run, self.input_size, image, confidence, iou, max_detections)
