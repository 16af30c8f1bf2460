"""Odd but valid images get the pixels ultralytics would use, and the served boxes match ultralytics' own predict.

Files: 16-bit grayscale and RGB PNGs, EXIF-rotated JPEGs and PNGs, palette, RGBA, LA, 1-bit PNGs, a
grayscale JPEG. (a) Our decode + letterbox against ultralytics' reader (``ultralytics.utils.patches.imread``,
OpenCV) + ``LetterBox`` on the same file: the same model input up to OpenCV's rare 1/255 rounding. (b) The
real server's V1 answer against ``YOLO(best.pt).predict(<file>)`` on the tiny trained model.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from fixtures.predictor_process import NAME, Predictor, export_onnx_model_dir, png16_rgb, start_predictor
from PIL import Image

from predictor import images
from predictor.onnx_yolo import preprocess

pytestmark = pytest.mark.slow

IMGSZ = 64


def _texture(width: int = 120, height: int = 90) -> np.ndarray:
    """``uint16 [h, w, 3]``: gradients and a bright block, so that a wrong scale, channel or rotation shows."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 65535 // width, y * 65535 // height, (x + y) * 65535 // (width + height)], axis=-1)
    rgb[10:30, 15:60] = (60000, 5000, 30000)
    return rgb.astype(np.uint16)


def _save(image: Image.Image, fmt: str, orientation: int = 1, **options) -> bytes:
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    image.save(buf, format=fmt, exif=exif.tobytes(), **options)
    return buf.getvalue()


def odd_files() -> dict[str, bytes]:
    rgb16 = _texture()
    rgb8 = Image.fromarray((rgb16 >> 8).astype(np.uint8))
    return {
        "gray16.png": _save(Image.fromarray(rgb16[..., 0]), "PNG"),  # Pillow: I;16
        "rgb16.png": png16_rgb(rgb16),
        "rot90-cw.jpg": _save(rgb8, "JPEG", orientation=6, quality=95),
        "rot180.jpg": _save(rgb8, "JPEG", orientation=3, quality=95),
        "rot90-ccw.jpg": _save(rgb8, "JPEG", orientation=8, quality=95),
        "mirrored.png": _save(rgb8, "PNG", orientation=2),
        "palette.png": _save(rgb8.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "rgba.png": _save(rgb8.convert("RGBA"), "PNG"),
        "gray-alpha.png": _save(rgb8.convert("LA"), "PNG"),
        "bilevel.png": _save(rgb8.convert("1"), "PNG"),
        "gray.jpg": _save(rgb8.convert("L"), "JPEG", quality=95),
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("odd-images")
    out = {}
    for name, raw in odd_files().items():
        out[name] = folder / name
        out[name].write_bytes(raw)
    return out


def _ultralytics_input(path: Path) -> np.ndarray:
    """The letterboxed ``uint8 [H, W, 3]`` RGB image ultralytics' predict feeds the model for this file."""
    from visionops import offline

    offline.configure()
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils.patches import imread

    bgr = imread(str(path))
    return LetterBox(new_shape=(IMGSZ, IMGSZ), auto=False, stride=32)(image=bgr)[..., ::-1]


@pytest.mark.parametrize("name", sorted(odd_files()))
def test_model_input_matches_ultralytics_reader(files: dict[str, Path], name: str):
    ours, _ = preprocess(images.decode(files[name].read_bytes(), 0, 10**8), (IMGSZ, IMGSZ))
    ours8 = np.rint(ours[0].transpose(1, 2, 0) * 255).astype(np.int16)
    theirs = _ultralytics_input(files[name]).astype(np.int16)
    assert ours8.shape == theirs.shape, name
    assert np.abs(ours8 - theirs).max() <= 1, name  # OpenCV's SIMD rounding, rarely


def test_the_old_conversion_was_wrong_for_16_bit(files: dict[str, Path]):
    """The files are really odd: Pillow's plain ``convert("RGB")`` (the predictor before) saturates 16-bit gray."""
    plain = np.asarray(Image.open(files["gray16.png"]).convert("RGB"))
    ours = np.asarray(images.decode(files["gray16.png"].read_bytes(), 0, 10**8).convert("RGB"))
    assert (plain == 255).mean() > 0.9 and (ours == 255).mean() < 0.1


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``model_dir`` of ``fixtures.predictor_process``, here exported to ONNX at this module's ``IMGSZ``."""
    return export_onnx_model_dir(tiny_model_dir, tmp_path_factory.mktemp("onnx-model"), imgsz=IMGSZ)


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Predictor]:
    predictor = start_predictor(["--model-dir", str(model_dir), "--imgsz", str(IMGSZ), "--confidence", "0.0001"],
                                tmp_path_factory.mktemp("predictor-images") / "server.log")
    yield predictor
    predictor.stop()


def test_served_boxes_match_ultralytics_predict_on_the_files(server: Predictor, files: dict[str, Path],
                                                             model_dir: Path):
    from visionops import offline

    offline.configure()
    from ultralytics import YOLO

    yolo = YOLO(str(model_dir / "best.pt"))
    for name, path in sorted(files.items()):
        body = {"instances": [base64.b64encode(path.read_bytes()).decode()]}
        response = requests.post(f"{server.url}/v1/models/{NAME}:predict", json=body, timeout=60)
        assert response.status_code == 200, (name, response.text)
        served = response.json()["predictions"][0]
        (expected,) = yolo.predict(str(path), conf=0.0001, iou=0.45, imgsz=IMGSZ, rect=False, device="cpu",
                                   verbose=False)
        height, width = expected.orig_shape
        assert served["image_size"] == {"width": width, "height": height}, name  # the upright frame
        detections = served["detections"]
        assert len(detections) == len(expected.boxes), name
        order = np.argsort(-expected.boxes.conf.numpy(), kind="stable")
        np.testing.assert_allclose([d["bbox"] for d in detections], expected.boxes.xyxy.numpy()[order], atol=1.0,
                                   err_msg=name)
        np.testing.assert_allclose([d["confidence"] for d in detections], expected.boxes.conf.numpy()[order],
                                   atol=1e-3, err_msg=name)


def test_the_image_as_the_body_or_a_multipart_upload_answers_as_base64_json(server: Predictor,
                                                                            files: dict[str, Path]):
    """Issue 12: ``Content-Type: image/*`` (the body is the image) and ``multipart/form-data`` (the old
    ``/predict``'s ``file`` field), same answer as V1 JSON."""
    url = f"{server.url}/v1/models/{NAME}:predict"

    def answers(response: requests.Response) -> list[tuple]:
        assert response.status_code == 200, response.text
        return [(p["image_size"], p["detections"]) for p in response.json()["predictions"]]  # not the timing

    jpeg, png = files["rot90-cw.jpg"].read_bytes(), files["rgb16.png"].read_bytes()
    as_json = answers(requests.post(url, json={"instances": [base64.b64encode(raw).decode() for raw in (jpeg, png)]},
                                    timeout=60))
    as_body = requests.post(url, data=jpeg, headers={"content-type": "image/jpeg"}, timeout=60)
    assert answers(as_body) == as_json[:1]
    upload = requests.post(url, files=[("file", ("a.jpg", jpeg, "image/jpeg")), ("note", (None, "ignored")),
                                       ("file", ("b.png", png, "image/png"))], timeout=60)
    assert answers(upload) == as_json
    charset = requests.post(url, data=json.dumps({"instances": [base64.b64encode(png).decode()]}),
                            headers={"content-type": "application/json; charset=utf-8"}, timeout=60)
    assert answers(charset) == as_json[1:]
