"""YOLO detection on an ultralytics ONNX export, without the runtime: letterbox, decode, class-wise NMS, boxes back.

The model is an ultralytics detect export (``format="onnx"``, static, no NMS inside): one input
``[1, 3, H, W]`` float32 RGB scaled to 0..1, one output ``[1, 4 + nc, N]`` holding per candidate box
``cx, cy, w, h`` (input pixels) then ``nc`` class scores (no objectness). The steps below follow
ultralytics' own ``predict`` (centered letterbox padded with gray 114, best class per box, score
strictly above the confidence threshold, class-wise NMS, at most 300 boxes, boxes clipped to the image),
so the detections match what the training job's ``best.pt`` gives. One implementation for every caller:
the predictor (``predictor.onnx_yolo``, on ONNX Runtime or OpenVINO) and the MLflow pyfunc model
(:mod:`visionops.mlflow_model`, on ONNX Runtime) hand :func:`detect` their own ``run`` of the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

PAD_VALUE = 114  # gray of the letterbox borders, as in training
MAX_DETECTIONS = 300  # per image (ultralytics' max_det)
MAX_NMS_CANDIDATES = 30_000  # highest-scoring boxes that enter NMS (ultralytics' max_nms)
_ONE = 1 << 11  # OpenCV INTER_RESIZE_COEF_SCALE
BAND_BYTES = 1 << 19  # bytes of one int32 temporary of the resize (below glibc's mmap threshold the server sets)


@dataclass(frozen=True)
class Letterbox:
    """Where a resized image sits in the model input: ``input = original * scale + pad`` per axis."""

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    resized: tuple[int, int]  # (width, height) of the image inside the input


@dataclass(frozen=True)
class Detections:
    """Boxes ``[n, 4]`` (x1, y1, x2, y2), scores ``[n]`` and class ids ``[n]`` of one image, best first."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def letterbox_geometry(image_size: tuple[int, int], input_size: tuple[int, int]) -> Letterbox:
    """Fit ``image_size`` (width, height) into ``input_size`` (width, height), aspect kept, centered."""
    (width, height), (in_w, in_h) = image_size, input_size
    gain = min(in_w / width, in_h / height)
    new_w, new_h = max(round(width * gain), 1), max(round(height * gain), 1)
    # ultralytics rounds the half padding down on the top/left side (the -0.1), the rest goes bottom/right
    pad_x, pad_y = round((in_w - new_w) / 2 - 0.1), round((in_h - new_h) / 2 - 0.1)
    return Letterbox(new_w / width, new_h / height, pad_x, pad_y, (new_w, new_h))


def _linear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and 11-bit fixed-point weights of a bilinear resize along one axis (OpenCV's
    INTER_LINEAR: half-pixel centers, edge pixels repeated, no antialiasing; float32 positions as OpenCV)."""
    pos = ((np.arange(dst) + 0.5) * (1.0 / (dst / src)) - 0.5).astype(np.float32)
    first = np.floor(pos).astype(np.intp)
    frac = pos - first.astype(np.float32)
    outside = (first < 0) | (first + 1 >= src)
    first, frac = np.where(outside, np.clip(first, 0, src - 1), first), np.where(outside, np.float32(0), frac)
    w_first = np.rint((np.float32(1) - frac) * np.float32(_ONE)).astype(np.int32)
    return first, np.minimum(first + 1, src - 1), w_first, _ONE - w_first


def _take_rows(source: np.ndarray | Image.Image, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (sorted, unique) of a ``uint8 [h, w, 3]`` array, or of an image converted to RGB, as
    ``[len(rows), w, 3]``; an image is read and converted run of rows by run: a large one is never copied whole."""
    if isinstance(source, np.ndarray):
        return source.take(rows, axis=0)
    runs = np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1)
    return np.concatenate([np.asarray(source.crop((0, int(run[0]), source.width, int(run[-1]) + 1)).convert("RGB"))
                           for run in runs])


