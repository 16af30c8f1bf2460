"""The CPU runtimes that run the registered ``best.onnx``: ONNX Runtime and OpenVINO, behind one small interface.

OpenVINO also runs the version's INT8 model (``best_int8.xml``, an OpenVINO IR) when it carries one: its
``precision`` is then ``int8`` (else ``fp32``).

Both read the same ONNX file of the registered version; OpenVINO converts it in memory at load (its ONNX
frontend: 0.03 s of a 0.25 s load for YOLOv8n at 640 px, the CPU compile being the rest), so the registry holds one
model file for every runtime.
Each runtime runs f32 (OpenVINO's default precision hint is bf16 on CPUs with native bf16: 8 mantissa bits, not
what the parity with ``best.pt`` is measured on) with ``threads`` threads per inference; :func:`cpu_budget` is what
``threads=0`` means: the CPUs this container may use (its cgroup CPU limit, rounded up, or the cores it may run on).
The runtime libraries are imported only by the runtime chosen. ``import openvino`` would send a usage event to
Google Analytics: ``visionops.telemetry`` (run when ``visionops`` is imported, which this module does) makes its
telemetry package unimportable.
"""

from __future__ import annotations

import math
import os
import queue
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from predictor.artifacts import ModelArtifactError

ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
FP32, INT8 = "fp32", "int8"
IR_SUFFIX = ".xml"  # an OpenVINO IR (its weights in the .bin beside it): the INT8 model
RUNTIMES = (ONNXRUNTIME, OPENVINO)
CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")


@dataclass(frozen=True)
class Signature:
    """What a loaded model says about itself: input and output shapes (an int per static dimension, else a
    name or None) and the ultralytics ``task`` metadata (None when absent)."""

    input_shapes: list[list[Any]]
    output_shapes: list[list[Any]]
    task: str | None


class Session(Protocol):
    """A loaded model: its signature, and a thread-safe ``run`` of one ``[1, 3, H, W]`` float32 batch."""

    runtime: str
    version: str
    threads: int
    precision: str
    signature: Signature

    def run(self, batch: np.ndarray) -> np.ndarray: ...


def cpus_from_cgroup(cpu_max: str | None, cores: int) -> int:
    """CPUs a container may use from its cgroup v2 ``cpu.max`` text (``"<quota> <period>"`` or ``"max <period>"``;
    cgroup v1 gives the same two numbers, quota -1 meaning none) and the cores it may run on: the quota rounded
    up (a 1.5 CPU limit runs 2 threads, which together use the whole quota), never more than ``cores``."""
    parts = (cpu_max or "").split()
    if len(parts) != 2 or parts[0] in ("max", "-1"):
        return max(cores, 1)
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return max(cores, 1)
    if quota <= 0 or period <= 0:
        return max(cores, 1)
    return max(1, min(cores, math.ceil(quota / period)))


def read_cpu_max() -> str | None:
    """This container's CPU quota as ``"<quota> <period>"`` (cgroup v2, else v1), or None when unreadable."""
    try:
        return CGROUP_V2_CPU_MAX.read_text().strip()
    except OSError:
        pass
    try:
        quota = (CGROUP_V1_CPU / "cpu.cfs_quota_us").read_text().strip()
        period = (CGROUP_V1_CPU / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return f"{quota} {period}"


def cpu_budget() -> int:
    """Threads per inference when none are configured: the container's CPU limit, or the cores it may run on."""
    return cpus_from_cgroup(read_cpu_max(), len(os.sched_getaffinity(0)))


def open_session(runtime: str, path: Path, threads: int = 0) -> Session:
    """Load ``path`` (an ONNX file, or on OpenVINO also an IR ``.xml``) on ``runtime`` with ``threads`` threads per
    inference (0: :func:`cpu_budget`). A file the runtime cannot read raises :class:`ModelArtifactError` naming it."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
        raise ValueError(f"threads must be an integer >= 0 (0: the container's CPU limit), got {threads!r}")
    threads = threads or cpu_budget()
    return OnnxRuntimeSession(path, threads) if runtime == ONNXRUNTIME else OpenVinoSession(path, threads)


def _openvino_dims(shape: Any) -> list[int | None]:
    """An OpenVINO partial shape as a list: the length of each static dimension, None for a dynamic one."""
    return [d.get_length() if d.is_static else None for d in shape]


class OnnxRuntimeSession:
    """ONNX Runtime's CPU provider (``InferenceSession.run`` is thread-safe)."""

    runtime = ONNXRUNTIME
    precision = FP32

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # its threads would spin after each run, burning the pod's CPU quota while the server parses the next request
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/InvalidGraph types
            raise ModelArtifactError(f"cannot load ONNX model {path}: {type(exc).__name__}: {exc}") from exc
        self.version, self.threads = ort.__version__, threads
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self.signature = Signature([list(i.shape) for i in inputs], [list(o.shape) for o in outputs],
                                   self.session.get_modelmeta().custom_metadata_map.get("task"))
        self._input, self._output = inputs[0].name, outputs[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self._output], {self._input: batch})[0]


class OpenVinoSession:
    """OpenVINO's CPU plugin on the ONNX file converted in memory, tuned for latency (one stream using every
    thread). An infer request serves one call at a time: concurrent calls each take one from a pool."""

    runtime = OPENVINO

    def __init__(self, path: Path, threads: int):
        import openvino as ov
        from openvino.frontend import FrontEndManager

        is_ir = path.suffix == IR_SUFFIX
        try:
            if is_ir:  # the INT8 model, weights in the .bin beside it
                model = ov.Core().read_model(str(path))
            else:
                frontend = FrontEndManager().load_by_framework("onnx")  # only ONNX: no guessing among frontends
                model = frontend.convert(frontend.load(str(path)))
        except Exception as exc:  # GeneralFailure, OpConversionFailure, RuntimeError...
            kind = "OpenVINO IR" if is_ir else "ONNX model"
            raise ModelArtifactError(f"cannot load {kind} {path}: {type(exc).__name__}: {exc}") from exc
        self.precision = INT8 if is_ir else FP32
        # no pinning: threads pinned to the first cores it sees would put every replica on a node on the same cores
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
                  "ENABLE_CPU_PINNING": False}
        try:
            self.compiled = ov.Core().compile_model(model, "CPU", config)
        except Exception as exc:
            raise ModelArtifactError(f"OpenVINO cannot compile {path}: {type(exc).__name__}: {exc}") from exc
        self.version, self.threads = ov.get_version().split("-")[0], threads  # 2026.4.1-<build>-<branch>
        task_key = ["framework", "task"]  # where the ONNX frontend keeps the file's metadata
        task = model.get_rt_info(task_key).astype(str) if model.has_rt_info(task_key) else None
        self.signature = Signature([_openvino_dims(i.get_partial_shape()) for i in model.inputs],
                                   [_openvino_dims(o.get_partial_shape()) for o in model.outputs], task)
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def run(self, batch: np.ndarray) -> np.ndarray:
        try:
            request = self._requests.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            request.infer({0: batch})
            return request.get_output_tensor(0).data.copy()  # the request's buffer is reused by its next call
        finally:
            self._requests.put(request)
