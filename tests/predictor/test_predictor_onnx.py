"""The detector on each runtime (:mod:`predictor.onnx_yolo`, :mod:`predictor.runtimes`): real ONNX Runtime and
OpenVINO sessions, and parity with ultralytics.

Every test runs once per runtime (``runtime`` fixture: ONNX Runtime and OpenVINO).
- Hand-built ONNX graphs (a constant output) pin the letterbox geometry, decoding and checks exactly.
- Parity: the same images through ``YOLO(best.pt).predict`` and through ``YoloOnnx(best.onnx, runtime)`` give
  the same detections, on the really trained tiny model and on a "lively" random YOLOv8n (the
  1-epoch tiny model answers nearly the same boxes for any input, which would let a geometry bug slip).
- The predictor's import path loads neither torch nor ultralytics (the image has neither).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures.predictor_process import constant_model
from PIL import Image

from predictor.artifacts import ModelArtifactError
from predictor.onnx_yolo import YoloOnnx
from predictor.runtimes import RUNTIMES

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    """Each runtime the predictor can run ``best.onnx`` on."""
    return request.param


def raw_output(boxes_xywh: list[list[float]], scores: list[list[float]]) -> np.ndarray:
    """``[1, 4 + nc, N]`` from per-box ``cx, cy, w, h`` and per-box class scores."""
    return np.concatenate([np.asarray(boxes_xywh, np.float32), np.asarray(scores, np.float32)], axis=1).T[None]


# -- hand-built graphs ------------------------------------------------------------------------

def test_detect_maps_boxes_back_through_the_letterbox(tmp_path: Path, runtime: str):
    # 2 classes, 3 candidates in 64x64 input pixels
    output = raw_output([[32, 32, 32, 16], [33, 32, 32, 16], [10, 10, 4, 4]], [[0.9, 0.1], [0.8, 0.1], [0.1, 0.05]])
    model = YoloOnnx(constant_model(tmp_path / "m.onnx", output, [1, 3, 64, 64]), runtime)
    assert (model.input_size, model.output_channels, model.num_classes) == ((64, 64), 6, 2)
    # a 200x100 image: gain 0.32, resized to 64x32, 16 px of gray above and below
    found = model.detect(Image.new("RGB", (200, 100)), confidence=0.25, iou=0.45)
    assert len(found) == 1  # box 2 overlaps box 1 (same class), box 3 is under the threshold
    np.testing.assert_allclose(found.boxes[0], [50, 25, 150, 75], atol=1e-4)  # (16, 24, 48, 40) in the input
    assert found.class_ids.tolist() == [0] and found.scores.tolist() == pytest.approx([0.9])
    # boxes leaving the image are clipped to it
    edge = raw_output([[20, 20, 16, 12]], [[0.7, 0.2]])  # x from 12: left of the image (pad 16)
    clipped = YoloOnnx(constant_model(tmp_path / "e.onnx", edge, [1, 3, 64, 64]), runtime).detect(
        Image.new("RGB", (100, 200)), 0.25, 0.45)
    np.testing.assert_allclose(clipped.boxes[0], [0, 43.75, 37.5, 81.25], atol=1e-4)


def test_nms_is_class_wise(tmp_path: Path, runtime: str):
    output = raw_output([[32, 32, 20, 20], [32, 32, 20, 20], [33, 32, 20, 20]], [[0.9, 0.0], [0.0, 0.8], [0.7, 0.0]])
    model = YoloOnnx(constant_model(tmp_path / "m.onnx", output, [1, 3, 64, 64]), runtime)
    found = model.detect(Image.new("RGB", (64, 64)), 0.25, 0.45)
    assert found.class_ids.tolist() == [0, 1]  # same place, other class: kept; same class: suppressed
    assert len(model.detect(Image.new("RGB", (64, 64)), 0.25, iou=0.99)) == 3


@pytest.mark.parametrize(
    ("input_shape", "output", "message"),
    [
        (["batch", 3, "height", "width"], np.zeros((1, 6, 3)), r"must take one static input \[1, 3, H, W\]"),
        ([2, 3, 64, 64], np.zeros((2, 6, 3)), r"must take one static input \[1, 3, H, W\]"),
        ([1, 1, 64, 64], np.zeros((1, 6, 3)), r"must take one static input"),
        ([1, 3, 64, 64], np.zeros((1, 6)), r"must output \[1, 4 \+ number of classes, boxes\]"),
        ([1, 3, 64, 64], np.zeros((1, 4, 3)), r"must output \[1, 4 \+ number of classes"),  # no class scores
    ],
)
def test_refuses_models_of_another_form(tmp_path: Path, runtime: str, input_shape, output, message):
    with pytest.raises(ModelArtifactError, match=message):
        YoloOnnx(constant_model(tmp_path / "m.onnx", output, input_shape), runtime)


def test_refuses_a_model_of_another_task(tmp_path: Path, runtime: str):
    path = constant_model(tmp_path / "m.onnx", np.zeros((1, 38, 3)), [1, 3, 64, 64], metadata={"task": "segment"})
    with pytest.raises(ModelArtifactError, match=r"m\.onnx is a 'segment' model; expected a 'detect' model"):
        YoloOnnx(path, runtime)
    detect = constant_model(tmp_path / "d.onnx", np.zeros((1, 6, 3)), [1, 3, 64, 64], metadata={"task": "detect"})
    assert YoloOnnx(detect, runtime).num_classes == 2


def test_a_named_batch_dimension_is_accepted(tmp_path: Path, runtime: str):
    model = YoloOnnx(constant_model(tmp_path / "m.onnx", np.zeros((1, 6, 3)), ["batch", 3, 32, 48],
                                    ["batch", 6, 3]), runtime)
    assert model.input_size == (48, 32) and len(model.detect(Image.new("RGB", (10, 10)), 0.25, 0.45)) == 0


def test_refuses_a_file_that_is_not_onnx(tmp_path: Path, runtime: str):
    (tmp_path / "best.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ModelArtifactError, match=r"cannot load ONNX model .*best.onnx"):
        YoloOnnx(tmp_path / "best.onnx", runtime)


# -- the serving image's imports ----------------------------------------------------------------

def test_the_predictor_imports_neither_torch_nor_ultralytics():
    code = ("import json, sys\n"
            "import predictor.model, predictor.cli, predictor.onnx_yolo, predictor.runtimes, mlflow.artifacts\n"
            "import onnxruntime, openvino, openvino.frontend\n"  # what predictor.runtimes loads
            "heavy = ['torch', 'torchvision', 'ultralytics', 'cv2', 'evidently']\n"
            "print(json.dumps({name: name in sys.modules for name in heavy}))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == dict.fromkeys(
        ["torch", "torchvision", "ultralytics", "cv2", "evidently"], False)


# -- parity with ultralytics --------------------------------------------------------------------

def _variants(images: list[bytes]) -> list[Image.Image]:
    """The images as sent, plus wide, tall and large non-square versions (letterbox padding on each axis)."""
    out = []
    for raw in images:
        image = Image.open(io.BytesIO(raw)).convert("RGB")
        out += [image, image.resize((160, 100)), image.resize((70, 150)), image.resize((1200, 700))]
    return out


def _assert_same_detections(weights: Path, onnx_path: Path, runtime: str, images: list[Image.Image], conf: float,
                            imgsz: int) -> int:
    """ultralytics on ``best.pt`` vs ``runtime`` on ``best.onnx``: same count, classes, boxes, scores."""
    from visionops import offline

    offline.configure()
    from ultralytics import YOLO

    yolo, detector = YOLO(str(weights)), YoloOnnx(onnx_path, runtime)
    total = 0
    for i, image in enumerate(images):
        # rect=False: the static ONNX input is the full square; ultralytics' default (rect) would feed the
        # PyTorch model a smaller stride-aligned rectangle for non-square images
        (expected,) = yolo.predict([image], conf=conf, iou=0.45, imgsz=imgsz, rect=False, device="cpu", verbose=False)
        found = detector.detect(image, conf, 0.45)
        where = f"image {i} ({image.size[0]}x{image.size[1]})"
        assert len(found) == len(expected.boxes), where
        assert found.class_ids.tolist() == expected.boxes.cls.int().tolist(), where
        np.testing.assert_allclose(found.boxes, expected.boxes.xyxy.numpy(), atol=1.0, err_msg=where)
        np.testing.assert_allclose(found.scores, expected.boxes.conf.numpy(), atol=1e-3, err_msg=where)
        total += len(found)
    return total


@pytest.mark.slow
def test_parity_with_ultralytics_on_the_trained_tiny_model(model_dir: Path, tiny_images: list[bytes], runtime: str):
    # conf 0.001: above the class scores the head starts from (about 0.00035, nearly tied across classes in a
    # one-epoch model, so which class an anchor's best is can differ in the last float bit between runtimes)
    total = _assert_same_detections(model_dir / "best.pt", model_dir / "best.onnx", runtime, _variants(tiny_images),
                                    conf=0.001, imgsz=64)
    assert total > 0


@pytest.mark.slow
def test_parity_with_ultralytics_on_a_lively_random_model(tiny_images: list[bytes], tmp_path: Path, runtime: str):
    """A random YOLOv8n whose BatchNorm statistics come from the images: its boxes and scores swing with
    every pixel, so a 1/255 preprocessing difference or a wrong pad would show up."""
    from visionops import offline

    offline.configure()
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO("yolov8n.yaml")
    batch = torch.from_numpy(np.stack([np.asarray(Image.open(io.BytesIO(raw)).convert("RGB").resize((96, 96)),
                                                  dtype=np.float32) / 255 for raw in tiny_images])).permute(0, 3, 1, 2)
    for module in model.model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 1.0  # keep exactly this batch's statistics
    model.model.train()
    with torch.no_grad():
        model.model(batch)
    model.model.eval()
    model.save(tmp_path / "lively.pt")
    onnx_path = Path(YOLO(str(tmp_path / "lively.pt")).export(format="onnx", imgsz=96, device="cpu", simplify=True,
                                                             verbose=False))
    total = _assert_same_detections(tmp_path / "lively.pt", onnx_path, runtime, _variants(tiny_images), conf=0.001,
                                    imgsz=96)
    assert total > 30  # enough boxes for the comparison to mean something
