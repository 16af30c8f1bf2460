"""``DefectDetector`` in-process: loading rules (dir and MLflow registry) and both protocols' handlers."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from pathlib import Path

import pytest
from fixtures.models import RegisteredModel, registered_tiny_model, tiny_images, tiny_model_dir  # noqa: F401
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse

from predictor.artifacts import UNKNOWN, ModelArtifactError
from predictor.cli import main
from predictor.model import DefectDetector
from predictor.settings import ServingSettings

pytestmark = pytest.mark.slow

SETTINGS = ServingSettings.from_config({"imgsz": 64, "confidence": 0.0001})


@pytest.fixture(scope="module")
def detector(tiny_model_dir: Path) -> DefectDetector:  # noqa: F811
    model = DefectDetector("det", model_dir=tiny_model_dir, settings=SETTINGS)
    assert model.ready is False  # __init__ does no work
    assert model.load() is True and model.ready is True
    return model


def test_load_from_dir_keeps_model_info(detector: DefectDetector, tiny_model_dir: Path):  # noqa: F811
    assert detector.info.name == "det" and detector.info.source == str(tiny_model_dir)
    assert (detector.info.version, detector.info.run_id, detector.info.alias) == (UNKNOWN, UNKNOWN, UNKNOWN)
    assert detector.class_names == json.loads((tiny_model_dir / "class_map.json").read_text())["names"]


def test_v1_and_v2_handlers_share_one_path(detector: DefectDetector, tiny_images):  # noqa: F811
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


def test_load_refuses_a_class_map_from_another_run(tiny_model_dir: Path, tmp_path: Path):  # noqa: F811
    shutil.copyfile(tiny_model_dir / "best.pt", tmp_path / "best.pt")
    (tmp_path / "class_map.json").write_text(json.dumps({"names": ["only/one"]}))
    model = DefectDetector("det", model_dir=tmp_path, settings=SETTINGS)
    with pytest.raises(ModelArtifactError, match=r"names 1 classes but .*best.pt was trained with \d+"):
        model.load()
    assert model.ready is False


def test_load_refuses_weights_that_are_not_a_checkpoint(tmp_path: Path):
    (tmp_path / "best.pt").write_bytes(b"not a torch checkpoint")
    (tmp_path / "class_map.json").write_text(json.dumps({"names": ["a/b"]}))
    with pytest.raises(ModelArtifactError, match="cannot load ultralytics weights"):
        DefectDetector("det", model_dir=tmp_path, settings=SETTINGS).load()


def test_cli_exits_1_with_the_reason_when_the_model_dir_is_bad(tmp_path: Path, capsys: pytest.CaptureFixture):
    assert main(["--model-dir", str(tmp_path), "--http_port", "1"]) == 1
    err = capsys.readouterr().err
    assert f"cannot load the model from {tmp_path}" in err and "lacks best.pt, class_map.json" in err


def test_registry_uri_needs_a_tracking_uri():
    model = DefectDetector("det", model_uri="models:/x@production", settings=SETTINGS)
    with pytest.raises(ModelArtifactError, match="needs an MLflow tracking URI"):
        model.load()


@pytest.mark.mlflow
def test_load_from_registry_by_version_and_alias(registered_tiny_model: RegisteredModel, mlflow_uri: str,  # noqa: F811
                                                 tmp_path: Path):
    by_version = DefectDetector("det", model_uri=registered_tiny_model.version_uri, tracking_uri=mlflow_uri,
                                settings=SETTINGS, download_dir=tmp_path / "v")
    assert by_version.load() and by_version.ready
    info = by_version.info
    assert (info.name, info.version, info.run_id) == (
        registered_tiny_model.name, registered_tiny_model.version, registered_tiny_model.run_id)
    assert info.alias == "production"  # the version's alias, read from the registry
    # models:/<name> means the default alias of configs/serving.yaml (production)
    by_name = DefectDetector("det", model_uri=f"models:/{registered_tiny_model.name}", tracking_uri=mlflow_uri,
                             settings=SETTINGS, download_dir=tmp_path / "a")
    assert by_name.load() and by_name.info.version == registered_tiny_model.version
    missing = DefectDetector("det", model_uri=f"models:/{registered_tiny_model.name}@nope", tracking_uri=mlflow_uri,
                             settings=SETTINGS)
    with pytest.raises(ModelArtifactError, match=r"cannot fetch models:/.*@nope"):
        missing.load()
    assert missing.ready is False