def resize_bilinear(rgb: np.ndarray | Image.Image, size: tuple[int, int]) -> np.ndarray:
    """``uint8 [h, w, 3]`` (or an 8-bit image, read as RGB) -> ``uint8 [H, W, 3]`` (``size`` = (W, H)): the pixels of
    ``cv2.resize(..., INTER_LINEAR)``, what ultralytics trains and predicts with, up to a rare 1/255 (OpenCV's SIMD
    rounding). Computed a band of output rows at a time, so that no temporary reaches the predictor's mmap
    threshold (``MMAP_THRESHOLD`` in ``predictor/server.py``; each such allocation would be mapped, faulted in and
    unmapped)."""
    width, height = size
    src_width, src_height = rgb.size if isinstance(rgb, Image.Image) else (rgb.shape[1], rgb.shape[0])
    x_taps = _linear_taps(src_width, width)
    y0, y1, wy0, wy1 = _linear_taps(src_height, height)
    out = np.empty((height, width, 3), dtype=np.uint8)
    band = max(1, BAND_BYTES // (width * 3 * 4 * 2))  # rows; int32 temporaries of about two source rows per row
    for start in range(0, height, band):
        rows = slice(start, min(start + band, height))
        out[rows] = _resize_band(rgb, x_taps, y0[rows], y1[rows], wy0[rows], wy1[rows])
    return out


def _resize_band(rgb: np.ndarray | Image.Image, x_taps: tuple[np.ndarray, ...], y0: np.ndarray, y1: np.ndarray,
                 wy0: np.ndarray, wy1: np.ndarray) -> np.ndarray:
    """Output rows of :func:`resize_bilinear` whose source rows and weights are ``y0``, ``y1``, ``wy0``, ``wy1``."""
    x0, x1, wx0, wx1 = x_taps
    # horizontal pass once per source row used (upscaling reuses rows), scaled by 2**11, kept >> 4 as OpenCV
    rows, where = np.unique(np.concatenate([y0, y1]), return_inverse=True)
    picked = _take_rows(rgb, rows)
    across = picked.take(x0, axis=1).astype(np.int32)
    across *= wx0[None, :, None]
    right = picked.take(x1, axis=1).astype(np.int32)
    right *= wx1[None, :, None]
    across += right
    across >>= 4
    # vertical pass with OpenCV's rounding: high 16 bits of each product, then (top + bottom + 2) >> 2
    count = len(y0)
    out = across.take(where[:count], axis=0)
    out *= wy0[:, None, None]
    out >>= 16
    bottom = across.take(where[count:], axis=0)
    bottom *= wy1[:, None, None]
    bottom >>= 16
    out += bottom
    out += 2
    out >>= 2
    return out.astype(np.uint8)  # weights sum to 2**11: no value above 255


def preprocess(image: Image.Image, input_size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """8-bit image, read as RGB -> ``[1, 3, H, W]`` float32 in 0..1 (letterboxed to ``input_size`` = (W, H)) and its
    geometry. Only the rows the resize reads are converted: a large image costs no more than its own pixels. The
    pixels are scaled straight into the model input (no full-size temporaries besides it and the resized image)."""
    box = letterbox_geometry(image.size, input_size)
    if image.size != box.resized:
        pixels = resize_bilinear(image, box.resized)
    else:
        pixels = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    batch = np.empty((1, 3, input_size[1], input_size[0]), dtype=np.float32)
    batch.fill(np.float32(PAD_VALUE) / np.float32(255.0))
    inside = batch[0, :, box.pad_y:box.pad_y + box.resized[1], box.pad_x:box.pad_x + box.resized[0]]
    np.divide(pixels.transpose(2, 0, 1), np.float32(255.0), out=inside, dtype=np.float32)
    return batch, box


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """Center-size boxes ``[n, 4]`` -> corner boxes ``[n, 4]``."""
    half = boxes[:, 2:4] / 2
    return np.concatenate([boxes[:, 0:2] - half, boxes[:, 0:2] + half], axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int = MAX_DETECTIONS) -> np.ndarray:
    """Greedy NMS: indices of kept boxes by decreasing score; a box overlapping a kept one with IoU above
    ``iou_threshold`` is dropped. Stops after ``max_keep`` boxes."""
    x1, y1, x2, y2 = boxes.T
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_keep:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        inter = (np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
                 * np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None))
        union = areas[best] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def decode(output: np.ndarray, confidence: float, iou: float, max_detections: int = MAX_DETECTIONS) -> Detections:
    """Raw output ``[1, 4 + nc, N]`` -> detections in model-input pixels (best class per box, class-wise NMS)."""
    raw = output[0]  # [4 + nc, N], read along its rows (a per-box argmax over all N would copy it transposed)
    best = raw[4:].max(axis=0)
    chosen = np.flatnonzero(best > confidence)
    chosen = chosen[np.argsort(-best[chosen], kind="stable")[:MAX_NMS_CANDIDATES]]
    boxes, scores, class_ids = xywh_to_xyxy(raw[:4, chosen].T), best[chosen], raw[4:, chosen].argmax(axis=0)
    if not len(scores):
        return Detections(boxes.reshape(0, 4), scores, class_ids)
    # class-wise NMS in one pass: shift each class's boxes far enough that classes never overlap
    shift = float(boxes.max() - boxes.min()) + 1.0
    kept = nms(boxes + (class_ids * shift)[:, None], scores, iou, max_detections)
    return Detections(boxes[kept], scores[kept], class_ids[kept])


def to_image(detections: Detections, box: Letterbox, image_size: tuple[int, int]) -> Detections:
    """Model-input pixel boxes -> original-image pixel boxes, clipped to the image (``image_size`` = (W, H))."""
    width, height = image_size
    boxes = detections.boxes.astype(np.float64)
    boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - box.pad_x) / box.scale_x).clip(0, width)
    boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - box.pad_y) / box.scale_y).clip(0, height)
    return Detections(boxes, detections.scores, detections.class_ids)


