"""Model-aware drift and the reference from lineage, on real parts: a really trained tiny YOLOv8n
(``tiny_model_dir``), real Evidently, the real MLflow server and registry (the model-aware check from lineage
also runs as its own process under the network audit), real tqdm on a real pty."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shutil
import struct
import sys
import termios
import uuid
from pathlib import Path

import numpy as np
import pytest
from fixtures.netaudit import NetAudit
from mlflow.tracking import MlflowClient

from drift_job.cli import main
from drift_job.features import FEATURES, collect_images, feature_table
from drift_job.model_features import (
    EMBEDDING,
    NO_DETECTION,
    PREDICTION_FEATURES,
    ModelSettings,
    load_model,
    model_features,
    model_input,
    prediction_row,
)
from drift_job.progress import bar
from drift_job.reference import lineage_reference
from visionops import lineage, registry
from visionops.data.drift_batch import simulate
from visionops.data.prepare import PreparedDataset, prepare
from visionops.data.synth import generate
from visionops.model_versions import ModelRef, ResolvedVersion, TrainingData, parse_models_uri

CAP = 1 << 26
# A part the model knows and one it never saw whose pixel statistics, once brightened to the same mean, stay under the
# drift threshold (only sharpness differs: the synthetic looks of visionops.data.synth.class_style)
REFERENCE, NEW_PART = "Casting", "Console"


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def content(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """REFERENCE train images as the reference; its inference images (same content) and a part the model never saw
    (NEW_PART) brightened until its mean brightness equals the reference's: a content change."""
    base = tmp_path_factory.mktemp("content")
    vision = generate(base / "vision", products=[REFERENCE, NEW_PART], train_images=40, val_images=1,
                      inference_images=30)
    reference = feature_table(collect_images(vision, "train", [REFERENCE]), CAP)
    part = feature_table(collect_images(vision / NEW_PART / "inference"), CAP)
    ratio = reference["brightness_mean"].mean() / part["brightness_mean"].mean()
    assert ratio >= 1, "the new part must be darker than the reference for a brightening to match it"
    simulate(vision / NEW_PART / "inference", base / "new_part", "brightness", ratio - 1, 1.0, seed=0)
    (base / "same").mkdir()
    for image in collect_images(vision / REFERENCE / "inference"):
        shutil.copyfile(image, base / "same" / image.name)
    return {"vision": vision, "new_part": base / "new_part", "same": base / "same", "base": base}


def _check(content: dict[str, Path], current: str, out: Path, *extra: str) -> dict:
    result_file = out.with_suffix(".json")
    rc = main(["--reference", str(content["vision"]), "--reference-split", "train", "--products", REFERENCE,
               "--current", str(content[current]), "--min-reference", "20", "--min-current", "20",
               "--tracking-uri", "", "--output-dir", str(out), "--result-file", str(result_file), *extra])
    assert rc == 0
    return _read(result_file)


def test_prediction_row_from_boxes():
    names = {0: "casting/inclusoes", 1: "casting/rechupe", 2: "screw/defect"}
    row = prediction_row(np.array([0.1, 0.6, 0.3]), np.array([1.0, 2.0, 0.0]), names, confidence=0.25)
    assert row == {"pred_confidence_max": pytest.approx(0.6), "pred_detections": 2, "pred_class": "screw/defect"}
    weak = prediction_row(np.array([0.1]), np.array([1.0]), names, confidence=0.25)
    assert weak == {"pred_confidence_max": pytest.approx(0.1), "pred_detections": 0, "pred_class": NO_DETECTION}
    assert prediction_row(np.zeros(0), np.zeros(0), names, 0.25) == {
        "pred_confidence_max": 0.0, "pred_detections": 0, "pred_class": NO_DETECTION}


def test_models_uri_forms():
    assert parse_models_uri("models:/det@production") == ModelRef("det", alias="production")
    assert parse_models_uri("models:/det/7").uri == "models:/det/7"
    with pytest.raises(ValueError, match=r"models:/<name>@<alias> or models:/<name>/<version>"):
        parse_models_uri("models:/det")


