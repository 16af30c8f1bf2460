"""Pure parts of the predictor: request parsing, image checks, settings, model sources, responses."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.predictor_process import png16_rgb
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest
from PIL import Image

from predictor import admission, images
from predictor.artifacts import ModelArtifactError, RegistryRef, parse_models_uri, validate_model_dir
from predictor.cli import KSERVE_MOUNT, build_parser, endpoint_lines, resolve_source
from predictor.detections import image_prediction
from predictor.onnx_yolo import Detections, decode, letterbox_geometry, nms, resize_bilinear, to_image
from predictor.payload import PayloadError, check_request_pixels, decode_base64, images_from_v1, images_from_v2
from predictor.settings import ServingSettings


def _png(width: int = 20, height: int = 10) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


B64 = base64.b64encode(_png()).decode()


def _v2(*inputs: InferInput) -> InferRequest:
    return InferRequest(model_name="m", infer_inputs=list(inputs))


# -- V1 ---------------------------------------------------------------------------------------

def test_v1_accepts_every_documented_instance_form():
    payload = {"instances": [{"image": {"b64": B64}}, {"image": B64}, {"b64": B64}, B64]}
    assert images_from_v1(payload, max_images=4) == [B64] * 4


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        (b"not json", "bad_request", "must be JSON"),
        ([1, 2], "bad_request", "must be a JSON object"),
        ({"inputs": []}, "missing_field", "lacks the field 'instances'"),
        ({"instances": {"image": B64}}, "bad_request", "'instances' must be a list"),
        ({"instances": []}, "no_images", "no images"),
        ({"instances": [{"picture": B64}]}, "missing_field", "instances[0] lacks the field 'image'"),
        ({"instances": [B64, {"image": {"data": B64}}]}, "missing_field", "instances[1].image lacks the field 'b64'"),
        ({"instances": [42]}, "bad_request", "instances[0] is a int"),
        ({"instances": [B64] * 3}, "too_many_images", "holds 3 images, more than the limit of 2"),
        ("a JSON string", "bad_request", "must be a JSON object shaped"),
    ],
)
def test_v1_rejects_bad_shapes_precisely(payload, code, message):
    with pytest.raises(PayloadError) as err:
        images_from_v1(payload, max_images=2)
    assert err.value.code == code
    assert message in str(err.value)
    assert isinstance(err.value, InvalidInput)  # a KServe client error
    assert err.value.status == (413 if code == "too_many_images" else 400)  # over a limit: 413


# -- V2 ---------------------------------------------------------------------------------------

def test_v2_reads_one_bytes_input_nested_or_flat():
    assert images_from_v2(_v2(InferInput("image", [2], "BYTES", [B64, B64])), 4) == [B64, B64]
    assert images_from_v2(_v2(InferInput("x", [2, 1], "BYTES", [[B64], [B64]])), 4) == [B64, B64]


@pytest.mark.parametrize(
    ("inputs", "code", "message"),
    [
        ([], "bad_request", "exactly one input"),
        ([InferInput("a", [1], "BYTES", [B64]), InferInput("b", [1], "BYTES", [B64])], "bad_request",
         "got 2: ['a', 'b']"),
        ([InferInput("image", [1], "FP32", [1.0])], "bad_request", "datatype FP32"),
        ([InferInput("image", [3], "BYTES", [B64])], "bad_request", "shape [3] (3 elements) but 1 data"),
        ([InferInput("image", [3], "BYTES", [B64] * 3)], "too_many_images", "limit of 2"),
        ([InferInput("image", [0], "BYTES", [])], "no_images", "no images"),
    ],
)
def test_v2_rejects_bad_requests_precisely(inputs, code, message):
    with pytest.raises(PayloadError) as err:
        images_from_v2(_v2(*inputs), max_images=2)
    assert err.value.code == code
    assert message in str(err.value)


# -- image decoding ---------------------------------------------------------------------------

MAX_PIXELS = 8192 * 8192


def _decode(value, max_bytes: int = 10_000, index: int = 0):
    return images.decode(decode_base64(value, index, max_bytes), index, MAX_PIXELS)


def _encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def test_decode_accepts_plain_bytes_and_data_url():
    raw = _png()
    assert decode_base64(B64, 0, 10_000) == raw
    assert decode_base64(B64.encode(), 0, 10_000) == raw
    assert decode_base64(f"data:image/png;base64,{B64}\n", 0, 10_000) == raw
    image = _decode(B64)
    assert image.mode == "RGB" and image.size == (20, 10)


@pytest.mark.parametrize(
    ("value", "max_bytes", "code", "status", "message"),
    [
        ("", 1000, "empty_image", 400, "image 0 is empty"),
        ("   ", 1000, "empty_image", 400, "image 0 is empty"),
        ("@@not base64@@", 1000, "not_base64", 400, "image 0 is not valid base64"),
        (12, 1000, "not_base64", 400, "image 0 is a int"),
        (base64.b64encode(b"x" * 101).decode(), 100, "image_too_large", 413, "101 bytes decoded, over the limit"),
        (base64.b64encode(b"x" * 5000).decode(), 100, "image_too_large", 413, "over the limit of 100 bytes"),
        (base64.b64encode(b"hello, not an image").decode(), 1000, "not_an_image", 400, "is not a readable image"),
        (base64.b64encode(_png()[:40]).decode(), 1000, "not_an_image", 400, "is not a readable image"),  # truncated
        (base64.b64encode(b"GIF89a" + b"\0" * 20).decode(), 1000, "unsupported_format", 415, "is in GIF format"),
    ],
)
def test_decode_rejects_bad_images_precisely(value, max_bytes, code, status, message):
    with pytest.raises(PayloadError) as err:
        _decode(value, max_bytes)
    assert (err.value.code, err.value.status) == (code, status)
    assert message in str(err.value)


def test_decode_refuses_a_decompression_bomb_from_its_header():
    raw = _encoded(Image.new("1", (9000, 8000)))  # 72 Mpx in a few kB
    with pytest.raises(PayloadError, match=r"image 3: 9000x8000 pixels is over the limit of 67108864 pixels "
                                           r"\(max_image_pixels\)") as err:
        images.probe(raw, 3, MAX_PIXELS)
    assert (err.value.code, err.value.status) == ("image_too_large", 413)
    assert images.probe(raw, 0, 72_000_000) == 72_000_000  # the header only: nothing decoded


def test_decode_names_the_index_of_the_bad_image():
    with pytest.raises(PayloadError, match="image 1 is not valid base64"):
        decode_base64("%%%", 1, 10_000)


def test_request_pixel_budget():
    check_request_pixels([100, 100], 200)
    with pytest.raises(PayloadError, match=r"the request's 3 images hold 300 pixels in all, over the limit of 200 "
                                           r"pixels per request \(max_request_pixels\)") as err:
        check_request_pixels([100, 100, 100], 200)
    assert (err.value.code, err.value.status) == ("request_too_large", 413)


def test_sixteen_bit_grayscale_keeps_the_high_byte_as_opencv_does():
    samples = (np.arange(64 * 32, dtype=np.uint32).reshape(32, 64) * 31).astype(np.uint16)
    image = images.decode(_encoded(Image.fromarray(samples)), 0, MAX_PIXELS)  # Pillow reads it as I;16
    assert image.mode == "L" and image.size == (64, 32)
    np.testing.assert_array_equal(np.asarray(image), samples >> 8)  # not clipped to white
    rgb = np.stack([samples, samples[::-1], 65535 - samples], axis=-1)
    np.testing.assert_array_equal(np.asarray(images.decode(png16_rgb(rgb), 0, MAX_PIXELS)), rgb >> 8)


def test_float_pixels_are_refused_with_a_message():
    with pytest.raises(PayloadError, match=r"has F pixels .* whose range is not defined") as err:
        images.to_8bit(Image.new("F", (4, 4), 0.5), 2)
    assert (err.value.code, err.value.status) == ("unsupported_pixels", 415)
    assert images.to_8bit(Image.new("P", (4, 4))).mode == "P"  # 8-bit modes: converted later, row by row


@pytest.mark.parametrize(("orientation", "size"), [(1, (40, 20)), (3, (40, 20)), (6, (20, 40)), (8, (20, 40))])
def test_exif_orientation_is_applied(orientation: int, size: tuple[int, int]):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 10))  # blue in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    upright = images.decode(_encoded(image, "PNG", exif=exif.tobytes()), 0, MAX_PIXELS)
    assert upright.size == size
    blue = {1: (0, 0), 3: (39, 19), 6: (19, 0), 8: (0, 39)}[orientation]  # where the camera meant it
    assert upright.getpixel(blue) == (0, 0, 255)


# -- responses --------------------------------------------------------------------------------

def test_image_prediction_shape_and_order():
    out = image_prediction([[1, 2, 3, 4], [5.555, 6, 7, 8]], [0.3, 0.91234], [1.0, 0.0], (640, 480), ["a/x", "a/y"],
                           inference_time_ms=12.345)
    assert out == {
        "detections": [
            {"class_id": 0, "class_name": "a/x", "confidence": 0.9123, "bbox": [5.55, 6.0, 7.0, 8.0]},
            {"class_id": 1, "class_name": "a/y", "confidence": 0.3, "bbox": [1.0, 2.0, 3.0, 4.0]},
        ],
        "num_detections": 2,
        "image_size": {"width": 640, "height": 480},
        "inference_time_ms": 12.35,
    }
    assert image_prediction([], [], [], (1, 1), [])["num_detections"] == 0
    assert image_prediction([[0, 0, 1, 1]], [0.5], [7], (1, 1), ["a"])["detections"][0]["class_name"] == "class_7"


# -- settings and sources ---------------------------------------------------------------------

def test_settings_come_from_serving_config_and_validate():
    settings = ServingSettings.from_config()
    assert settings.model_name == "vision-defect-detector" and settings.alias == "production"
    assert ServingSettings.from_config({"confidence": 0.5, "imgsz": None}).imgsz == settings.imgsz
    with pytest.raises(ValueError, match=r"confidence must be a number between 0 and 1, got 1\.5"):
        ServingSettings.from_config({"confidence": 1.5})
    with pytest.raises(ValueError, match="max_images_per_request must be an integer >= 1, got 0"):
        ServingSettings.from_config({"max_images_per_request": 0})
    with pytest.raises(ValueError, match=r"read_timeout_seconds must be a number of seconds > 0, got 0"):
        ServingSettings.from_config({"read_timeout_seconds": 0})
    with pytest.raises(ValueError, match=r"max_image_pixels \(10\) must not exceed max_request_pixels \(5\)"):
        ServingSettings.from_config({"max_image_pixels": 10, "max_request_pixels": 5})


def test_cli_limit_flags_read_the_environment(monkeypatch: pytest.MonkeyPatch):
    defaults = ServingSettings.from_config()
    args = build_parser(defaults).parse_args([])
    assert (args.max_body_bytes, args.timeout_keep_alive) == (defaults.max_body_bytes, defaults.idle_timeout_seconds)
    monkeypatch.setenv("VISIONOPS_MAX_BODY_BYTES", "1234")  # what the chart sets
    monkeypatch.setenv("VISIONOPS_IDLE_TIMEOUT_SECONDS", "7")
    args = build_parser(defaults).parse_args(["--max-header-count", "9"])
    assert (args.max_body_bytes, args.timeout_keep_alive, args.max_header_count) == (1234, 7, 9)


@pytest.mark.parametrize(
    ("uri", "ref"),
    [
        ("models:/det@production", RegistryRef("det", alias="production")),
        ("models:/det/3", RegistryRef("det", version="3")),
        ("models:/det", RegistryRef("det", alias="champion")),
    ],
)
def test_parse_models_uri(uri, ref):
    assert parse_models_uri(uri, default_alias="champion") == ref


@pytest.mark.parametrize("uri", ["runs:/abc/model", "models:/", "models:/det/latest", "models:/a/b/c", "/mnt/models"])
def test_parse_models_uri_rejects_other_forms(uri):
    with pytest.raises(ValueError, match="must look like models:/<name>@<alias>"):
        parse_models_uri(uri, default_alias="production")


def test_validate_model_dir_names_what_is_missing(tmp_path: Path):
    with pytest.raises(ModelArtifactError, match="does not exist"):
        validate_model_dir(tmp_path / "nope")
    (tmp_path / "best.pt").write_bytes(b"")
    with pytest.raises(ModelArtifactError, match=r"lacks best.onnx, class_map.json \(expected best.onnx and "
                                                 r"class_map.json; found \['best.pt'\]"):
        validate_model_dir(tmp_path)
    (tmp_path / "best.onnx").write_bytes(b"model")
    (tmp_path / "class_map.json").write_text(json.dumps({"nc": 2}))
    with pytest.raises(ModelArtifactError, match=r'must hold \{"names"'):
        validate_model_dir(tmp_path)
    (tmp_path / "class_map.json").write_text("{broken")
    with pytest.raises(ModelArtifactError, match="not readable JSON"):
        validate_model_dir(tmp_path)
    (tmp_path / "class_map.json").write_text(json.dumps({"names": ["casting/inclusoes", "screw/defect"]}))
    assert validate_model_dir(tmp_path) == (tmp_path / "best.onnx", ["casting/inclusoes", "screw/defect"])
    (tmp_path / "best.pt").unlink()  # the PyTorch weights are not needed
    assert validate_model_dir(tmp_path)[0] == tmp_path / "best.onnx"


def test_cli_defaults_and_source_order(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("VISIONOPS_MODEL_URI", raising=False)
    parser = build_parser(ServingSettings.from_config())
    args = parser.parse_args([])
    assert args.model_name == "vision-defect-detector"  # the URL name matches the config, not KServe's "model"
    assert resolve_source(args) == {"model_dir": KSERVE_MOUNT}
    args = parser.parse_args(["--tracking-uri", "http://mlflow:5000"])
    assert resolve_source(args) == {"model_uri": "models:/vision-defect-detector@production"}
    args = parser.parse_args(["--model-dir", "/m", "--tracking-uri", "http://x", "--model_name", "det"])
    assert resolve_source(args) == {"model_dir": "/m"} and args.model_name == "det"
    with pytest.raises(SystemExit):
        parser.parse_args(["--model-dir", "/m", "--model-uri", "models:/x@y"])
    assert "POST http://localhost:9000/v1/models/det:predict" in "\n".join(endpoint_lines("det", 9000))
    monkeypatch.setenv("VISIONOPS_MODEL_URI", "models:/det/7")  # what the operator patches on promotion
    args = build_parser(ServingSettings.from_config()).parse_args([])
    assert resolve_source(args) == {"model_uri": "models:/det/7"}
    args = build_parser(ServingSettings.from_config()).parse_args(["--model-dir", "/m"])
    assert resolve_source(args) == {"model_dir": "/m"}


def test_cli_device_and_threads(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    monkeypatch.delenv("VISIONOPS_INTRA_OP_THREADS", raising=False)
    parser = build_parser(ServingSettings.from_config())
    args = parser.parse_args([])
    assert (args.device, args.intra_op_threads) == (None, 0)  # 0: the container's CPU limit
    args = parser.parse_args(["--device", "cpu", "--intra-op-threads", "2"])
    assert (args.device, args.intra_op_threads) == ("cpu", 2)
    for bad in (["--device", "0"], ["--intra-op-threads", "-1"], ["--intra-op-threads", "two"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    assert "must be an integer >= 0 (0: the container's CPU limit), got 'two'" in capsys.readouterr().err
    monkeypatch.setenv("VISIONOPS_INTRA_OP_THREADS", "3")  # e.g. the pod's CPU limit, set by the chart
    assert build_parser(ServingSettings.from_config()).parse_args([]).intra_op_threads == 3


# -- ONNX decoding (pure numpy) ---------------------------------------------------------------

def test_letterbox_geometry_matches_ultralytics_rounding():
    box = letterbox_geometry((200, 100), (64, 64))
    assert (box.resized, box.pad_x, box.pad_y) == ((64, 32), 0, 16)
    assert (box.scale_x, box.scale_y) == (0.32, 0.32)
    odd = letterbox_geometry((100, 67), (64, 64))  # 64x43: 21 px of padding, 10 above and 11 below
    assert (odd.resized, odd.pad_x, odd.pad_y) == ((64, 43), 0, 10)
    assert letterbox_geometry((3000, 1), (640, 640)).resized == (640, 1)  # a thin image keeps one row


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=np.float32)
    scores = np.array([0.5, 0.9, 0.4, 0.1], dtype=np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]  # IoU(0, 1) = 0.82 > 0.5
    assert nms(boxes, scores, 0.9).tolist() == [1, 0, 2]  # 0.82 <= 0.9; box 3 duplicates box 0
    assert nms(boxes, scores, 0.9, max_keep=2).tolist() == [1, 0]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).tolist() == []


def test_decode_takes_the_best_class_above_the_threshold():
    # [1, 4 + 3, 3]: per candidate box cx, cy, w, h, then 3 class scores; boxes 0 and 2 are the same place
    output = np.array([[[10, 50, 10], [10, 50, 10], [4, 8, 4], [4, 8, 4],
                        [0.1, 0.2, 0.3], [0.6, 0.1, 0.25], [0.2, 0.7, 0.1]]], dtype=np.float32)
    found = decode(output, confidence=0.25, iou=0.45)
    assert found.class_ids.tolist() == [2, 1, 0]  # box 1 (0.7), box 0 (0.6), box 2 (0.3: another class, kept)
    np.testing.assert_allclose(found.boxes, [[46, 46, 54, 54], [8, 8, 12, 12], [8, 8, 12, 12]])
    assert found.scores.tolist() == pytest.approx([0.7, 0.6, 0.3])
    assert len(decode(output, confidence=0.3, iou=0.45)) == 2  # box 2's 0.3 is not above 0.3
    assert len(decode(output, confidence=0.9, iou=0.45)) == 0


def test_to_image_undoes_the_letterbox_and_clips():
    box = letterbox_geometry((200, 100), (64, 64))
    raw = Detections(np.array([[16, 24, 48, 40], [-8, 10, 70, 60]], np.float32), np.array([0.9, 0.5]), np.array([0, 1]))
    np.testing.assert_allclose(to_image(raw, box, (200, 100)).boxes, [[50, 25, 150, 75], [0, 0, 200, 100]])


def test_resize_bilinear_keeps_sizes_and_flat_colors():
    flat = np.full((37, 53, 3), (10, 200, 30), dtype=np.uint8)
    for size in ((20, 11), (80, 64), (1, 1)):
        out = resize_bilinear(flat, size)
        assert out.shape == (size[1], size[0], 3) and out.dtype == np.uint8
        assert (out == flat[0, 0]).all()
    ramp = np.repeat(np.arange(0, 256, 64, dtype=np.uint8)[None, :, None], 3, axis=2)  # 0 64 128 192
    assert resize_bilinear(ramp, (2, 1))[0, :, 0].tolist() == [32, 160]  # the mean of each pair


def test_the_bodies_in_flight_fit_the_memory_limit_and_one_request_always_fits(tmp_path: Path) -> None:
    settings = ServingSettings.from_config()
    assert settings.max_inflight_body_bytes == 0  # the default: from the container's memory limit
    two_gib = 2 << 30
    budget = admission.inflight_budget(settings, two_gib)
    decoding = settings.max_parallel_images * images.PEAK_BYTES_PER_PIXEL * settings.max_image_pixels
    assert admission.IDLE_ALLOWANCE + decoding + admission.BODY_COPIES * budget <= two_gib
    assert admission.inflight_budget(settings, 256 << 20) == settings.max_body_bytes  # a small pod: one at a time
    assert admission.inflight_budget(settings, None) == admission.UNLIMITED_BODIES * settings.max_body_bytes
    fixed = ServingSettings.from_config({"max_inflight_body_bytes": 3 * settings.max_body_bytes})
    assert admission.inflight_budget(fixed, two_gib) == 3 * settings.max_body_bytes
    with pytest.raises(ValueError, match=r"max_inflight_body_bytes .* must be 0 .* or at least max_body_bytes"):
        ServingSettings.from_config({"max_inflight_body_bytes": 1})

    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    assert admission.memory_limit(v2, v1) is None  # neither file: not in a container
    v2.write_text("max\n")
    assert admission.memory_limit(v2, v1) is None
    v2.write_text("2147483648\n")
    assert admission.memory_limit(v2, v1) == two_gib
    v2.unlink()
    v1.write_text("9223372036854771712\n")  # cgroup v1's "no limit"
    assert admission.memory_limit(v2, v1) is None

    gate = admission.InflightBudget(10)
    assert gate.take(25) and not gate.take(1), "one request is always admitted, then nothing past the capacity"
    gate.give_back(25)
    assert gate.take(6) and gate.take(4) and not gate.take(1) and gate.held == 10


def test_a_loaded_model_has_its_error_and_image_series_at_zero() -> None:
    """The dashboard's Errors and Images panels show 0 on a fresh pod, not "no data"."""
    from prometheus_client import REGISTRY

    from predictor import metrics
    from predictor.artifacts import ModelInfo

    metrics.set_active_model("fresh-detector", ModelInfo(name="fresh-detector", version="7"))
    labels = {"model_name": "fresh-detector"}
    assert REGISTRY.get_sample_value("visionops_prediction_errors_total",
                                     labels | {"reason": "inference_error"}) == 0.0
    assert REGISTRY.get_sample_value("visionops_images_predicted_total", labels) == 0.0
