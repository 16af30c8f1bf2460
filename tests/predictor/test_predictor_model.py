"""``DefectDetector`` in-process: loading rules (dir and MLflow registry) and both protocols' handlers."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import shutil
import uuid
from pathlib import Path

import pytest
from fixtures.models import RegisteredModel, register_model_dir
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse
from PIL import Image

from predictor.artifacts import UNKNOWN, ModelArtifactError
from predictor.cli import main
from predictor.model import DefectDetector
from predictor.settings import ServingSettings

pytestmark = pytest.mark.slow

SETTINGS = ServingSettings.from_config({"imgsz": 64, "confidence": 0.0001})


@pytest.fixture(scope="module")
def registered_model(mlflow_uri: str, model_dir: Path) -> RegisteredModel:
    return register_model_dir(mlflow_uri, model_dir, f"onnx-detector-{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="module")
def detector(model_dir: Path) -> DefectDetector:
    model = DefectDetector("det", model_dir=model_dir, settings=SETTINGS)
    assert model.ready is False  # __init__ does no work
    assert model.load() is True and model.ready is True
    return model


def test_load_from_dir_keeps_model_info(detector: DefectDetector, model_dir: Path):
    assert detector.info.name == "det" and detector.info.source == str(model_dir)
    assert (detector.info.version, detector.info.run_id, detector.info.alias) == (UNKNOWN, UNKNOWN, UNKNOWN)
    assert detector.class_names == json.loads((model_dir / "class_map.json").read_text())["names"]


def _png_b64() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (30, 20), (90, 90, 90)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_v1_and_v2_handlers_share_one_path(detector: DefectDetector, tiny_images: list[bytes]):
    b64 = [base64.b64encode(image).decode() for image in tiny_images[:2]]
    v1 = asyncio.run(detector.predict({"instances": [{"image": {"b64": b64[0]}}, b64[1]]}))
    assert [p["num_detections"] > 0 for p in v1["predictions"]] == [True, True]
    request = InferRequest(model_name="det", infer_inputs=[InferInput("image", [2], "BYTES", b64)], request_id="r")
    v2 = asyncio.run(detector.predict(request))
    assert isinstance(v2, InferResponse) and v2.id == "r" and v2.model_version is None
    rest, _ = v2.to_rest()
    (output,) = rest["outputs"]
    assert output["shape"] == [2]
    v2_predictions = [json.loads(text) for text in output["data"]]
    assert [p["detections"] for p in v2_predictions] == [p["detections"] for p in v1["predictions"]]


def test_load_needs_only_the_onnx_file_and_the_class_map(model_dir: Path, tmp_path: Path):
    for name in ("best.onnx", "class_map.json"):
        shutil.copyfile(model_dir / name, tmp_path / name)
    model = DefectDetector("det", model_dir=tmp_path, settings=SETTINGS)
    assert model.load() and model.predict_images_payload({"instances": [_png_b64()]})[0]["image_size"] == {
        "width": 30, "height": 20}


def test_load_refuses_a_class_map_from_another_run(model_dir: Path, tmp_path: Path):
    shutil.copyfile(model_dir / "best.onnx", tmp_path / "best.onnx")
    (tmp_path / "class_map.json").write_text(json.dumps({"names": ["only/one"]}))
    model = DefectDetector("det", model_dir=tmp_path, settings=SETTINGS)
    with pytest.raises(ModelArtifactError, match=r"names 1 classes but .*best.onnx outputs \d+ channels per box "
                                                 r"\(4 box coordinates \+ \d+ class scores\); the two files"):
        model.load()
    assert model.ready is False


def test_load_refuses_a_file_that_is_not_an_onnx_model(tmp_path: Path):
    (tmp_path / "best.onnx").write_bytes(b"not an onnx model")
    (tmp_path / "class_map.json").write_text(json.dumps({"names": ["a/b"]}))
    with pytest.raises(ModelArtifactError, match="cannot load ONNX model"):
        DefectDetector("det", model_dir=tmp_path, settings=SETTINGS).load()


def test_the_model_input_size_wins_over_imgsz(model_dir: Path, caplog: pytest.LogCaptureFixture):
    model = DefectDetector("det", model_dir=model_dir, settings=ServingSettings.from_config({"imgsz": 640}))
    with caplog.at_level(logging.WARNING, logger="predictor.model"):
        assert model.load()
    assert "imgsz 640 differs from the static input size 64x64" in caplog.text
    assert model.settings.imgsz == 64


def test_only_the_cpu_device_is_accepted(model_dir: Path):
    assert DefectDetector("det", model_dir=model_dir, settings=SETTINGS, device="cpu").device == "cpu"
    with pytest.raises(ValueError, match="device '0' is not supported: the model runs on the runtime's CPU"):
        DefectDetector("det", model_dir=model_dir, device="0")
    with pytest.raises(ValueError, match="intra_op_threads must be an integer >= 0"):
        DefectDetector("det", model_dir=model_dir, intra_op_threads=-1)


def test_cli_exits_1_with_the_reason_when_the_model_dir_is_bad(tmp_path: Path, capsys: pytest.CaptureFixture):
    assert main(["--model-dir", str(tmp_path), "--http_port", "1"]) == 1
    err = capsys.readouterr().err
    assert f"cannot load the model from {tmp_path}" in err and "lacks best.onnx, class_map.json" in err


def test_registry_uri_needs_a_tracking_uri():
    model = DefectDetector("det", model_uri="models:/x@production", settings=SETTINGS)
    with pytest.raises(ModelArtifactError, match="needs an MLflow tracking URI"):
        model.load()


@pytest.mark.mlflow
def test_load_from_registry_by_version_and_alias(registered_model: RegisteredModel, mlflow_uri: str, tmp_path: Path):
    by_version = DefectDetector("det", model_uri=registered_model.version_uri, tracking_uri=mlflow_uri,
                                settings=SETTINGS, download_dir=tmp_path / "v")
    assert by_version.load() and by_version.ready
    info = by_version.info
    assert (info.name, info.version, info.run_id) == (
        registered_model.name, registered_model.version, registered_model.run_id)
    assert info.alias == "production"  # the version's alias, read from the registry
    # only what the predictor needs is downloaded (not best.pt)
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["best.onnx", "class_map.json", "data_card.json"]
    # models:/<name> means the default alias of configs/serving.yaml (production)
    by_name = DefectDetector("det", model_uri=f"models:/{registered_model.name}", tracking_uri=mlflow_uri,
                             settings=SETTINGS, download_dir=tmp_path / "a")
    assert by_name.load() and by_name.info.version == registered_model.version
    missing = DefectDetector("det", model_uri=f"models:/{registered_model.name}@nope", tracking_uri=mlflow_uri,
                             settings=SETTINGS)
    with pytest.raises(ModelArtifactError, match=r"cannot fetch models:/.*@nope"):
        missing.load()
    assert missing.ready is False


@pytest.mark.mlflow
def test_load_from_registry_names_missing_files(mlflow_uri: str, model_dir: Path, tmp_path: Path):
    (tmp_path / "old").mkdir()
    for name in ("best.pt", "class_map.json"):  # a version logged before the ONNX export existed
        shutil.copyfile(model_dir / name, tmp_path / "old" / name)
    old = register_model_dir(mlflow_uri, tmp_path / "old", f"old-detector-{uuid.uuid4().hex[:6]}")
    model = DefectDetector("det", model_uri=old.alias_uri, tracking_uri=mlflow_uri, settings=SETTINGS)
    message = (r"@production \(version 1, source .*\) lacks best.onnx \(expected best.onnx and class_map.json; "
               r"found \['best.pt', 'class_map.json'\]")
    with pytest.raises(ModelArtifactError, match=message):
        model.load()
