"""The one contract between the planes: names (MLflow tags, metric keys, the artifact layout, environment
variables) and the result documents the training and drift Jobs leave for the operator.

Each value is written here once; the Jobs, the operator, the registry and the predictor import it
(docs/mlflow-layout.md describes the layout these names make up). A result document is compact JSON in the
Job's result file, which Kubernetes keeps as the Pod's termination message (at most 4096 bytes): the Job
writes it with ``to_json`` (bulky fields dropped first when it would not fit), the operator reads it with
``parse``. Both check every field; an unknown field is ignored when parsing (a newer Job), and a field
that is absent or ``null`` is ``None``, so what an older Job wrote still parses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar, Self

# ---------------------------------------------------------------- Kubernetes names the components share
API_GROUP, API_VERSION = "visionops.io", "v1alpha1"  # of the CRDs in manifests/crds/ (the API's source of truth)
TRAINING_RUN_LABEL = API_GROUP + "/training-run"  # on a training Job and its pods: the TrainingRun's name
DRIFT_CHECK_LABEL = API_GROUP + "/drift-check"  # on a drift check's Jobs, CronJob and pods: the DriftCheck's name
PROMOTE_ANNOTATION = API_GROUP + "/promote"  # "true" on a run awaiting manual promotion promotes it
MODEL_VERSION_ANNOTATION = API_GROUP + "/model-version"  # on an InferenceService's predictor: the version

# ---------------------------------------------------------------- MLflow tags (runs and model versions)
TAG_PREFIX = API_GROUP + "/"
KIND_TAG = TAG_PREFIX + "kind"  # what logged the run: TRAINING_KIND or DRIFT_KIND
TRAINING_KIND, DRIFT_KIND = "training", "drift"
NAMESPACE_TAG = TAG_PREFIX + "namespace"  # the custom resource behind the run (TrainingRun or DriftCheck)
NAME_TAG = TAG_PREFIX + "name"
UID_TAG = TAG_PREFIX + "uid"
# identity field of the custom resource -> its tag (the registry copies them onto the model version)
IDENTITY_TAGS = {"namespace": NAMESPACE_TAG, "name": NAME_TAG, "uid": UID_TAG}
DIGEST_TAG = TAG_PREFIX + "dataset-digest"  # sha256:<hex> of the data a model learned from (visionops.lineage)
SOURCE_TAG = TAG_PREFIX + "dataset-source"  # where that data lay
PROGRESS_TAG = TAG_PREFIX + "progress"  # "<completed>/<planned>" epochs while training
RESUMED_FROM_TAG = TAG_PREFIX + "resumed-from-epoch"  # a retried pod continued the run after this epoch
EPOCHS_COMPLETED_TAG = TAG_PREFIX + "epochs-completed"
PROMOTION_TAG = TAG_PREFIX + "promotion"  # on a model version: "promoted" or "rejected"
PROMOTION_REASON_TAG = TAG_PREFIX + "promotion-reason"
SERVING_PRECISION_TAG = TAG_PREFIX + "serving-precision"  # on a training run: "int8" or "fp32" (the INT8 gate)
SERVING_REASON_TAG = TAG_PREFIX + "serving-reason"  # why
DRIFT_STATUS_TAG = TAG_PREFIX + "drift-status"  # a drift run's DriftStatus
DRIFT_REASON_TAG = TAG_PREFIX + "drift-reason"  # why a drift check was skipped

# ---------------------------------------------------------------- MLflow metric keys of a training run
MAP50, MAP50_95, PRECISION, RECALL = "map50", "map50_95", "precision", "recall"
SUMMARY_METRICS = (MAP50, MAP50_95, PRECISION, RECALL)  # per epoch, final at the last epoch's step
EPOCH_METRIC = "epoch"  # completed epochs, logged at step = completed epochs
AP50_METRIC_PREFIX = "ap50/"  # + <product>.<class>: AP50 of one class (visionops.registry.class_metric_key)
DRIFT_SCORE_METRIC_PREFIX = "drift_score/"  # + <feature>: a drift run's score of one feature
# the INT8 gate: val map50 of the FP32 ONNX export and of its INT8 quantization, evaluated the same way
EXPORT_FP32_MAP50, EXPORT_INT8_MAP50 = "export_fp32_map50", "export_int8_map50"

# ---------------------------------------------------------------- artifact layout
MODEL_ARTIFACT_PATH = "model"  # a training run's model folder: what a registered version points at
WEIGHTS_FILE = "best.pt"  # PyTorch weights (retraining, analysis, the drift job's model features)
ONNX_FILE = "best.onnx"  # the ONNX export the predictor serves
CLASS_MAP_FILE = "class_map.json"  # {"names": ["<product>/<class>", ...], ...}
DATA_CARD_FILE = "data_card.json"  # what the model was trained on
MODEL_FILES = (WEIGHTS_FILE, ONNX_FILE, CLASS_MAP_FILE)  # what a registered version must hold
# OpenVINO INT8 IR of best.onnx's model: in model/ only when it passed its accuracy gate (training_job.quantize);
# the predictor's OpenVINO runtime serves it instead of best.onnx
INT8_MODEL_FILE, INT8_WEIGHTS_FILE = "best_int8.xml", "best_int8.bin"
INT8_FILES = (INT8_MODEL_FILE, INT8_WEIGHTS_FILE)
CHECKPOINT_ARTIFACT_DIR = "checkpoint"  # a training run's latest epoch (ultralytics' last.pt), for a retried pod
CHECKPOINT_FILE = "last.pt"
PER_CLASS_ARTIFACT = "per_class_ap50.json"  # AP50 by class name, at the run's root
DATASET_ARTIFACT_DIR = "dataset"  # the data card and a sample grid
PLOTS_ARTIFACT_DIR = "plots"  # ultralytics' training plots
REPORT_ARTIFACT_DIR = "report"  # a drift run's Evidently report (REPORT_FILE)
REPORT_FILE = "drift_report.html"
FEATURES_ARTIFACT_DIR = "features"  # a drift run's feature tables and embeddings
RESULT_ARTIFACT = "result.json"  # a drift run's full result document (never truncated)

# ---------------------------------------------------------------- environment of the Jobs and the predictor
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
NAMESPACE_ENV = "VISIONOPS_NAMESPACE"  # the custom resource a Job works for (set by the operator)
NAME_ENV = "VISIONOPS_NAME"
UID_ENV = "VISIONOPS_UID"
KIND_ENV = "VISIONOPS_KIND"
IDENTITY_ENV = {"namespace": NAMESPACE_ENV, "name": NAME_ENV, "uid": UID_ENV}
RESULT_FILE_ENV = "VISIONOPS_RESULT_FILE"  # where a Job writes its result document
DEBUG_ENV = "VISIONOPS_DEBUG"  # set: a failing Job prints its traceback too
DATASET_ENV = "VISIONOPS_DATASET"  # training job inputs
PRODUCTS_ENV = "VISIONOPS_PRODUCTS"
WORKDIR_ENV = "VISIONOPS_WORKDIR"
EXPERIMENT_ENV = "VISIONOPS_EXPERIMENT"
INIT_FROM_ENV = "VISIONOPS_INIT_FROM"
MODEL_URI_ENV = "VISIONOPS_MODEL_URI"  # the predictor's model (set by the chart, patched by the operator)
TERMINATION_LOG = "/dev/termination-log"  # a Job container's result file: Kubernetes keeps it as its message
TERMINATION_MESSAGE_LIMIT = 4096  # bytes of a termination message Kubernetes keeps
# What the predictor's own lines on stderr start with: its last one before an exit is the reason it gives up (the
# operator quotes it from the pod's termination message, FallbackToLogsOnError).
PREDICTOR_LINE_PREFIX = "visionops serve: "


# ---------------------------------------------------------------- result documents
class ContractError(ValueError):
    """A document that is not what the contract says (the message names the field and why)."""


class DriftStatus(StrEnum):
    """A drift check's verdict (``status`` of a :class:`DriftResult`)."""

    DRIFT = "drift"
    NO_DRIFT = "no_drift"
    SKIPPED = "skipped"  # too few images on a side: no verdict (``reason`` says why)
    FAILED = "failed"  # the check could not run (``error`` says why)


