"""The real KServe ModelServer (``python -m predictor``) over HTTP, with a really trained tiny model.

Model from a local dir and from the MLflow registry (``models:/<name>@production``, real server); the server of the
module is ``predictor_server`` (``fixtures.predictor_process``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
from fixtures.models import RegisteredModel, register_model_dir
from fixtures.predictor_process import (
    MAX_BYTES,
    MAX_IMAGES,
    NAME,
    Predictor,
    b64,
    check_prediction,
    class_names,
    start_predictor,
)

pytestmark = pytest.mark.slow

def test_readiness_and_metadata(predictor_server: Predictor):
    url = predictor_server.url
    assert requests.get(f"{url}/v2/health/ready", timeout=5).json() == {"ready": True}
    assert requests.get(f"{url}/v2/health/live", timeout=5).json() == {"live": True}
    assert requests.get(f"{url}/v2/models/{NAME}/ready", timeout=5).json() == {"name": NAME, "ready": True}
    assert requests.get(f"{url}/v1/models/{NAME}", timeout=5).json() == {"name": NAME, "ready": True}
    assert requests.get(f"{url}/v1/models", timeout=5).json() == {"models": [NAME]}
    meta = requests.get(f"{url}/v2/models/{NAME}", timeout=5).json()
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "detections", "datatype": "BYTES", "shape": [-1]}]
    # the KServe default name is not served: the URL name comes from configs/serving.yaml
    assert requests.get(f"{url}/v2/models/model/ready", timeout=5).status_code == 404
    assert "POST http://localhost:" in predictor_server.log.read_text()  # the URLs were printed at start


def test_v1_predict_one_and_several_images(predictor_server: Predictor, tiny_images: list[bytes], model_dir: Path):
    names = class_names(model_dir)
    one = predictor_server.v1({"instances": [{"image": {"b64": b64(tiny_images[0])}}]})
    assert one.status_code == 200, one.text
    (prediction,) = one.json()["predictions"]
    check_prediction(prediction, names)

    forms = [{"image": {"b64": b64(tiny_images[0])}}, {"b64": b64(tiny_images[1])}, b64(tiny_images[2])]
    several = predictor_server.v1({"instances": forms})
    assert several.status_code == 200, several.text
    predictions = several.json()["predictions"]
    assert len(predictions) == 3
    for p in predictions:
        check_prediction(p, names)
    assert predictions[0]["detections"] == prediction["detections"]  # same image, same answer


def test_v2_infer_bytes_base64(predictor_server: Predictor, tiny_images: list[bytes], model_dir: Path):
    names = class_names(model_dir)
    body = {"id": "req-1", "inputs": [{"name": "image", "shape": [2], "datatype": "BYTES",
                                       "data": [b64(tiny_images[0]), b64(tiny_images[1])]}]}
    response = predictor_server.v2(body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["id"] == "req-1" and out["model_name"] == NAME
    (output,) = out["outputs"]
    assert output["name"] == "detections" and output["datatype"] == "BYTES" and output["shape"] == [2]
    predictions = [json.loads(text) for text in output["data"]]
    for p in predictions:
        check_prediction(p, names)
    v1 = predictor_server.v1({"instances": [b64(tiny_images[0])]}).json()["predictions"][0]
    assert predictions[0]["detections"] == v1["detections"]  # both protocols, one model, one answer


def _bad_v1_cases(image: bytes) -> list[tuple[str, object, str]]:
    return [
        ("not_base64", {"instances": [{"image": {"b64": "%%% not base64 %%%"}}]}, "image 0 is not valid base64"),
        ("not_an_image", {"instances": [{"image": {"b64": b64(b"GIF? no, just text")}}]},
         "image 0 (18 bytes) is not a readable image"),
        ("empty_image", {"instances": [{"image": {"b64": ""}}]}, "image 0 is empty"),
        ("image_too_large", {"instances": [b64(image), b64(b"\0" * (MAX_BYTES + 1))]},
         f"image 1 is {MAX_BYTES + 1} bytes decoded, over the limit of {MAX_BYTES} bytes"),
        ("too_many_images", {"instances": [b64(image)] * (MAX_IMAGES + 1)},
         f"holds {MAX_IMAGES + 1} images, more than the limit of {MAX_IMAGES}"),
        ("no_images", {"instances": []}, "holds no images"),
        # KServe's Model.validate answers this one before predict() runs
        ("bad_request", {"instances": {"image": {"b64": b64(image)}}}, 'Expected "instances" to be a list'),
        ("bad_request", ["not", "an", "object"], "must be a JSON object"),
        ("missing_field", {"images": [b64(image)]}, "lacks the field 'instances'"),
        ("missing_field", {"instances": [{"picture": b64(image)}]}, "instances[0] lacks the field 'image'"),
        ("missing_field", {"instances": [{"image": {"data": b64(image)}}]}, "lacks the field 'b64'"),
    ]


OVER_A_LIMIT = ("image_too_large", "too_many_images")  # 413, the other refusals 400


def test_bad_v1_inputs_get_4xx_with_a_precise_message(predictor_server: Predictor, tiny_images: list[bytes]):
    good = {"instances": [b64(tiny_images[0])]}
    for code, body, message in _bad_v1_cases(tiny_images[0]):
        response = predictor_server.v1(body)
        assert response.status_code == (413 if code in OVER_A_LIMIT else 400), (code, response.text)
        assert message in response.json()["error"], (code, response.text)
        assert predictor_server.v1(good).status_code == 200, f"server broken after {code}"
    # a body that is not JSON at all
    raw = requests.post(f"{predictor_server.url}/v1/models/{NAME}:predict", data=b"\x89PNG...",
                        headers={"content-type": "application/json"}, timeout=10)
    assert raw.status_code == 400 and "Unrecognized request format" in raw.json()["error"]
    text = requests.post(f"{predictor_server.url}/v1/models/{NAME}:predict", data=b"hello",
                         headers={"content-type": "text/plain"}, timeout=10)
    assert text.status_code == 400 and "must be JSON" in text.json()["error"]
    metrics = predictor_server.metrics()
    for code in {c for c, _, _ in _bad_v1_cases(b"")}:
        assert f'visionops_prediction_errors_total{{model_name="{NAME}",reason="{code}"}}' in metrics


def test_bad_v2_inputs_get_4xx_with_a_precise_message(predictor_server: Predictor, tiny_images: list[bytes]):
    image = b64(tiny_images[0])
    cases = [
        ([{"name": "image", "shape": [1], "datatype": "FP32", "data": [1.0]}], "has datatype FP32"),
        ([{"name": "a", "shape": [1], "datatype": "BYTES", "data": [image]},
          {"name": "b", "shape": [1], "datatype": "BYTES", "data": [image]}], "expected exactly one input"),
        ([{"name": "image", "shape": [2], "datatype": "BYTES", "data": [image]}], "has shape [2] (2 elements)"),
        ([{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["not base64!"]}], "not valid base64"),
        ([{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64(b"text")]}], "not a readable image"),
        ([{"name": "image", "shape": [MAX_IMAGES + 1], "datatype": "BYTES", "data": [image] * (MAX_IMAGES + 1)}],
         "more than the limit"),
    ]
    for inputs, message in cases:
        response = predictor_server.v2({"inputs": inputs})
        assert response.status_code == (413 if "limit" in message else 400), (message, response.text)
        assert message in response.json()["error"]
    # bodies outside the V2 schema are refused by KServe itself (FastAPI validation: 422 + detail)
    schema = predictor_server.v2({"instances": [image]})
    assert schema.status_code == 422 and "inputs" in schema.text
    ok = predictor_server.v2({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [image]}]})
    assert ok.status_code == 200


def test_metrics_show_visionops_and_kserve_series(predictor_server: Predictor, tiny_images: list[bytes],
                                                  model_dir: Path):
    assert predictor_server.v1({"instances": [b64(tiny_images[3])]}).status_code == 200
    metrics = predictor_server.metrics()
    for series in (
        f'visionops_images_predicted_total{{model_name="{NAME}"}}',
        f'visionops_detections_per_image_count{{model_name="{NAME}"}}',
        f'visionops_inference_seconds_count{{model_name="{NAME}"}}',
        f'visionops_active_model_info{{alias="unknown",model_name="{NAME}",run_id="unknown",version="unknown"}} 1.0',
        f'request_predict_seconds_count{{model_name="{NAME}"}}',  # KServe's own
    ):
        assert series in metrics, series
    by_class = [line for line in metrics.splitlines() if line.startswith("visionops_detections_total{")]
    assert by_class and all(any(f'class_name="{n}"' in line for n in class_names(model_dir)) for line in by_class)
    # the old name, one release longer: the same series and values
    old = [line for line in metrics.splitlines() if line.startswith("visionops_predictions_total{")]
    assert [line.replace("visionops_predictions_total", "visionops_detections_total") for line in old] == by_class
    assert "# HELP visionops_predictions_total DEPRECATED: use visionops_detections_total" in metrics
    promtool = shutil.which("promtool")  # Debian's prometheus (hack/node-deps.sh monitoring)
    if promtool:  # the exposition as Prometheus' own linter reads it: names, units, help texts
        lint = subprocess.run([promtool, "check", "metrics"], input=metrics, capture_output=True, text=True, timeout=60)
        assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.mlflow
def test_serves_a_registered_model_from_mlflow(mlflow_uri: str, model_dir: Path, tiny_images: list[bytes],
                                               tmp_path: Path):
    registered: RegisteredModel = register_model_dir(mlflow_uri, model_dir, f"served-detector-{uuid.uuid4().hex[:6]}")
    server = start_predictor(["--model-uri", registered.alias_uri, "--tracking-uri", mlflow_uri,
                              "--download-dir", str(tmp_path / "download"), "--imgsz", "64", "--confidence", "0.0001"],
                             tmp_path / "server.log")
    try:
        response = server.v1({"instances": [b64(tiny_images[0])]})
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0]["num_detections"] > 0
        image = b64(tiny_images[0])
        v2 = server.v2({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [image]}]})
        assert v2.json()["model_version"] == registered.version
        info = (f'visionops_active_model_info{{alias="production",model_name="{NAME}",'
                f'run_id="{registered.run_id}",version="{registered.version}"}} 1.0')
        assert info in server.metrics()
        # only what the predictor needs came down (no best.pt)
        assert sorted(p.name for p in (tmp_path / "download").iterdir()) == [
            "best.onnx", "class_map.json", "data_card.json"]
    finally:
        server.stop()
