"""Error analysis of a training run: per-class AP50 bands and the images the model gets most wrong.

The CLI's answer to the old web UI's step 5. AP50 per class comes from the run in MLflow (what the
training job logged); with a dataset, the run's ``model/best.pt`` predicts the val images, each
image gets an error (missed GT + false positives, class-aware matching at IoU 0.5), and the
hardest ones are drawn with GT (green) vs predicted (red) boxes. Pure functions first.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from visionops import config, progress
from visionops.data.samples import XYXY, Colour, DrawBox, compose_grid, draw_boxes, fit_size, yolo_to_xyxy

GOOD_AP50 = 0.70
FAIR_AP50 = 0.40
BANDS = ("good", "fair", "poor")
ANSI = {"good": "\033[32m", "fair": "\033[33m", "poor": "\033[31m"}
ANSI_RESET = "\033[0m"
IOU_THRESHOLD = 0.5
DEFAULT_HARDEST = 6
GT_COLOUR: Colour = (40, 200, 60)
PRED_COLOUR: Colour = (230, 40, 40)
RENDER_SIDE = 640
REPORT_JSON = "analysis.json"
ARTIFACT_DIR = "analysis"
HARDEST_PREFIX = "hardest_"
CLASS_CHART = "per_class_ap50.png"
BAND_COLOURS = {"good": "#2e9d44", "fair": "#e0a400", "poor": "#d63a2f"}

Say = Callable[[str], None]


class AnalysisError(RuntimeError):
    """The run or dataset cannot be analysed (the message says which and why)."""


# -- per-class AP50 ----------------------------------------------------------------------------


def band(ap50: float) -> str:
    """``good`` (>= 70 %), ``fair`` (40-70 %) or ``poor`` (< 40 %) for an AP50 in [0, 1]."""
    if ap50 >= GOOD_AP50:
        return "good"
    return "fair" if ap50 >= FAIR_AP50 else "poor"


def class_rows(per_class: Mapping[str, float]) -> list[dict[str, Any]]:
    """``[{"class", "ap50", "band"}]`` sorted worst first (ties by name)."""
    rows = [{"class": name, "ap50": float(ap), "band": band(float(ap))} for name, ap in per_class.items()]
    return sorted(rows, key=lambda row: (row["ap50"], row["class"]))


def band_counts(rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many classes fall in each band (every band present, possibly 0)."""
    return {name: sum(1 for row in rows if row["band"] == name) for name in BANDS}


def format_table(rows: Sequence[Mapping[str, Any]], colour: bool = False, bar_width: int = 20) -> str:
    """A text table ``class  AP50  bar  band``; ``colour`` paints the bar and band with ANSI codes."""
    if not rows:
        return "(no per-class AP50)"
    width = max(len("class"), *(len(row["class"]) for row in rows))
    lines = [f"{'class':<{width}}  {'AP50':>6}  {'':<{bar_width}}  band", "-" * (width + bar_width + 16)]
    for row in rows:
        filled = round(min(max(row["ap50"], 0.0), 1.0) * bar_width)
        bar, word = "#" * filled + "." * (bar_width - filled), row["band"]
        if colour:
            bar, word = f"{ANSI[word]}{bar}{ANSI_RESET}", f"{ANSI[word]}{word}{ANSI_RESET}"
        lines.append(f"{row['class']:<{width}}  {row['ap50'] * 100:5.1f}%  {bar}  {word}")
    return "\n".join(lines)


# -- per-image error ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """A GT or predicted box in pixels; ``confidence`` is ``None`` for ground truth."""

    class_name: str
    xyxy: XYXY
    confidence: float | None = None


@dataclass(frozen=True)
class ImageError:
    """Outcome of matching one image's predictions to its GT."""

    matched: int
    missed: int
    false_positives: int

    @property
    def error(self) -> int:
        return self.missed + self.false_positives


def iou(a: XYXY, b: XYXY) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes (0 when either is empty)."""
    inter_w = min(a[2], b[2]) - max(a[0], b[0])
    inter_h = min(a[3], b[3]) - max(a[1], b[1])
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(gt: Sequence[Box], predicted: Sequence[Box], threshold: float = IOU_THRESHOLD) -> ImageError:
    """Greedy class-aware matching, most confident prediction first (as in mAP@threshold).

    A prediction matches the unmatched GT box of the same class with the highest IoU >= ``threshold``;
    unmatched predictions are false positives (duplicates and wrong classes included), unmatched GT
    boxes are missed.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"IoU threshold must be in (0, 1], got {threshold}")
    free = set(range(len(gt)))
    matched = 0
    for pred in sorted(predicted, key=lambda p: -(p.confidence or 0.0)):
        best, best_iou = None, threshold
        for i in free:
            if gt[i].class_name == pred.class_name and (overlap := iou(gt[i].xyxy, pred.xyxy)) >= best_iou:
                best, best_iou = i, overlap
        if best is not None:
            free.discard(best)
            matched += 1
    return ImageError(matched=matched, missed=len(free), false_positives=len(predicted) - matched)


