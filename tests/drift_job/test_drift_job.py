"""The drift check with the real Evidently (and the real MLflow server for the end-to-end CLI test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from drift_job.cli import main
from drift_job.detect import detect_drift, skipped_reason
from drift_job.features import FEATURES, collect_images, feature_table
from visionops import config
from visionops.data.drift_batch import simulate
from visionops.local_mlflow import free_port


def _write_images(folder: Path, count: int, seed: int, ext: str = ".png") -> None:
    """Textured images whose brightness, spread and sharpness vary from image to image."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        level, spread = rng.uniform(70, 140), rng.uniform(8, 30)
        pixels = rng.normal(level, spread, size=(40, 48, 3))
        pixels[:, : rng.integers(8, 40)] += rng.uniform(-20, 20)  # a vertical edge
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"img_{i:03d}{ext}")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A VISION-style reference (2 products, 70 train images), a same-distribution batch and a brighter one."""
    base = tmp_path_factory.mktemp("drift-images")
    _write_images(base / "vision" / "Casting" / "train", 40, seed=1)
    _write_images(base / "vision" / "Screw" / "train", 30, seed=2, ext=".jpg")
    _write_images(base / "vision" / "Casting" / "val", 30, seed=3)
    _write_images(base / "same", 30, seed=4)
    simulate(base / "vision" / "Casting" / "val", base / "bright", "brightness", 0.5, 1.0, seed=0)
    return {"reference": base / "vision", "same": base / "same", "bright": base / "bright", "base": base}


@pytest.fixture(scope="module")
def tables(images: dict[str, Path]):
    cap = int(config.load("drift")["max_image_pixels"])
    return {
        "reference": feature_table(collect_images(images["reference"], "train"), cap),
        "same": feature_table(collect_images(images["same"]), cap),
        "bright": feature_table(collect_images(images["bright"]), cap),
    }


def test_brightness_batch_drifts(tables, tmp_path: Path):
    report = tmp_path / "report.html"
    result = detect_drift(tables["reference"], tables["bright"], drift_share=0.5, min_reference=50,
                          min_current=20, report_path=report)
    assert result["status"] == "drift" and result["drift_detected"] is True
    assert result["drift_share"] >= 0.5
    assert "brightness_mean" in result["drifted_features"]
    assert set(result["feature_scores"]) == set(FEATURES)
    mean_score = result["feature_scores"]["brightness_mean"]
    assert mean_score["method"] == "K-S p_value" and mean_score["threshold"] == 0.05
    assert mean_score["score"] < 0.05 and mean_score["drifted"] is True
    assert (result["reference_count"], result["current_count"]) == (70, 30)
    assert "<html" in report.read_text()[:2000].lower()


def test_same_distribution_does_not_drift(tables):
    result = detect_drift(tables["reference"], tables["same"], drift_share=0.5, min_reference=50, min_current=20)
    assert result["status"] == "no_drift" and result["drift_detected"] is False
    assert result["drift_share"] < 0.5
    assert "brightness_mean" not in result["drifted_features"]


def test_too_few_images_is_skipped_without_running_evidently(tables, tmp_path: Path):
    report = tmp_path / "report.html"
    result = detect_drift(tables["reference"].head(10), tables["bright"], drift_share=0.5, min_reference=50,
                          min_current=20, report_path=report)
    assert result == {
        "status": "skipped", "drift_detected": False, "reference_count": 10, "current_count": 30,
        "reason": "reference has 10 images, needs at least 50",
    }
    assert not report.exists()
    assert skipped_reason(60, 5, 50, 20) == "current has 5 images, needs at least 20"
    assert skipped_reason(50, 20, 50, 20) is None


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_cli_without_mlflow_writes_result_and_report(images: dict[str, Path], tmp_path: Path, capsys):
    current = tmp_path / "current"
    current.mkdir()
    for path in images["bright"].rglob("*.png"):
        (current / path.name).write_bytes(path.read_bytes())
    (current / "corrupt.png").write_bytes(b"\x89PNG broken")
    result_file, out = tmp_path / "result.json", tmp_path / "out"
    rc = main(["--reference", str(images["reference"]), "--reference-split", "train", "--products", "Casting,Screw",
               "--current", str(current), "--tracking-uri", "", "--output-dir", str(out),
               "--result-file", str(result_file)])
    assert rc == 0
    result = _read(result_file)
    assert result["status"] == "drift" and result["unreadable_images"] == 1
    assert result["current_count"] == 30 and result["drift_share_threshold"] == 0.5
    assert "run_id" not in result and Path(result["report_uri"]).is_file()
    assert (out / "reference_features.csv").is_file() and (out / "current_features.csv").is_file()
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result


def test_cli_skips_with_overridden_minimum(images: dict[str, Path], tmp_path: Path):
    result_file = tmp_path / "result.json"
    rc = main(["--reference", str(images["reference"]), "--reference-split", "train", "--current",
               str(images["same"]), "--min-current", "31", "--tracking-uri", "", "--result-file", str(result_file)])
    assert rc == 0
    result = _read(result_file)
    assert result["status"] == "skipped" and result["reason"] == "current has 30 images, needs at least 31"


def test_cli_missing_folder_fails_with_one_line(images: dict[str, Path], tmp_path: Path, capsys):
    result_file = tmp_path / "result.json"
    rc = main(["--reference", str(images["reference"]), "--current", str(tmp_path / "nope"),
               "--tracking-uri", "", "--result-file", str(result_file)])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("drift: error: current folder") and "nope" in err[-1]
    assert _read(result_file) == {"status": "failed", "error": err[-1].removeprefix("drift: error: ")}


def test_cli_unreachable_mlflow_fails_fast(images: dict[str, Path], tmp_path: Path, capsys):
    uri = f"http://127.0.0.1:{free_port()}"
    result_file = tmp_path / "result.json"
    rc = main(["--reference", str(images["reference"]), "--current", str(images["same"]),
               "--tracking-uri", uri, "--result-file", str(result_file)])
    assert rc == 1
    assert "unreachable" in capsys.readouterr().err
    assert _read(result_file)["status"] == "failed"


def test_cli_bad_flag_is_a_usage_error(tmp_path: Path, capsys):
    assert main(["--reference", str(tmp_path), "--current", str(tmp_path), "--drift-share", "1.5"]) == 2
    assert "--drift-share: must be in (0, 1], got 1.5" in capsys.readouterr().err


def test_cli_reference_split_needs_the_vision_layout(images: dict[str, Path], capsys):
    rc = main(["--reference", str(images["same"]), "--reference-split", "train", "--current", str(images["same"]),
               "--tracking-uri", ""])
    assert rc == 1
    assert "expected the VISION layout" in capsys.readouterr().err


def test_module_entry_point_prints_help():
    proc = subprocess.run([sys.executable, "-m", "drift_job", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--reference-split" in proc.stdout


@pytest.mark.mlflow
def test_cli_logs_one_run_to_mlflow(images: dict[str, Path], tmp_path: Path, mlflow_uri: str, monkeypatch):
    monkeypatch.setenv("VISIONOPS_NAMESPACE", "factory")
    monkeypatch.setenv("VISIONOPS_NAME", "casting-check")
    monkeypatch.setenv("VISIONOPS_UID", "uid-1234")
    result_file = tmp_path / "result.json"
    rc = main(["--reference", str(images["reference"]), "--reference-split", "train", "--current",
               str(images["bright"]), "--tracking-uri", mlflow_uri, "--experiment", "drift-e2e",
               "--result-file", str(result_file)])
    assert rc == 0
    result = _read(result_file)
    assert result["status"] == "drift" and result["report_uri"].endswith("/report/drift_report.html")

    client = MlflowClient(tracking_uri=mlflow_uri)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "drift-e2e"
    assert {k: v for k, v in run.data.tags.items() if k.startswith("visionops.io/")} == {
        "visionops.io/kind": "drift", "visionops.io/namespace": "factory", "visionops.io/name": "casting-check",
        "visionops.io/uid": "uid-1234", "visionops.io/drift-status": "drift",
    }
    assert run.data.params["drift_share_threshold"] == "0.5" and run.data.params["reference_count"] == "70"
    assert run.data.metrics["drift_share"] == pytest.approx(result["drift_share"])
    assert run.data.metrics["drift_detected"] == 1.0
    assert set(run.data.metrics) >= {f"drift_score/{name}" for name in FEATURES}
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "features")}
    assert artifacts == {"features/reference_features.csv", "features/current_features.csv"}

    local = mlflow.artifacts.download_artifacts(artifact_uri=result["report_uri"], dst_path=str(tmp_path / "dl"),
                                                tracking_uri=mlflow_uri)
    assert "<html" in Path(local).read_text()[:2000].lower()
