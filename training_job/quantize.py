"""INT8 serving behind an accuracy gate: quantize the exported model, evaluate it, keep it only when it holds up.

After the ONNX export, the training Job quantizes the model for CPU with OpenVINO's NNCF post-training quantization
(ultralytics' OpenVINO export with ``int8``), calibrated on the run's own **training** images (never val, which
judges it). Then it evaluates the FP32 ONNX export (what is served without INT8) and the INT8 model on the val split
the same way (ultralytics' validator on the exported files, at the export's fixed input size), and
:func:`decide` keeps INT8 only when its map50 is at most ``max_drop`` below FP32's (a TrainingRun's
``spec.quantization.maxMap50Drop``). A kept INT8 model goes into ``model/`` as ``best_int8.xml``/``.bin``
(visionops.contract.INT8_FILES), which the predictor's OpenVINO runtime then serves; ``best.onnx`` is always there
(ONNX Runtime, the MLflow pyfunc, and the fallback). Both scores, the decision and its reason are logged on the run
and returned in the Job's result (the TrainingRun's ``status.serving``).
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from visionops.contract import INT8_MODEL_FILE, INT8_WEIGHTS_FILE

INT8, FP32 = "int8", "fp32"
CALIBRATION_SPLIT = "train"

Say = Callable[[str], None]


@dataclass(frozen=True)
class ServingDecision:
    """Which precision the version is served in, why, and the scores behind it (``None`` where not measured)."""

    precision: str
    reason: str
    fp32_score: float | None = None  # val mAP50 of the FP32 ONNX export
    int8_score: float | None = None  # val mAP50 of the INT8 model
    max_drop: float | None = None  # how far below fp32_score int8_score may be

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def decide(fp32_map50: float, int8_map50: float, max_drop: float) -> ServingDecision:
    """INT8 when its val map50 is at most ``max_drop`` below the FP32 export's, else FP32."""
    if not 0 <= max_drop <= 1:
        raise ValueError(f"max_drop must be in [0, 1], got {max_drop}")
    drop = fp32_map50 - int8_map50
    within = drop <= max_drop + 1e-9
    scores = f"INT8 map50 {int8_map50:.3f}, FP32 {fp32_map50:.3f}"
    if drop <= 0:
        reason = f"{scores}: INT8 is not lower (allowed drop {max_drop:.3f})"
    else:
        verdict = "within" if within else "over"
        reason = f"{scores}: INT8 is {drop:.3f} lower, {verdict} the allowed drop of {max_drop:.3f}"
    return ServingDecision(INT8 if within else FP32, reason, fp32_map50, int8_map50, max_drop)


def disabled() -> ServingDecision:
    return ServingDecision(FP32, "INT8 quantization is off for this run (spec.quantization.int8: false)")


def export_int8(best: Path, dataset_yaml: Path, imgsz: int) -> Path:
    """The OpenVINO INT8 IR of ``best`` (NNCF post-training quantization calibrated on the train split): the
    ``.xml`` path, its ``.bin`` beside it."""
    import nncf
    from ultralytics import YOLO

    nncf.set_log_level(logging.WARNING)  # not a line per operation of the detect head it leaves in FP32

    folder = Path(YOLO(str(best)).export(format="openvino", quantize="int8", data=str(dataset_yaml), imgsz=imgsz,
                                         batch=1, split=CALIBRATION_SPLIT, device="cpu", verbose=False))
    xml = folder / f"{best.stem}.xml"
    if not xml.is_file() or not xml.with_suffix(".bin").is_file():
        raise RuntimeError(f"the INT8 export wrote no {xml.name} and .bin in {folder}")
    return xml


def val_map50(exported: Path, dataset_yaml: Path, imgsz: int, project: Path, name: str) -> float:
    """val map50 of an exported model (an ``.onnx`` file or an OpenVINO model folder) at its fixed input size."""
    from ultralytics import YOLO

    metrics = YOLO(str(exported), task="detect").val(
        data=str(dataset_yaml), imgsz=imgsz, batch=1, device="cpu", workers=0, plots=False, split="val",
        project=str(project), name=name, exist_ok=True, verbose=False)
    return float(metrics.box.map50)


def quantize_and_gate(best: Path, onnx: Path, dataset_yaml: Path, imgsz: int, max_drop: float,
                      project: Path, say: Say) -> tuple[ServingDecision, Path | None]:
    """Quantize, evaluate both precisions, decide; return the decision and the INT8 ``.xml`` (when kept). A
    quantization that fails serves FP32 and says why: the trained model is not lost for it."""
    say(f"quantizing to INT8 (OpenVINO NNCF, calibrated on the {CALIBRATION_SPLIT} split)")
    try:
        with warnings.catch_warnings():  # torch.jit.trace's deprecation, twice, inside the export
            warnings.simplefilter("ignore", FutureWarning)
            xml = export_int8(best, dataset_yaml, imgsz)
        say("evaluating the FP32 and INT8 exports on the val split")
        fp32 = val_map50(onnx, dataset_yaml, imgsz, project, "val-fp32")
        int8 = val_map50(xml.parent, dataset_yaml, imgsz, project, "val-int8")
    except Exception as error:  # NNCF, OpenVINO or the validator: one line, FP32 is served
        reason = f"INT8 quantization failed ({type(error).__name__}: {str(error).splitlines()[0][:300]}); serving FP32"
        say(reason)
        return ServingDecision(FP32, reason, max_drop=max_drop), None
    decision = decide(fp32, int8, max_drop)
    say(f"serving {decision.precision.upper()}: {decision.reason}")
    return decision, xml if decision.precision == INT8 else None


def add_to_model_dir(xml: Path, model_dir: Path) -> None:
    """Copy the kept INT8 IR into ``model/`` under the contract's names."""
    shutil.copyfile(xml, model_dir / INT8_MODEL_FILE)
    shutil.copyfile(xml.with_suffix(".bin"), model_dir / INT8_WEIGHTS_FILE)
