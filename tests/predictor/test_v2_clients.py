"""Standard Open Inference Protocol (V2) clients against the real predictor (``python -m predictor``).

``tritonclient.http`` (JSON ``BYTES`` of base64 sent untyped, the binary tensor extension with the image files, JSON
and binary answers) and KServe's own ``InferenceRESTClient``; one server for the module (``predictor_server`` of
``fixtures.predictor_process``: at most 3 images and 300 kB per image).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from fixtures.predictor_process import MAX_BYTES, MAX_IMAGES, NAME, Predictor, check_prediction, class_names
from kserve import InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest
from PIL import Image
from tritonclient.utils import InferenceServerException

from predictor.payload import MAX_MESSAGE, PayloadError

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MARKER = b"PIXELS-OF-THE-CLIENT"  # payload bytes no answer may echo


@pytest.fixture(scope="module")
def png(tiny_images: list[bytes]) -> bytes:
    """A validation image as a PNG file."""
    if tiny_images[0].startswith(PNG_SIGNATURE):
        return tiny_images[0]
    out = io.BytesIO()
    Image.open(io.BytesIO(tiny_images[0])).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def client(predictor_server: Predictor) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=predictor_server.url.removeprefix("http://"), network_timeout=60)


@pytest.fixture(scope="module")
def v1_detections(predictor_server: Predictor, png: bytes) -> list[dict]:
    """What V1 answers for ``png``: the V2 clients must get the same."""
    response = predictor_server.v1({"instances": [base64.b64encode(png).decode()]})
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]["detections"]


def _bytes_input(values: list, binary: bool) -> triton.InferInput:
    inp = triton.InferInput("image", [len(values)], "BYTES")
    inp.set_data_from_numpy(np.array(values, dtype=object), binary_data=binary)
    return inp


def _predictions(result: triton.InferResult | np.ndarray, count: int) -> list[dict]:
    values = result.as_numpy("detections") if isinstance(result, triton.InferResult) else result
    assert values.shape == (count,)
    return [json.loads(value) for value in values]  # str in a JSON answer, bytes in a binary one


def _refusal(client: triton.InferenceServerClient, inp: triton.InferInput) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as err:
        client.infer(NAME, [inp])
    return err.value


def test_health_and_metadata(client: triton.InferenceServerClient):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(NAME)
    meta = client.get_model_metadata(NAME)
    assert meta["name"] == NAME
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "detections", "datatype": "BYTES", "shape": [-1]}]
    assert not client.is_model_ready("no-such-model")


def test_json_bytes_of_base64_json_and_binary_answers(client: triton.InferenceServerClient, png: bytes,
                                                      tiny_images: list[bytes], model_dir: Path,
                                                      v1_detections: list[dict]):
    names = class_names(model_dir)
    inp = _bytes_input([base64.b64encode(png), base64.b64encode(tiny_images[1]).decode()], binary=False)
    as_json = client.infer(NAME, [inp], request_id="req-7",
                           outputs=[triton.InferRequestedOutput("detections", binary_data=False)])
    assert as_json.get_response()["id"] == "req-7"
    assert "data" in as_json.get_output("detections")  # the answer is JSON
    as_binary = client.infer(NAME, [inp])  # no outputs named: tritonclient asks for binary ones
    assert "data" not in as_binary.get_output("detections")
    for result in (as_json, as_binary):
        predictions = _predictions(result, 2)
        for prediction in predictions:
            check_prediction(prediction, names)
        assert predictions[0]["detections"] == v1_detections


def test_binary_extension_with_the_image_files(client: triton.InferenceServerClient, png: bytes,
                                               tiny_images: list[bytes], model_dir: Path,
                                               v1_detections: list[dict]):
    files = [png, tiny_images[1], base64.b64encode(tiny_images[2])]  # a PNG, a PNG or JPEG, base64 text
    result = client.infer(NAME, [_bytes_input(files, binary=True)])
    predictions = _predictions(result, 3)
    for prediction in predictions:
        check_prediction(prediction, class_names(model_dir))
    assert predictions[0]["detections"] == v1_detections


def test_wrong_requests_get_4xx_without_the_payload(client: triton.InferenceServerClient, png: bytes):
    broken = PNG_SIGNATURE + MARKER * 10
    cases = [
        (_bytes_input([broken], binary=True), "400", "image 0 (208 bytes) is not a readable image"),
        (_bytes_input([b"GIF89a\x01\x00\x01\x00\x80" + MARKER], binary=True), "415", "image 0 is in GIF format"),
        (_bytes_input([png + b"\x00" * MAX_BYTES], binary=True), "413", "(max_image_bytes)"),
        (_bytes_input([png] * (MAX_IMAGES + 1), binary=True), "413", "(max_images_per_request)"),
        (_bytes_input([MARKER + b" is no base64"], binary=True), "400", "image 0 is not valid base64"),
    ]
    fp32 = triton.InferInput("image", [1], "FP32")
    fp32.set_data_from_numpy(np.array([1.0], dtype=np.float32), binary_data=True)
    cases.append((fp32, "400", "binary data of datatype FP32"))
    for inp, status, message in cases:
        error = _refusal(client, inp)
        assert error.status() == status and message in error.message(), (message, error.message())
        assert MARKER.decode() not in error.message()


def test_a_malformed_binary_request_does_not_echo_its_bytes(predictor_server: Predictor, png: bytes):
    payload = png + MARKER
    head = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                   "parameters": {"binary_data_size": 4 + len(payload)}}]}).encode()
    url = f"{predictor_server.url}/v2/models/{NAME}/infer"
    bodies = [
        (str(len(head)), head + (len(payload) + 9).to_bytes(4, "little") + payload, "element 0 of input 'image'"),
        (str(len(head) + 1), head + len(payload).to_bytes(4, "little") + payload, "Unrecognized request format"),
        ("3", b"[1]" + payload, "malformed request: TypeError"),  # JSON, but no object
        (None, payload, "Unrecognized request format"),
    ]
    for length, body, message in bodies:
        headers = {"content-type": "application/octet-stream"}
        if length is not None:
            headers["inference-header-content-length"] = length
        response = requests.post(url, data=body, headers=headers, timeout=30)
        assert response.status_code == 400 and message in response.json()["error"], response.text
        assert MARKER not in response.content and b"PNG" not in response.content and b"\\x" not in response.content


def test_kserve_rest_client(predictor_server: Predictor, png: bytes, v1_detections: list[dict]):
    binary = InferInput("image", [1], "BYTES")
    binary.set_data_from_numpy(np.array([png], dtype=object), binary_data=True)
    requests_ = [InferRequest(NAME, [InferInput("image", [1], "BYTES", [base64.b64encode(png).decode()])]),
                 InferRequest(NAME, [binary])]

    async def run() -> list:
        client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
        try:
            assert await client.is_server_ready(predictor_server.url)
            return [await client.infer(predictor_server.url, request, model_name=NAME) for request in requests_]
        finally:
            await client.close()

    for response in asyncio.run(run()):
        (output,) = response.outputs
        assert output.name == "detections"
        assert _predictions(output.as_numpy(), 1)[0]["detections"] == v1_detections


def test_error_messages_are_bounded_and_hold_no_bytes():
    message = str(PayloadError("bad_request", f"malformed request: Failed to encode \"{PNG_SIGNATURE + MARKER}\""))
    assert message == 'malformed request: Failed to encode "<bytes omitted>'
    assert len(str(PayloadError("bad_request", "x\x00" * MAX_MESSAGE))) == MAX_MESSAGE
    assert "\x00" not in str(PayloadError("bad_request", "a\x00b"))
