"""``DefectDetector``: a KServe model serving the YOLO detector's ONNX export over V1 and V2.

The model runs on the CPU in OpenVINO or ONNX Runtime (``runtime`` of the settings; :mod:`predictor.runtimes`,
:mod:`predictor.onnx_yolo`); neither torch nor ultralytics is imported, so the predictor image stays small.
While its source has no model yet, the model stays registered and not ready, :attr:`DefectDetector.waiting` says
why and what to do, and :meth:`DefectDetector.wait_for_model` loads it once there is one.

V1 ``POST /v1/models/<name>:predict`` -> ``{"predictions": [<image prediction>, ...]}``.
V2 ``POST /v2/models/<name>/infer`` -> one ``BYTES`` output ``detections`` of shape ``[n]``
whose element i is the JSON text of image i's prediction (KServe's idiom for structured results); in the JSON
answer, or as binary data when the request asks for it (``binary_data_output``, as ``tritonclient`` does).
An image prediction is ``{"detections": [{class_id, class_name, confidence, bbox: [x1, y1, x2,
y2]}], "num_detections", "image_size": {"width", "height"}, "inference_time_ms"}``.
See :mod:`predictor.payload` for the accepted request forms, :mod:`predictor.images` for the images.

Memory: every image of a request is checked from its header first (format, ``max_image_pixels``, together
``max_request_pixels``); then the images are decoded and run one at a time, each dropped before the next,
and at most ``max_parallel_images`` are decoded at once over all requests. Peak memory is so bounded by the
settings, whatever a request holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kserve
from kserve.errors import InferenceError, InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from PIL import Image

from predictor import images, metrics
from predictor.artifacts import (
    UNKNOWN,
    ModelArtifactError,
    ModelInfo,
    RegistryRef,
    fetch_from_registry,
    int8_model,
    parse_models_uri,
    validate_model_dir,
)
from predictor.detections import image_prediction
from predictor.onnx_yolo import YoloOnnx
from predictor.payload import (
    PayloadError,
    check_request_pixels,
    decode_base64,
    images_from_body,
    images_from_v1,
    images_from_v2,
    is_json,
    json_body,
    v2_image,
)
from predictor.runtimes import OPENVINO, Session
from predictor.settings import ServingSettings

V2_INPUT = {"name": "image", "datatype": "BYTES", "shape": [-1]}
V2_OUTPUT = {"name": "detections", "datatype": "BYTES", "shape": [-1]}
DEVICES = ("cpu",)  # the runtimes' CPU devices only

log = logging.getLogger(__name__)


def waiting_message(source: RegistryRef | str, error: Exception, poll_seconds: float) -> str:
    """What readiness answers while there is no model to serve: why, what to do, and when the next look is."""
    if isinstance(source, RegistryRef) and source.alias:
        todo = (f"promote a version of registered model {source.name!r} (a TrainingRun that passes the promotion "
                f"gate, `visionops register --run-id <run>`, or set its alias {source.alias!r} in MLflow)")
    elif isinstance(source, RegistryRef):
        todo = f"register version {source.version} of {source.name!r}, or point VISIONOPS_MODEL_URI at one that exists"
    else:
        todo = f"put best.onnx and class_map.json into {source}"
    return f"no model to serve yet ({error}); {todo}. Looking again every {poll_seconds:g} s."


class DefectDetector(kserve.Model):
    """YOLO defect detector loaded from a model dir or an MLflow ``models:/`` URI."""

    def __init__(
        self,
        name: str,
        *,
        model_dir: str | Path | None = None,
        model_uri: str | None = None,
        tracking_uri: str | None = None,
        settings: ServingSettings | None = None,
        download_dir: str | Path | None = None,
        device: str | None = None,
        intra_op_threads: int = 0,
    ):
        super().__init__(name)
        if (model_dir is None) == (model_uri is None):
            raise ValueError(f"give exactly one of model_dir or model_uri, got model_dir={model_dir!r}, "
                             f"model_uri={model_uri!r}")
        if device not in (None, "", *DEVICES):
            raise ValueError(f"device {device!r} is not supported: the model runs on the runtime's CPU device "
                             f"(use {' or '.join(DEVICES)}, or leave it unset)")
        if not isinstance(intra_op_threads, int) or intra_op_threads < 0:
            raise ValueError(f"intra_op_threads must be an integer >= 0 (0: the container's CPU limit), "
                             f"got {intra_op_threads!r}")
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.model_uri = model_uri
        self.tracking_uri = tracking_uri
        self.settings = settings
        self.download_dir = Path(download_dir) if download_dir is not None else None
        self.device = device or None
        self.intra_op_threads = intra_op_threads
        self.info: ModelInfo | None = None
        self.class_names: list[str] = []
        self.waiting: str | None = None  # while not ready for want of a model: why, and what to do
        self._detector: YoloOnnx | None = None  # its detect() is thread-safe: no lock
        self._decode_slots: threading.BoundedSemaphore | None = None  # max_parallel_images

    @property
    def session(self) -> Session | None:
        """The runtime session of the loaded model (runtime name, version, threads), None before."""
        return self._detector.session if self._detector else None

    # -- loading -----------------------------------------------------------------------------

    def start(self) -> None:
        """KServe's start hook, which would mark any model ready: readiness here is :meth:`load`'s alone."""

    def load(self) -> bool:
        """Fetch (MLflow) or check (dir) the artifacts, load ``best.onnx`` on the settings' runtime, check it against
        the class map, warm up, then ``ready``. The input size is the model's own (static); a different ``imgsz``
        setting is logged and ignored. A source with no model yet raises
        :class:`~predictor.artifacts.ModelUnavailable`."""
        self.ready = False
        settings = self.settings or ServingSettings.from_config()
        if self.model_uri is not None:
            ref = parse_models_uri(self.model_uri, default_alias=settings.alias)
            local_dir, info = fetch_from_registry(ref, self.tracking_uri, self.download_dir)
        else:
            local_dir = self.model_dir
            info = ModelInfo(name=self.name, source=str(local_dir))
        onnx_path, class_names = validate_model_dir(local_dir)
        int8 = int8_model(local_dir)
        if int8 is not None and settings.runtime != OPENVINO:
            log.warning("the version carries an INT8 model, which only the OpenVINO runtime serves; serving %s "
                        "(FP32) on %s", onnx_path.name, settings.runtime)
        served = int8 if int8 is not None and settings.runtime == OPENVINO else onnx_path
        detector = YoloOnnx(served, settings.runtime, threads=self.intra_op_threads)
        if detector.num_classes != len(class_names):
            raise ModelArtifactError(
                f"class_map.json names {len(class_names)} classes but {served} outputs {detector.output_channels} "
                f"channels per box (4 box coordinates + {detector.num_classes} class scores); the two files come "
                f"from different runs")
        width, height = detector.input_size
        if (width, height) != (settings.imgsz, settings.imgsz):
            log.warning("imgsz %d differs from the static input size %dx%d of %s; using the model's",
                        settings.imgsz, width, height, served)
            if width == height:
                settings = dataclasses.replace(settings, imgsz=width)
        self.settings, self.info, self.class_names, self._detector = settings, info, class_names, detector
        self._decode_slots = threading.BoundedSemaphore(settings.max_parallel_images)
        self._infer([Image.new("RGB", (width, height))])  # warm up before reporting ready
        metrics.set_active_model(self.name, info)
        self.waiting = None
        self.ready = True
        return self.ready

    def wait_for_model(self, error: Exception, poll_seconds: float,
                       on_loaded: Callable[[], None] | None = None) -> threading.Thread:
        """After a first :meth:`load` failed with ``error`` for want of a model: stay not ready with :attr:`waiting`
        set, try :meth:`load` again every ``poll_seconds`` (any failure keeps waiting, its message in
        :attr:`waiting`), call ``on_loaded`` once it succeeds. Runs in a daemon thread, which is returned."""
        settings = self.settings or ServingSettings.from_config()
        source = (parse_models_uri(self.model_uri, default_alias=settings.alias) if self.model_uri is not None
                  else str(self.model_dir))
        self.waiting = waiting_message(source, error, poll_seconds)
        log.warning("%s", self.waiting)
        thread = threading.Thread(target=functools.partial(self._poll, source, poll_seconds, on_loaded),
                                  name="visionops-model-poll", daemon=True)
        thread.start()
        return thread

    def _poll(self, source: RegistryRef | str, poll_seconds: float, on_loaded: Callable[[], None] | None) -> None:
        while True:
            time.sleep(poll_seconds)
            waiting = self.waiting
            try:
                self.load()
            except Exception as exc:  # whatever it is, the message says it and the next look may succeed
                self.waiting = waiting_message(source, exc, poll_seconds)
                if self.waiting != waiting:
                    log.warning("%s", self.waiting)
                continue
            if on_loaded is not None:
                on_loaded()
            return

    # -- KServe handlers ---------------------------------------------------------------------

    def validate(self, payload: Any) -> Any:
        """KServe's own shape checks (e.g. ``instances`` must be a list), refused as :class:`PayloadError`."""
        try:
            return super().validate(payload)
        except PayloadError:
            raise
        except InvalidInput as exc:
            metrics.record_error(self.name, "bad_request")
            raise PayloadError("bad_request", str(exc)) from exc

    def get_input_types(self) -> list[dict]:
        return [V2_INPUT]

    def get_output_types(self) -> list[dict]:
        return [V2_OUTPUT]

    async def predict(
        self,
        payload: dict | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict | InferResponse:
        """V1 dict -> ``{"predictions": [...]}``; V2 ``InferRequest`` -> ``InferResponse``."""
        content_type = (headers or {}).get("content-type", "")
        try:
            predictions = await asyncio.to_thread(self.predict_images_payload, payload, content_type)
        except PayloadError as exc:
            metrics.record_error(self.name, exc.code)
            raise
        except InferenceError:
            metrics.record_error(self.name, "inference_error")
            raise
        except Exception as exc:
            metrics.record_error(self.name, "inference_error")
            raise InferenceError(f"inference failed: {type(exc).__name__}: {exc}") from exc
        if isinstance(payload, InferRequest):
            return self._v2_response(payload, predictions)
        return {"predictions": predictions}

    # -- shared helpers ----------------------------------------------------------------------

    def predict_images_payload(self, payload: Any, content_type: str = "") -> list[dict[str, Any]]:
        """Parse (V1, V2 or an image body), check, then decode and run one image at a time; blocking, safe to
        call from threads. ``content_type`` is the request's, for bodies KServe leaves as bytes."""
        if self._detector is None or self.settings is None:
            raise InferenceError(f"model {self.name} is not loaded; call load() first")
        settings = self.settings
        started = time.perf_counter()
        raws: list[bytes | None]
        if isinstance(payload, bytes) and is_json(content_type):
            payload = json_body(payload)
        if isinstance(payload, bytes):
            raws = list(images_from_body(payload, content_type, settings.max_images_per_request,
                                         settings.max_image_bytes))
        else:
            if isinstance(payload, InferRequest):
                values = images_from_v2(payload, settings.max_images_per_request)
                raws = [v2_image(value, i, settings.max_image_bytes) for i, value in enumerate(values)]
            else:
                values = images_from_v1(payload, settings.max_images_per_request)
                raws = [decode_base64(value, i, settings.max_image_bytes) for i, value in enumerate(values)]
        check_request_pixels([images.probe(raw, i, settings.max_image_pixels) for i, raw in enumerate(raws)],
                             settings.max_request_pixels)
        predictions = []
        for i, raw in enumerate(raws):
            raws[i] = None  # the encoded bytes go as soon as they are decoded
            with self._decode_slots:
                predictions += self._infer([images.decode(raw, i, settings.max_image_pixels)])
        metrics.INFERENCE_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        metrics.record_predictions(self.name, ([d["class_name"] for d in p["detections"]] for p in predictions))
        return predictions

    def _infer(self, batch: list[Image.Image]) -> list[dict[str, Any]]:
        settings, detector = self.settings, self._detector
        predictions = []
        for image in batch:  # the exported model takes one image at a time
            started = time.perf_counter()
            found = detector.detect(image, settings.confidence, settings.iou)
            elapsed_ms = (time.perf_counter() - started) * 1000
            predictions.append(image_prediction(
                found.boxes.tolist(), found.scores.tolist(), found.class_ids.tolist(), image.size,
                self.class_names, inference_time_ms=elapsed_ms,
            ))
        return predictions

    def _v2_response(self, request: InferRequest, predictions: list[dict[str, Any]]) -> InferResponse:
        output = InferOutput(name=V2_OUTPUT["name"], shape=[len(predictions)], datatype="BYTES",
                             data=[json.dumps(p) for p in predictions])
        version = self.info.version if self.info and self.info.version != UNKNOWN else None
        return InferResponse(
            response_id=request.id or str(uuid.uuid4()), model_name=self.name, infer_outputs=[output],
            model_version=version, use_binary_outputs=request.use_binary_outputs,
            requested_outputs=request.request_outputs,
        )

