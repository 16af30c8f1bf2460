"""``visionops analyze``: banding and per-image error (pure), then a real run on the session MLflow server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from fixtures.models import register_model_dir
from mlflow.tracking import MlflowClient
from PIL import Image

from training_job.job import log_final
from visionops.analysis import (
    ANSI,
    GT_COLOUR,
    PRED_COLOUR,
    Box,
    ImageError,
    band,
    band_counts,
    class_rows,
    format_table,
    hardest,
    iou,
    load_ground_truth,
    match_boxes,
    render,
)
from visionops.cli import main
from visionops.data.prepare import PreparedDataset


@pytest.mark.parametrize(("ap", "expected"), [(1.0, "good"), (0.70, "good"), (0.6999, "fair"), (0.40, "fair"),
                                              (0.3999, "poor"), (0.0, "poor")])
def test_band(ap: float, expected: str) -> None:
    assert band(ap) == expected


def test_class_rows_worst_first_and_band_counts() -> None:
    rows = class_rows({"b/x": 0.5, "a/y": 0.9, "c/z": 0.1, "a/x": 0.5})
    assert [r["class"] for r in rows] == ["c/z", "a/x", "b/x", "a/y"]
    assert [r["band"] for r in rows] == ["poor", "fair", "fair", "good"]
    assert band_counts(rows) == {"good": 1, "fair": 2, "poor": 1}
    assert band_counts([]) == {"good": 0, "fair": 0, "poor": 0}


def test_format_table_plain_and_coloured() -> None:
    rows = class_rows({"casting/inclusoes": 0.85, "screw/defect": 0.123})
    plain = format_table(rows)
    assert "\033[" not in plain
    lines = plain.splitlines()
    assert lines[2].startswith("screw/defect") and "12.3%" in lines[2] and lines[2].endswith("poor")
    assert lines[3].startswith("casting/inclusoes") and "85.0%" in lines[3] and lines[3].endswith("good")
    coloured = format_table(rows, colour=True).splitlines()
    assert f"{ANSI['poor']}poor" in coloured[2] and f"{ANSI['good']}good" in coloured[3]
    assert format_table([]) == "(no per-class AP50)"


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


def _gt(name: str, x: float) -> Box:
    return Box(name, (x, 0.0, x + 10.0, 10.0))


def _pred(name: str, x: float, conf: float) -> Box:
    return Box(name, (x, 0.0, x + 10.0, 10.0), conf)


def test_match_boxes() -> None:
    gt = [_gt("a", 0), _gt("b", 100)]
    assert match_boxes(gt, [_pred("a", 1, 0.9), _pred("b", 100, 0.8)]) == ImageError(2, 0, 0)
    # a wrong class counts once as missed and once as a false positive
    assert match_boxes(gt, [_pred("b", 0, 0.9), _pred("b", 100, 0.8)]) == ImageError(1, 1, 1)
    # a duplicate is a false positive; a box at IoU 1/3 < 0.5 does not match
    assert match_boxes(gt, [_pred("a", 0, 0.9), _pred("a", 0, 0.5), _pred("b", 105, 0.7)]) == ImageError(1, 1, 2)
    assert match_boxes([], [_pred("a", 0, 0.3)]) == ImageError(0, 0, 1)
    assert match_boxes(gt, []).error == 2
    with pytest.raises(ValueError, match=r"IoU threshold must be in \(0, 1\], got 0"):
        match_boxes(gt, [], threshold=0)


def test_match_boxes_prefers_the_most_confident_prediction() -> None:
    gt = [_gt("a", 0)]
    # the confident box takes the GT even though the weak one overlaps it better; the weak one is a false positive
    outcome = match_boxes(gt, [_pred("a", 0, 0.2), _pred("a", 2, 0.9)])
    assert outcome == ImageError(1, 0, 1)


def test_hardest_orders_by_error_then_missed_then_name() -> None:
    errors = {"c": ImageError(0, 1, 1), "a": ImageError(1, 0, 2), "b": ImageError(0, 2, 0), "ok": ImageError(3, 0, 0),
              "d": ImageError(0, 3, 0)}
    assert hardest(errors, 10) == ["d", "b", "c", "a"]
    assert hardest(errors, 2) == ["d", "b"]
    assert hardest(errors, 0) == []


def test_render_draws_gt_green_and_predictions_red(prepared_dataset: PreparedDataset, tmp_path: Path) -> None:
    image = next(g for g in load_ground_truth(prepared_dataset.root) if g.boxes)
    gt = image.boxes[0]
    predicted = [Box(gt.class_name, gt.xyxy, 0.9), Box(gt.class_name, (0.0, 0.0, 4.0, 4.0), 0.3)]
    outcome = match_boxes(image.boxes, predicted)
    assert outcome.matched == 1 and outcome.false_positives == 1
    png = render(image, predicted, outcome, tmp_path / "x.png", side=320)
    with Image.open(png) as picture:
        assert picture.width == 320
        colours = {c for _, c in picture.convert("RGB").crop((0, 0, 320, 320)).getcolors(320 * 320)}
    assert GT_COLOUR in colours and PRED_COLOUR in colours


PER_CLASS = {"casting/inclusoes": 0.85, "screw/defect": 0.5, "pcb_1/short": 0.12}


@pytest.fixture(scope="module")
def analysed_run(mlflow_uri: str, tiny_model_dir: Path) -> str:
    """A fresh run holding the tiny model under model/ plus what the training job logs at the end."""
    run_id = register_model_dir(mlflow_uri, tiny_model_dir, f"analysis-{uuid.uuid4().hex[:6]}").run_id
    client = MlflowClient(mlflow_uri)
    client.log_param(run_id, "imgsz", "64")
    log_final(client, run_id, 1, {"map50": 0.49, "map50_95": 0.2, "precision": 0.5, "recall": 0.4}, PER_CLASS, 1)
    return run_id


@pytest.mark.mlflow
@pytest.mark.slow
def test_analyze_per_class_table(mlflow_uri: str, analysed_run: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "--run-id", analysed_run, "--tracking-uri", mlflow_uri]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"run {analysed_run}: mAP50 49.0% - 1 good, 1 fair, 1 poor classes"
    assert [line.split()[0] for line in lines[4:7]] == ["pcb_1/short", "screw/defect", "casting/inclusoes"]
    assert [line.split()[-1] for line in lines[4:7]] == ["poor", "fair", "good"]  # no ANSI: stdout is not a tty

    assert main(["analyze", "--run-id", analysed_run, "--tracking-uri", mlflow_uri, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["per_class"][0] == {"class": "pcb_1/short", "ap50": 0.12, "band": "poor"}
    assert "analysis" not in report


@pytest.mark.mlflow
@pytest.mark.slow
def test_analyze_hardest_images_logged_to_the_run(
    mlflow_uri: str, analysed_run: str, prepared_dataset: PreparedDataset, synth_vision_root: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "analysis"
    assert main(["analyze", "--run-id", analysed_run, "--tracking-uri", mlflow_uri, "--dataset",
                 str(prepared_dataset.root), "--hardest", "3", "--out", str(out), "--log"]) == 0
    assert "hardest images" in capsys.readouterr().out
    report = json.loads((out / "analysis.json").read_text())
    images = report["analysis"]
    val = prepared_dataset.data_card["splits"]["val"]
    assert images["images"] == val["images"] and images["gt_objects"] == val["instances"]
    assert images["imgsz"] == 64  # from the run's params
    assert images["matched"] + images["missed"] == images["gt_objects"]
    assert images["matched"] + images["false_positives"] == images["predicted_objects"]
    worst = images["hardest"]
    assert 1 <= len(worst) <= 3 and [h["rank"] for h in worst] == list(range(1, len(worst) + 1))
    assert [h["error"] for h in worst] == sorted((h["error"] for h in worst), reverse=True)
    for item in worst:
        assert item["error"] == item["missed"] + item["false_positives"] > 0
        with Image.open(out / item["png"]) as png:
            assert png.format == "PNG" and png.width == 640
    logged = {Path(a.path).name for a in MlflowClient(mlflow_uri).list_artifacts(analysed_run, "analysis")}
    assert logged == {"analysis.json", "per_class_ap50.png", *(h["png"] for h in worst)}

    # a VISION root gives the same val images and GT objects as its prepared dataset
    assert main(["analyze", "--run-id", analysed_run, "--tracking-uri", mlflow_uri, "--dataset",
                 str(synth_vision_root), "--hardest", "1", "--out", str(tmp_path / "raw"), "--json"]) == 0
    raw = json.loads(capsys.readouterr().out)["analysis"]
    assert (raw["images"], raw["gt_objects"], raw["predicted_objects"]) == (
        images["images"], images["gt_objects"], images["predicted_objects"])
    assert len(list((tmp_path / "raw").glob("hardest_*.png"))) == len(raw["hardest"]) == 1


@pytest.mark.mlflow
@pytest.mark.slow
def test_analyze_errors(mlflow_uri: str, analysed_run: str, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    base = ["analyze", "--tracking-uri", mlflow_uri]
    assert main([*base, "--run-id", "0" * 32]) == 1
    assert f"run '{'0' * 32}' cannot be read from MLflow" in capsys.readouterr().err

    bare = MlflowClient(mlflow_uri).create_run("0").info.run_id
    assert main([*base, "--run-id", bare]) == 1
    assert f"run {bare} has no map50 metric" in capsys.readouterr().err

    assert main([*base, "--run-id", analysed_run, "--dataset", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert f"dataset {tmp_path} is neither a prepared dataset" in capsys.readouterr().err

    assert main([*base, "--run-id", analysed_run, "--log"]) == 2
    assert "--log needs --dataset" in capsys.readouterr().err
    assert main(["analyze", "--run-id", analysed_run, "--hardest", "-1"]) == 2