class _Invalid(Exception):
    """A value of the wrong kind; the argument says what it must be."""


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise _Invalid("a string")


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _Invalid("true or false")


def _count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise _Invalid("an integer >= 0")


def _number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _Invalid("a number")


def _object(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return dict(value)
    raise _Invalid("an object")


def _numbers(value: Any) -> dict[str, float]:
    try:
        return {k: _number(v) for k, v in _object(value).items()}
    except _Invalid:
        raise _Invalid("an object of numbers") from None


def _objects(value: Any) -> dict[str, dict[str, Any]]:
    try:
        return {k: _object(v) for k, v in _object(value).items()}
    except _Invalid:
        raise _Invalid("an object of objects") from None


def _texts(value: Any) -> list[str]:
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    raise _Invalid("a list of strings")


def _drift_status(value: Any) -> str:
    try:
        return DriftStatus(value).value
    except ValueError:
        raise _Invalid(f"one of {', '.join(DriftStatus)}") from None


def _is(check: Callable[[Any], Any]) -> dict[str, Any]:
    """Field metadata: ``check`` validates and normalises the value of an optional field (``None``: absent)."""
    return {"check": check}


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)


@dataclass(frozen=True)
class _Document:
    """A result document: its fields are the JSON keys; ``None`` fields are left out of the JSON.

    Every kind has ``run_id`` (its MLflow run), ``error`` (why the Job failed, one line) and ``truncated``
    (fields were dropped to fit the termination message).
    """

    BULKY: ClassVar[tuple[str, ...]] = ()  # dropped in this order when the JSON would not fit a limit

    run_id: str | None = field(default=None, metadata=_is(_text))
    error: str | None = field(default=None, metadata=_is(_text))
    truncated: bool | None = field(default=None, metadata=_is(_flag))

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            try:
                object.__setattr__(self, f.name, f.metadata["check"](value))
            except _Invalid as bad:
                raise ContractError(f"{type(self).__name__}: {f.name} must be {bad}, got {value!r:.80}") from None
        self._require()

    def _require(self) -> None:
        """Rules across fields (``ContractError`` when broken)."""

    @classmethod
    def failure(cls, error: str, run_id: str | None = None) -> Self:
        """The document of a Job that failed with ``error`` (after starting MLflow run ``run_id``, if any)."""
        return cls(error=error, run_id=run_id)

    @property
    def failed(self) -> bool:
        return self.error is not None

    @classmethod
    def from_dict(cls, data: Any, *, strict: bool = False) -> Self:
        """Check and type ``data``; unknown keys are ignored, or with ``strict`` refused (a Job writing its own)."""
        if not isinstance(data, Mapping):
            raise ContractError(f"{cls.__name__} must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if strict and unknown:
            raise ContractError(f"{cls.__name__} has no field {', '.join(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def parse(cls, text: str | bytes) -> Self:
        """The document in ``text`` (a result file, a termination message); ``ContractError`` when it is not one."""
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ContractError(f"{cls.__name__} is not JSON ({error})") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The JSON fields (those that are set)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def to_json(self, limit: int | None = TERMINATION_MESSAGE_LIMIT) -> str:
        """Compact JSON of at most ``limit`` bytes: the ``BULKY`` fields go first (``truncated`` then says so)."""
        data = self.to_dict()
        text = _dumps(data)
        bulky = [key for key in self.BULKY if key in data]
        while limit is not None and len(text.encode()) > limit and bulky:
            del data[bulky.pop(0)]
            data["truncated"] = True
            text = _dumps(data)
        if limit is not None and len(text.encode()) > limit:
            raise ContractError(f"{type(self).__name__} takes {len(text.encode())} bytes, over the {limit}-byte "
                                f"limit even without {', '.join(self.BULKY)}")
        return text


@dataclass(frozen=True)
class TrainingResult(_Document):
    """What the training Job leaves: the MLflow run and its final scores, or ``error`` (one line) when it failed.

    ``metrics`` holds SUMMARY_METRICS, ``per_class_ap50`` AP50 by class name, ``dataset_digest`` the value
    of DIGEST_TAG, ``init_from`` the ``{source, version}`` of the starting weights, ``serving`` the INT8 gate's
    ``{precision, reason, fp32_score, int8_score, max_drop}`` (scores: val mAP50; training_job.quantize). The
    operator also rebuilds one from the MLflow run (``run_id``, the run's ``status``, ``metrics``) when the termination
    message is gone.
    """

    BULKY: ClassVar[tuple[str, ...]] = ("per_class_ap50", "phase_seconds", "init_from")

    status: str | None = field(default=None, metadata=_is(_text))
    experiment_id: str | None = field(default=None, metadata=_is(_text))
    artifact_uri: str | None = field(default=None, metadata=_is(_text))
    model_uri: str | None = field(default=None, metadata=_is(_text))
    metrics: dict[str, float] | None = field(default=None, metadata=_is(_numbers))
    per_class_ap50: dict[str, float] | None = field(default=None, metadata=_is(_numbers))
    dataset_digest: str | None = field(default=None, metadata=_is(_text))
    init_from: dict[str, Any] | None = field(default=None, metadata=_is(_object))
    serving: dict[str, Any] | None = field(default=None, metadata=_is(_object))
    resumed_from_epoch: int | None = field(default=None, metadata=_is(_count))
    epochs_completed: int | None = field(default=None, metadata=_is(_count))
    seconds_per_epoch: float | None = field(default=None, metadata=_is(_number))
    phase_seconds: dict[str, float] | None = field(default=None, metadata=_is(_numbers))
    duration_s: float | None = field(default=None, metadata=_is(_number))

    def _require(self) -> None:
        if not self.run_id and self.error is None:
            raise ContractError("TrainingResult needs run_id (a trained model) or error (a failed Job)")


@dataclass(frozen=True)
class DriftResult(_Document):
    """What the drift Job leaves: its verdict (``status``, a DriftStatus) and the evidence, or ``error``.

    ``drift_share`` is the largest share of drifted features of a group (``group_shares``), compared
    with ``drift_share_threshold``; ``feature_scores`` holds each feature's score, method, threshold,
    verdict and group; ``reference_from`` the model version whose training data is the reference;
    ``model`` the model whose features were compared; ``reason`` why a check was skipped.
    """

    BULKY: ClassVar[tuple[str, ...]] = ("feature_scores", "group_shares", "model", "reference_from")

    status: str | None = field(default=None, metadata=_is(_drift_status))
    drift_detected: bool | None = field(default=None, metadata=_is(_flag))
    reason: str | None = field(default=None, metadata=_is(_text))
    reference_count: int | None = field(default=None, metadata=_is(_count))
    current_count: int | None = field(default=None, metadata=_is(_count))
    unreadable_images: int | None = field(default=None, metadata=_is(_count))
    drift_share: float | None = field(default=None, metadata=_is(_number))
    drift_share_threshold: float | None = field(default=None, metadata=_is(_number))
    group_shares: dict[str, float] | None = field(default=None, metadata=_is(_numbers))
    drifted_features: list[str] | None = field(default=None, metadata=_is(_texts))
    feature_scores: dict[str, dict[str, Any]] | None = field(default=None, metadata=_is(_objects))
    reference_from: dict[str, Any] | None = field(default=None, metadata=_is(_object))
    model: dict[str, Any] | None = field(default=None, metadata=_is(_object))
    report_uri: str | None = field(default=None, metadata=_is(_text))

    def _require(self) -> None:
        if self.status is None:
            raise ContractError("DriftResult needs a status")
        if (self.status == DriftStatus.FAILED) != (self.error is not None):
            raise ContractError(f"DriftResult: status {self.status} "
                                + ("needs an error" if self.error is None else "cannot carry an error"))
        if self.status == DriftStatus.FAILED:
            return
        missing = [k for k in ("drift_detected", "reference_count", "current_count") if getattr(self, k) is None]
        if missing:
            raise ContractError(f"DriftResult: status {self.status} needs {', '.join(missing)}")
        if self.drift_detected != (self.status == DriftStatus.DRIFT):
            raise ContractError(f"DriftResult: status {self.status} contradicts drift_detected {self.drift_detected}")

    @classmethod
    def failure(cls, error: str, run_id: str | None = None) -> Self:
        return cls(status=DriftStatus.FAILED, error=error, run_id=run_id)


Document = TrainingResult | DriftResult