def hardest(errors: Mapping[str, ImageError], count: int) -> list[str]:
    """Names of up to ``count`` images with an error, worst first (then most missed, then name)."""
    wrong = [name for name, e in errors.items() if e.error > 0]
    return sorted(wrong, key=lambda name: (-errors[name].error, -errors[name].missed, name))[:count]


# -- MLflow, model and data --------------------------------------------------------------------


@dataclass(frozen=True)
class GroundTruth:
    """One val image: a display name, its file and its GT boxes in pixels."""

    name: str
    path: Path
    boxes: tuple[Box, ...]


def run_per_class(client: Any, run_id: str) -> tuple[float, dict[str, float]]:
    """``(map50, AP50 by class name)`` of a training run, as the registry reads them."""
    from mlflow.exceptions import MlflowException

    from visionops.registry import RegistryError, run_metrics

    try:
        metrics = run_metrics(client, run_id)
    except MlflowException as error:
        raise AnalysisError(f"run {run_id!r} cannot be read from MLflow: {error.message[:300]}") from error
    except RegistryError as error:
        raise AnalysisError(str(error)) from error
    if not metrics.per_class:
        raise AnalysisError(f"run {run_id} logged no per-class AP50 (per_class_ap50.json or ap50/* metrics)")
    return metrics.map50, metrics.per_class


