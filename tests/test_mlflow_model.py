"""The training run's ``model/`` folder as an MLflow pyfunc model (:mod:`visionops.mlflow_model`), for real: the job's
own folder assembly on the session's trained tiny model, a real MLflow server and registry, ONNX Runtime."""

from __future__ import annotations

import base64
import io
import json
import uuid
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import Model
from mlflow.pyfunc.scoring_server import invocations
from mlflow.tracking import MlflowClient
from PIL import Image

from predictor.model import DefectDetector
from predictor.onnx_yolo import YoloOnnx
from predictor.settings import ServingSettings
from training_job import job
from visionops import mlflow_model, registry
from visionops.data.prepare import PreparedDataset

pytestmark = [pytest.mark.mlflow, pytest.mark.slow]

CONF = 0.0001  # the 1-epoch model's scores are low: this keeps boxes to compare
COLUMNS = ["image", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2"]


@pytest.fixture(scope="module")
def folder(tiny_model_dir: Path, prepared_dataset: PreparedDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``model/`` as the training job assembles it, from the session's trained tiny model."""
    opts = SimpleNamespace(workdir=tmp_path_factory.mktemp("job"))
    return job.model_dir(opts, prepared_dataset, tiny_model_dir / "best.pt", tiny_model_dir / "best.onnx")


@pytest.fixture(scope="module")
def production(folder: Path, mlflow_uri: str) -> str:
    """``folder`` logged as a run's ``model/``, registered and promoted as the job and the gate do; its alias URI."""
    mlflow.set_tracking_uri(mlflow_uri)
    client = MlflowClient(tracking_uri=mlflow_uri)
    exp = client.get_experiment_by_name("mlflow-model-tests")
    run = client.create_run(exp.experiment_id if exp else client.create_experiment("mlflow-model-tests"))
    client.log_artifacts(run.info.run_id, str(folder), registry.MODEL_ARTIFACT_PATH)
    client.set_terminated(run.info.run_id, "FINISHED")
    name = f"pyfunc-detector-{uuid.uuid4().hex[:6]}"
    version = registry.register_version(client, name, run.info.run_id)
    registry.promote(client, name, version.version, "test")
    return f"models:/{name}@{registry.aliases()[1]}"


@pytest.fixture(scope="module")
def pyfunc(production: str) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(production)


def images(raws: list[bytes]) -> list[bytes]:
    """The val images, plus a wide and a tall version of the first (letterbox padding on each axis)."""
    first = Image.open(io.BytesIO(raws[0])).convert("RGB")
    extra = []
    for size in ((160, 100), (70, 150)):
        out = io.BytesIO()
        first.resize(size).save(out, format="PNG")
        extra.append(out.getvalue())
    return [*raws, *extra]


def test_the_folder_keeps_the_served_files_and_is_an_mlflow_model(folder: Path):
    names = {p.name for p in folder.iterdir()}
    assert names == {"best.pt", "best.onnx", "class_map.json", "data_card.json", "MLmodel", "conda.yaml",
                     "python_env.yaml", "requirements.txt", "input_example.json", "serving_input_example.json"}
    meta = Model.load(str(folder / "MLmodel"))
    flavor = meta.flavors["python_function"]
    assert flavor["loader_module"] == "visionops.mlflow_model"
    assert "data" not in flavor and not flavor.get("code")  # the loader reads best.onnx in place: stored once
    assert meta.signature.inputs.input_names() == ["image"]
    assert meta.signature.inputs.to_dict() == [{"type": "binary", "name": "image", "required": True}]
    assert meta.signature.outputs.input_names() == COLUMNS
    params = {p.name: p.default for p in meta.signature.params}
    assert params == {"confidence": 0.25, "iou": 0.45, "max_detections": 300}  # configs/serving.yaml
    example = meta.load_input_example(str(folder))
    assert list(example.columns) == ["image"] and example["image"][0] == mlflow_model.example_image()
    assert meta.model_size_bytes == sum(p.stat().st_size for p in folder.iterdir() if p.name != "MLmodel")
    requirements = (folder / "requirements.txt").read_text().split()
    assert {r.split("==")[0] for r in requirements} == {"mlflow", "onnxruntime", "numpy", "pandas", "pillow"}


def test_production_alias_predicts_the_predictor_s_boxes(pyfunc, folder: Path, tiny_images: list[bytes]):
    raws = images(tiny_images)
    found = pyfunc.predict(pd.DataFrame({"image": raws}), params={"confidence": CONF})
    assert list(found.columns) == COLUMNS and len(found) > 0
    assert str(found["image"].dtype) == "int64" and str(found["x1"].dtype) == "float64"
    names = json.loads((folder / "class_map.json").read_text())["names"]
    detector = YoloOnnx(folder / "best.onnx", "onnxruntime")
    for index, raw in enumerate(raws):
        rows = found[found["image"] == index]
        expected = detector.detect(Image.open(io.BytesIO(raw)), CONF, 0.45)
        assert rows["class_id"].tolist() == expected.class_ids.tolist()
        assert rows["class_name"].tolist() == [names[c] for c in expected.class_ids]
        np.testing.assert_array_equal(rows["confidence"].to_numpy(), expected.scores)
        np.testing.assert_array_equal(rows[["x1", "y1", "x2", "y2"]].to_numpy(), expected.boxes)


def test_the_predictor_serves_the_same_version(pyfunc, production: str, mlflow_uri: str, tiny_images: list[bytes],
                                               tmp_path: Path):
    settings = ServingSettings.from_config({"imgsz": 64, "confidence": CONF, "runtime": "onnxruntime"})
    served = DefectDetector("det", model_uri=production, tracking_uri=mlflow_uri, settings=settings,
                            download_dir=tmp_path)
    assert served.load()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.onnx", "class_map.json", "data_card.json"]
    raws = tiny_images[:2]
    predictions = served.predict_images_payload({"instances": [base64.b64encode(r).decode() for r in raws]})
    found = pyfunc.predict(pd.DataFrame({"image": raws}), params={"confidence": CONF})
    for index, prediction in enumerate(predictions):
        rows = found[found["image"] == index].sort_values("confidence", ascending=False, kind="stable")
        assert [(d["class_name"], d["confidence"], d["bbox"]) for d in prediction["detections"]] == [
            (r.class_name, round(r.confidence, 4), [round(v, 2) for v in (r.x1, r.y1, r.x2, r.y2)])
            for r in rows.itertuples()]


def test_params_and_base64_text(pyfunc, tiny_images: list[bytes]):
    raw = tiny_images[0]
    low = pyfunc.predict(pd.DataFrame({"image": [raw]}), params={"confidence": CONF})
    as_text = pyfunc.predict(pd.DataFrame({"image": [base64.b64encode(raw).decode()]}), params={"confidence": CONF})
    pd.testing.assert_frame_equal(low, as_text)
    capped = pyfunc.predict(pd.DataFrame({"image": [raw]}), params={"confidence": CONF, "max_detections": 2})
    pd.testing.assert_frame_equal(capped, low.head(2))
    none = pyfunc.predict(pd.DataFrame({"image": [raw]}), params={"confidence": 0.9999})
    assert none.empty and list(none.columns) == COLUMNS
    with pytest.raises(ValueError, match="image 0: text that is not base64"):
        pyfunc.predict(pd.DataFrame({"image": ["not base64!"]}))


def test_the_scoring_server_takes_base64_json(pyfunc, folder: Path, tiny_images: list[bytes]):
    """What ``mlflow models serve`` does with a request: the saved example, and a val image with params."""
    schema = pyfunc.metadata.get_input_schema()
    example = invocations((folder / "serving_input_example.json").read_text(), "application/json", pyfunc, schema)
    assert example.status == 200 and isinstance(json.loads(example.response)["predictions"], list)
    body = {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(tiny_images[0]).decode()]]},
            "params": {"confidence": CONF}}
    answer = invocations(json.dumps(body), "application/json", pyfunc, schema)
    assert answer.status == 200, answer.response
    expected = pyfunc.predict(pd.DataFrame({"image": tiny_images[:1]}), params={"confidence": CONF})
    assert json.loads(answer.response)["predictions"] == expected.to_dict(orient="records") and len(expected) > 0


def test_a_class_map_from_another_run_is_refused(folder: Path, tmp_path: Path):
    for name in ("best.onnx", "MLmodel"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    (tmp_path / "class_map.json").write_text(json.dumps({"names": ["only/one"]}))
    with pytest.raises(ValueError, match=r"names 1 classes but .*best.onnx scores \d+"):
        mlflow.pyfunc.load_model(str(tmp_path))
