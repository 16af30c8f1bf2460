"""The INT8 model a version carries past its gate (training_job.quantize): served by OpenVINO, fetched from the
registry, refused with one line when broken, and left for FP32 on ONNX Runtime."""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from fixtures.models import int8_model_dir, register_model_dir

from predictor.artifacts import ModelArtifactError, fetch_from_registry, int8_model, parse_models_uri
from predictor.model import DefectDetector
from predictor.settings import ServingSettings
from visionops.data.prepare import PreparedDataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def int8_dir(tiny_model_dir: Path, prepared_dataset: PreparedDataset,
             tmp_path_factory: pytest.TempPathFactory) -> Path:
    return int8_model_dir(tiny_model_dir, prepared_dataset, tmp_path_factory.mktemp("int8") / "model")


def _loaded(model_dir: Path, runtime: str) -> DefectDetector:
    model = DefectDetector("det", model_dir=model_dir,
                           settings=ServingSettings.from_config({"imgsz": 64, "runtime": runtime}))
    assert model.load() is True
    return model


def test_openvino_serves_the_int8_model_the_version_carries(int8_dir: Path, tiny_images: list[bytes]) -> None:
    assert int8_model(int8_dir) == int8_dir / "best_int8.xml"
    model = _loaded(int8_dir, "openvino")
    assert model.session.precision == "int8" and model.session.runtime == "openvino"
    answer = asyncio.run(model.predict({"instances": [{"b64": base64.b64encode(tiny_images[0]).decode()}]}))
    assert answer["predictions"][0]["image_size"]["width"] > 0


def test_int8_and_fp32_outputs_agree_in_shape_and_scale(int8_dir: Path, tiny_model_dir: Path) -> None:
    int8, fp32 = _loaded(int8_dir, "openvino"), _loaded(tiny_model_dir, "openvino")
    assert fp32.session.precision == "fp32"
    batch = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    a, b = int8._detector.run(batch), fp32._detector.run(batch)
    assert a.shape == b.shape
    boxes_a, boxes_b = a[0, :4], b[0, :4]  # box coordinates in input pixels: INT8 stays close to FP32
    assert np.abs(boxes_a - boxes_b).mean() < 0.1 * np.abs(boxes_b).mean()


def test_onnxruntime_serves_fp32_and_says_why(int8_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        model = _loaded(int8_dir, "onnxruntime")
    assert model.session.precision == "fp32"
    assert "only the OpenVINO runtime serves" in caplog.text


def test_a_broken_int8_model_is_refused_with_one_line(int8_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    shutil.copytree(int8_dir, broken)
    (broken / "best_int8.xml").write_text("<net>not a model")
    with pytest.raises(ModelArtifactError, match=r"cannot load OpenVINO IR .*best_int8\.xml"):
        _loaded(broken, "openvino")


@pytest.mark.mlflow
def test_the_registry_fetch_brings_the_int8_model(int8_dir: Path, mlflow_uri: str, tmp_path: Path) -> None:
    registered = register_model_dir(mlflow_uri, int8_dir, f"int8-{uuid.uuid4().hex[:6]}")
    local, _info = fetch_from_registry(parse_models_uri(registered.alias_uri), mlflow_uri, tmp_path / "dl")
    assert int8_model(local) == local / "best_int8.xml"
    assert (local / "best_int8.bin").stat().st_size == (int8_dir / "best_int8.bin").stat().st_size