def download_model(tracking_uri: str, run_id: str, dst: Path) -> tuple[Path, list[str]]:
    """Fetch the run's ``model/best.pt`` and ``model/class_map.json``; return the weights and class names."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from visionops.data.classmap import load_class_map
    from visionops.registry import MODEL_ARTIFACT_PATH

    local = {}
    for name in ("best.pt", "class_map.json"):
        try:
            local[name] = Path(mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=f"{MODEL_ARTIFACT_PATH}/{name}", dst_path=str(dst),
                tracking_uri=tracking_uri,
            ))
        except (MlflowException, OSError) as error:
            raise AnalysisError(f"run {run_id} has no readable {MODEL_ARTIFACT_PATH}/{name} artifact: "
                                f"{str(error)[:300]}") from error
    return local["best.pt"], load_class_map(local["class_map.json"]).names


def load_ground_truth(dataset: str | Path, products: Sequence[str] | None = None) -> list[GroundTruth]:
    """Val images and GT boxes of a prepared dataset, or of a VISION root (only ``products``)."""
    from PIL import Image

    from visionops.data.classmap import global_name
    from visionops.data.prepare import PreparedDataset, is_prepared_dataset
    from visionops.data.samples import read_split
    from visionops.data.vision import find_products, load_split, select_products

    root = Path(dataset)
    if is_prepared_dataset(root):
        data = PreparedDataset.load(root)
        out = []
        for image in read_split(data, "val"):
            with Image.open(image.path) as picture:
                size = picture.size
            boxes = tuple(Box(data.names[b.class_id], yolo_to_xyxy(b.box, *size)) for b in image.boxes)
            out.append(GroundTruth(image.path.name, image.path, boxes))
        return out
    if not root.is_dir() or not find_products(root):
        raise AnalysisError(f"dataset {root} is neither a prepared dataset (data_card.json) nor a VISION root "
                            "(<Product>/val/_annotations.coco.json)")
    out = []
    for product in select_products(root, list(products) if products else None):
        for record in load_split(root, product, "val").images:
            boxes = tuple(Box(global_name(product, o.category_key), yolo_to_xyxy(o.box, record.width, record.height))
                          for o in record.objects)
            out.append(GroundTruth(f"{product}/{record.file_name}", record.path, boxes))
    return out


def predict(weights: Path, paths: Sequence[Path], class_names: Sequence[str], *, imgsz: int, conf: float,
            nms_iou: float, device: str, say: Say | None = None) -> list[list[Box]]:
    """Predicted boxes (original-image pixels) for each image, with ultralytics kept offline; a bar per image on a
    terminal (``say`` gets the occasional plain line otherwise)."""
    from visionops import offline

    offline.configure()
    from ultralytics import YOLO

    model = YOLO(str(weights))
    if len(model.names) != len(class_names):
        raise AnalysisError(f"{weights} predicts {len(model.names)} classes but the run's class_map.json "
                            f"names {len(class_names)}")
    out: list[list[Box]] = []
    results = model.predict([str(p) for p in paths], stream=True, imgsz=imgsz, conf=conf, iou=nms_iou,
                            device=device, verbose=False)
    for result in progress.bar(results, total=len(paths), desc="predicting val images", say=say):
        boxes = result.boxes
        out.append([
            Box(class_names[int(c)], (x1, y1, x2, y2), float(s))
            for (x1, y1, x2, y2), s, c in zip(boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(),
                                              strict=True)
        ])
    return out


def render(image: GroundTruth, predicted: Sequence[Box], error: ImageError, out: Path,
           side: int = RENDER_SIDE) -> Path:
    """Write ``out``: the image scaled to ``side``, GT boxes (green, names above) and predicted boxes (red, name
    and confidence below), a caption with the error and a legend."""
    from PIL import Image

    with Image.open(image.path) as raw:
        picture = raw.convert("RGB")
    width, height = picture.size
    picture = picture.resize(fit_size(width, height, side), Image.Resampling.BILINEAR)
    scale = picture.width / width

    def scaled(box: Box, colour: Colour) -> DrawBox:
        label = box.class_name if box.confidence is None else f"{box.class_name} {box.confidence:.2f}"
        corners = tuple(v * scale for v in box.xyxy)
        return DrawBox(corners, label, colour, label_below=box.confidence is not None)  # type: ignore[arg-type]

    draw_boxes(picture, [*(scaled(b, GT_COLOUR) for b in image.boxes), *(scaled(b, PRED_COLOUR) for b in predicted)])
    caption = f"{image.name}: missed {error.missed}, false positives {error.false_positives}, matched {error.matched}"
    grid = compose_grid([picture], [caption], side, [("ground truth", GT_COLOUR), ("predicted", PRED_COLOUR)])
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out, format="PNG")
    return out


def _file_stem(rank: int, name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name.replace("/", "_")).stem)
    return f"{HARDEST_PREFIX}{rank:02d}_{safe}"


def render_class_chart(rows: Sequence[Mapping[str, Any]], out: Path) -> Path:
    """Write ``out``: per-class AP50 as horizontal bars coloured by band (worst at the top), with the 40 % and
    70 % band limits drawn; the picture of the old UI's step 5."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = [str(row["class"]) for row in rows]
    values = [100.0 * float(row["ap50"]) for row in rows]
    figure, axes = plt.subplots(figsize=(8.0, 1.2 + 0.32 * max(len(rows), 1)), dpi=100)
    try:
        axes.barh(range(len(rows)), values, color=[BAND_COLOURS[str(row["band"])] for row in rows])
        axes.set_yticks(range(len(rows)), names, fontsize=8)
        axes.invert_yaxis()
        for limit in (FAIR_AP50, GOOD_AP50):
            axes.axvline(100 * limit, color="#666666", linestyle="--", linewidth=0.8)
        for y, value in enumerate(values):
            axes.text(min(value + 1, 92), y, f"{value:.0f} %", va="center", fontsize=7)
        axes.set_xlim(0, 100)
        from matplotlib.patches import Patch

        labels = {"good": "good >= 70 %", "fair": "fair 40-70 %", "poor": "poor < 40 %"}
        axes.legend(handles=[Patch(color=BAND_COLOURS[b], label=labels[b]) for b in BANDS], loc="lower right",
                    bbox_to_anchor=(1.0, 1.0), ncol=3, fontsize=7, frameon=False)
        axes.set_xlabel("AP50 (%)")
        axes.set_title("AP50 per class", loc="left")
        figure.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out, format="png")
    finally:
        plt.close(figure)
    return out


def analyze_images(
    *, tracking_uri: str, run_id: str, dataset: str | Path, out: Path, count: int, imgsz: int, conf: float,
    nms_iou: float, device: str, say: Say,
) -> dict[str, Any]:
    """Predict the val images with the run's model, rank them by error, draw the ``count`` hardest into ``out``."""
    with tempfile.TemporaryDirectory(prefix="visionops-analysis-") as tmp:
        say(f"downloading model/best.pt of run {run_id}")
        weights, class_names = download_model(tracking_uri, run_id, Path(tmp))
        return analyze_weights(weights=weights, class_names=class_names, dataset=dataset, out=out, count=count,
                               imgsz=imgsz, conf=conf, nms_iou=nms_iou, device=device, say=say)