@pytest.mark.slow
def test_embedding_is_what_ultralytics_embed_returns_on_every_call(tiny_model_dir: Path,
                                                                  content: dict[str, Path]):
    model = load_model(tiny_model_dir / "best.pt")
    paths = collect_images(content["same"])[:5]
    settings = ModelSettings(imgsz=64, batch=2)
    first = model_features(model, paths, settings, CAP)
    again = model_features(model, paths[:3], settings, CAP)  # a second call: the hook must still fire
    arrays = [model_input(p, CAP, 64) for p in paths]
    expected = np.stack([e.numpy() for e in model.yolo.embed(arrays, imgsz=64, embed=[model.layer], verbose=False)])
    assert model.layer == 9 and first.embeddings.shape == (5, expected.shape[1])
    np.testing.assert_allclose(first.embeddings, expected, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(again.embeddings, expected[:3], rtol=1e-4, atol=1e-9)
    assert list(first.table.columns) == ["image", *PREDICTION_FEATURES]
    assert first.table["image"].tolist() == [str(p) for p in paths]
    assert set(first.table["pred_class"]) <= {NO_DETECTION, *model.yolo.names.values()}


@pytest.mark.slow
def test_model_features_see_a_new_part_that_the_image_statistics_miss(tiny_model_dir: Path,
                                                                      content: dict[str, Path], tmp_path: Path):
    pixels_only = _check(content, "new_part", tmp_path / "pixels")
    assert pixels_only["status"] == "no_drift" and pixels_only["group_shares"]["image"] < 0.5
    assert "model" not in pixels_only

    result = _check(content, "new_part", tmp_path / "model", "--model-uri", str(tiny_model_dir / "best.pt"))
    assert result["status"] == "drift" and result["drift_detected"] is True
    assert result["group_shares"]["image"] == pixels_only["group_shares"]["image"]  # the pixels alone: no drift
    assert result["group_shares"]["embedding"] == 1.0
    assert result["drift_share"] == 1.0 and EMBEDDING in result["drifted_features"]
    scores = result["feature_scores"]
    assert set(scores) == {*FEATURES, *PREDICTION_FEATURES, EMBEDDING}
    assert {name: s["group"] for name, s in scores.items()} == {
        **dict.fromkeys(FEATURES, "image"), **dict.fromkeys(PREDICTION_FEATURES, "predictions"),
        EMBEDDING: "embedding"}
    assert scores[EMBEDDING]["method"].startswith("distance (euclidean") and scores[EMBEDDING]["score"] > 0
    assert result["model"] == {"uri": str(tiny_model_dir / "best.pt"), "imgsz": 64, "embedding_layer": 9,
                               "confidence": 0.25}
    out = tmp_path / "model"
    assert np.load(out / "reference_embeddings.npy").shape[0] == result["reference_count"] == 40
    assert {"pred_confidence_max", "pred_detections", "pred_class"} <= set(
        (out / "current_features.csv").read_text().splitlines()[0].split(","))
    html = (out / "drift_report.html").read_text()
    assert f"Drift in embeddings '{EMBEDDING}'" in html
    assert "Data drift detected. Drift detection method: distance" in html
    assert "Value Drift for column pred_confidence_max" in html

    same = _check(content, "same", tmp_path / "same", "--model-uri", str(tiny_model_dir / "best.pt"))
    assert same["status"] == "no_drift" and max(same["group_shares"].values()) < 0.5
    assert EMBEDDING not in same["drifted_features"]


def _training_run_with_lineage(client: MlflowClient, model_dir: Path, source: Path, data: PreparedDataset,
                               products: list[str]) -> str:
    """A finished run as the training job leaves it: products param, dataset input and tags, model/ files."""
    experiment = client.get_experiment_by_name("drift-lineage") or client.get_experiment(
        client.create_experiment("drift-lineage"))
    run_id = client.create_run(experiment.experiment_id, tags={"visionops.io/kind": "training"}).info.run_id
    client.log_param(run_id, "products", ",".join(products))
    lineage.log_dataset_input(client, run_id, digest=lineage.dataset_digest(data.root), source=str(source),
                              products=products, card=data.data_card)
    client.log_artifacts(run_id, str(model_dir), registry.MODEL_ARTIFACT_PATH)
    client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.mark.mlflow
@pytest.mark.slow
def test_reference_from_model_follows_the_production_version(mlflow_uri: str, tiny_model_dir: Path,
                                                             synth_vision_root: Path, content: dict[str, Path],
                                                             tmp_path: Path):
    client = MlflowClient(tracking_uri=mlflow_uri)
    name = f"drift-lineage-{uuid.uuid4().hex[:6]}"
    versions = {}
    for products in (["Casting", "Screw"], ["PCB_1"]):
        data = prepare(synth_vision_root, tmp_path / "-".join(products), products)
        run_id = _training_run_with_lineage(client, tiny_model_dir, synth_vision_root, data, products)
        version = registry.register_version(client, name, run_id)
        versions[tuple(products)] = (str(version.version), run_id, lineage.dataset_digest(data.root))

    uri = f"models:/{name}@production"
    audit = NetAudit.create(tmp_path / "audit")
    for products, (version, run_id, digest) in versions.items():
        registry.promote(client, name, version)  # a retraining promoted: the next check follows it
        result_file = tmp_path / f"result-{version}.json"
        argv = ["--reference-from-model", uri, "--current", str(content["same"]), "--min-reference", "20",
                "--min-current", "20", "--tracking-uri", mlflow_uri, "--experiment", "drift-lineage",
                "--result-file", str(result_file)]
        if products == ("PCB_1",):  # + the model features, as a Job runs it: a process of its own, offline
            proc = audit.run([sys.executable, "-m", "drift_job", *argv, "--model-uri", uri], cwd=tmp_path)
            assert proc.returncode == 0, proc.stderr[-3000:]
            assert audit.attempts() == []
        else:
            assert main(argv) == 0
        result = _read(result_file)
        assert result["reference_from"] == {
            "uri": uri, "name": name, "version": version, "run_id": run_id, "dataset_digest": digest,
            "dataset_source": str(synth_vision_root), "products": list(products), "split": "train",
            "digest_verified": False}
        assert result["reference_count"] == 20 * len(products)
        params = client.get_run(result["run_id"]).data.params
        assert params["reference_model_version"] == version and params["reference_dataset_digest"] == digest
        assert params["products"] == ",".join(products)
        if products == ("PCB_1",):  # the model features use the same version the reference came from
            assert result["model"]["version"] == version and result["model"]["uri"] == uri
            assert EMBEDDING in result["feature_scores"]


@pytest.mark.mlflow
@pytest.mark.slow
def test_version_without_lineage_tags_fails_with_one_line(mlflow_uri: str, registered_tiny_model, tmp_path: Path,
                                                          content: dict[str, Path], capsys):
    result_file = tmp_path / "result.json"
    rc = main(["--reference-from-model", registered_tiny_model.alias_uri, "--current", str(content["same"]),
               "--tracking-uri", mlflow_uri, "--result-file", str(result_file)])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    expected = (f"drift: error: model version {registered_tiny_model.name}/{registered_tiny_model.version} "
                f"({registered_tiny_model.alias_uri}) has no lineage tag visionops.io/dataset-source or "
                "visionops.io/dataset-digest")
    assert err[-1].startswith(expected)
    assert _read(result_file) == {"status": "failed", "error": err[-1].removeprefix("drift: error: ")}


def test_prepared_dataset_reference_is_checked_against_its_digest(prepared_dataset: PreparedDataset,
                                                                  tmp_path: Path):
    copy = tmp_path / "prepared"
    shutil.copytree(prepared_dataset.root, copy)
    digest = lineage.dataset_digest(copy)
    version = ResolvedVersion(ModelRef("det", alias="production"), "3", "run-1")
    ref = lineage_reference(version, TrainingData(str(copy), digest, ["Casting", "PCB_1", "Screw"]), "train")
    assert ref.digest_verified and ref.paths == sorted((copy / "images" / "train").iterdir())
    assert ref.describe()["version"] == "3" and ref.describe()["dataset_digest"] == digest

    label = sorted((copy / "labels" / "train").glob("*.txt"))[0]
    label.write_text(label.read_text() + "0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(ValueError, match=r"changed since training: its digest is sha256:\w+, the version records"):
        lineage_reference(version, TrainingData(str(copy), digest, []), "train")
    with pytest.raises(FileNotFoundError, match="must see the training data at the same path"):
        lineage_reference(version, TrainingData(str(tmp_path / "gone"), digest, []), "train")


def test_flag_combinations(tmp_path: Path, capsys):
    rc = main(["--reference-from-model", "models:/det@production", "--products", "Casting", "--current",
               str(tmp_path)])
    assert rc == 2 and "--products cannot be combined with --reference-from-model" in capsys.readouterr().err
    rc = main(["--reference", str(tmp_path), "--reference-from-model", "models:/det@production", "--current",
               str(tmp_path)])
    assert rc == 2 and "not allowed with argument" in capsys.readouterr().err
    result_file = tmp_path / "result.json"
    rc = main(["--reference-from-model", "models:/det@production", "--current", str(tmp_path), "--tracking-uri", "",
               "--result-file", str(result_file)])
    assert rc == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "drift: error: models:/det@production needs an MLflow tracking URI (--tracking-uri or MLFLOW_TRACKING_URI)")


def test_progress_bar_on_a_terminal_only(monkeypatch, capsys):
    assert list(bar(range(3), total=3, desc="reference images")) == [0, 1, 2]
    assert capsys.readouterr().err == ""  # not a terminal (a Job's log): no bar at all
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal of 100 columns
    with os.fdopen(follower, "w") as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        assert list(bar(range(3), total=3, desc="reference images")) == [0, 1, 2]
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the terminal's other end is closed and everything was read
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    shown = shown.decode()
    assert "reference images:" in shown and "/3 [" in shown