class ModelShapeError(ValueError):
    """An ONNX file that is not a static single-image YOLO detect export (the message says why)."""


def check_model(path: object, input_shapes: Sequence[Sequence[Any]], output_shapes: Sequence[Sequence[Any]],
                task: str | None) -> tuple[tuple[int, int], int]:
    """``(input size (width, height), output channels)`` of a model from its shapes (an int per static dimension)
    and its ultralytics ``task`` metadata; :class:`ModelShapeError` naming ``path`` when it is not a detect export."""
    if task not in (None, "detect"):  # ultralytics writes it
        raise ModelShapeError(f"{path} is a {task!r} model; expected a 'detect' model")
    in_shape = list(input_shapes[0]) if len(input_shapes) == 1 else []
    static = len(in_shape) == 4 and in_shape[1] == 3 and all(isinstance(d, int) and d > 0 for d in in_shape[2:])
    if not static or (isinstance(in_shape[0], int) and in_shape[0] != 1):  # a named (dynamic) batch dim is ok
        raise ModelShapeError(
            f"{path} must take one static input [1, 3, H, W] (an ultralytics export with dynamic=False); "
            f"got input shapes {input_shapes}")
    out_shape = list(output_shapes[0]) if output_shapes else []
    if len(out_shape) != 3 or not isinstance(out_shape[1], int) or out_shape[1] < 5:
        raise ModelShapeError(
            f"{path} must output [1, 4 + number of classes, boxes] (an ultralytics detect export without "
            f"NMS); got output shapes {output_shapes}")
    return (in_shape[3], in_shape[2]), out_shape[1]


def detect(run: Callable[[np.ndarray], np.ndarray], input_size: tuple[int, int], image: Image.Image,
           confidence: float, iou: float, max_detections: int = MAX_DETECTIONS) -> Detections:
    """Detections of one 8-bit image (read as RGB) in its own pixel coordinates; ``run`` maps the model input
    ``[1, 3, H, W]`` (``input_size`` = (W, H)) to its raw output ``[1, 4 + nc, N]``."""
    batch, box = preprocess(image, input_size)
    return to_image(decode(run(batch), confidence, iou, max_detections), box, image.size)