def analyze_weights(
    *, weights: Path, class_names: Sequence[str], dataset: str | Path, out: Path, count: int, imgsz: int,
    conf: float, nms_iou: float, device: str, say: Say,
) -> dict[str, Any]:
    """:func:`analyze_images` for weights already on disk (the training job's ``best.pt``)."""
    if count < 0:
        raise ValueError(f"hardest count must be >= 0, got {count}")
    products = sorted({name.split("/", 1)[0] for name in class_names})
    images = load_ground_truth(dataset, products)
    if not images:
        raise AnalysisError(f"dataset {dataset} has no val images")
    say(f"predicting {len(images)} val images (imgsz {imgsz}, conf {conf}, device {device})")
    predictions = predict(weights, [i.path for i in images], class_names, imgsz=imgsz, conf=conf,
                          nms_iou=nms_iou, device=device, say=say)
    errors = {image.name: match_boxes(image.boxes, boxes) for image, boxes in zip(images, predictions, strict=True)}
    by_name = {image.name: (image, boxes) for image, boxes in zip(images, predictions, strict=True)}
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{HARDEST_PREFIX}*.png"):
        stale.unlink()
    worst = []
    for rank, name in enumerate(hardest(errors, count), start=1):
        image, boxes = by_name[name]
        png = render(image, boxes, errors[name], out / f"{_file_stem(rank, name)}.png")
        worst.append({"rank": rank, "image": name, "path": str(image.path), **asdict(errors[name]),
                      "error": errors[name].error, "gt": len(image.boxes), "predicted": len(boxes), "png": png.name})
    totals = {key: sum(getattr(e, key) for e in errors.values()) for key in ("matched", "missed", "false_positives")}
    return {
        "dataset": str(dataset), "images": len(images), "images_with_errors": sum(e.error > 0 for e in errors.values()),
        "gt_objects": sum(len(i.boxes) for i in images), "predicted_objects": sum(len(p) for p in predictions),
        **totals, "iou_threshold": IOU_THRESHOLD, "conf": conf, "imgsz": imgsz, "hardest": worst,
    }


def analyze(
    *, tracking_uri: str, run_id: str, dataset: str | Path | None = None, out: Path | None = None,
    count: int = DEFAULT_HARDEST, imgsz: int | None = None, conf: float | None = None, nms_iou: float | None = None,
    device: str = "cpu", log: bool = False, say: Say | None = None,
) -> dict[str, Any]:
    """Per-class AP50 of ``run_id``; with ``dataset`` also the hardest val images (PNGs + ``analysis.json`` in
    ``out``), logged under ``analysis/`` of the run when ``log``. ``imgsz`` defaults to the run's ``imgsz``
    parameter (else ``configs/training.yaml``), ``conf`` and ``nms_iou`` to ``configs/serving.yaml``."""
    from mlflow.tracking import MlflowClient

    say = say or (lambda _msg: None)
    if log and (dataset is None or out is None):
        raise ValueError("logging the analysis needs a dataset and an output folder")
    client = MlflowClient(tracking_uri=tracking_uri)
    map50, per_class = run_per_class(client, run_id)
    rows = class_rows(per_class)
    report: dict[str, Any] = {"run_id": run_id, "map50": map50, "bands": band_counts(rows), "per_class": rows}
    if dataset is None:
        return report
    if out is None:
        raise ValueError("analysing images needs an output folder")
    serving = config.load("serving")
    conf = float(serving["confidence"]) if conf is None else conf
    nms_iou = float(serving["iou"]) if nms_iou is None else nms_iou
    if imgsz is None:
        imgsz = int(client.get_run(run_id).data.params.get("imgsz") or config.load("training")["imgsz"])
    report["analysis"] = analyze_images(tracking_uri=tracking_uri, run_id=run_id, dataset=dataset, out=out,
                                        count=count, imgsz=imgsz, conf=conf, nms_iou=nms_iou, device=device, say=say)
    report["artifact_path"] = f"{ARTIFACT_DIR}/" if log else None
    files = write_report(report, out)
    if log:
        say(f"logging {out} to run {run_id} under {ARTIFACT_DIR}/")
        for path in files:
            client.log_artifact(run_id, str(path), ARTIFACT_DIR)
    return report


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """Write ``analysis.json`` and the per-class chart into ``out``; return every file of the analysis (also the
    hardest-image PNGs): the ``analysis/`` artifact layout of a run (docs/mlflow-layout.md)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    chart = render_class_chart(report["per_class"], out / CLASS_CHART)
    hardest_pngs = [out / item["png"] for item in report.get("analysis", {}).get("hardest", [])]
    return [out / REPORT_JSON, chart, *hardest_pngs]
