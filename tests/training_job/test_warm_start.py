"""Warm start (``--init-from``): real registered versions, real weights files, real ultralytics training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures.models import RegisteredModel
from mlflow.tracking import MlflowClient

from training_job import cli, warm_start
from visionops.data.prepare import PreparedDataset

pytestmark = [pytest.mark.mlflow, pytest.mark.slow]


def train(tmp_path: Path, dataset: Path, tracking_uri: str, init_from: str, products: str | None = None,
          ) -> tuple[int, dict]:
    result = tmp_path / "result.json"
    argv = ["--dataset", str(dataset), "--workdir", str(tmp_path / "work"), "--epochs", "1", "--imgsz", "64",
            "--batch", "8", "--tracking-uri", tracking_uri, "--experiment", "warm-start", "--init-from", init_from,
            "--result-file", str(result)]
    code = cli.main(argv + (["--products", products] if products else []))
    return code, json.loads(result.read_text())


def test_same_classes_transfer_every_layer(tiny_model_dir: Path, prepared_dataset: PreparedDataset) -> None:
    init = warm_start.InitWeights("file", tiny_model_dir / "best.pt", prepared_dataset.names)
    model, mode = warm_start.model("yolov8n.yaml", init, prepared_dataset.names)
    source = torch.load(tiny_model_dir / "best.pt", weights_only=False)["model"].float().state_dict()
    assert mode == warm_start.FULL
    state = model.model.float().state_dict()
    assert state.keys() == source.keys() and all(torch.equal(state[k], source[k]) for k in source)


def test_other_classes_keep_backbone_and_start_the_class_layers_fresh(tiny_model_dir: Path,
                                                                       prepared_dataset: PreparedDataset) -> None:
    init = warm_start.InitWeights("file", tiny_model_dir / "best.pt", prepared_dataset.names)
    model, mode = warm_start.model("yolov8n.yaml", init, list(reversed(prepared_dataset.names)))
    assert mode == warm_start.BACKBONE
    source = torch.load(tiny_model_dir / "best.pt", weights_only=False)["model"].float().state_dict()
    state = model.model.float().state_dict()
    backbone = [k for k in source if k.startswith("model.0.")]
    assert backbone and all(torch.equal(state[k], source[k]) for k in backbone)
    class_layers = [k for k in source if ".cv3." in k and k.endswith(".2.weight")]
    assert class_layers and all(state[k].shape != source[k].shape for k in class_layers)


def test_warm_start_from_a_registered_version(tmp_path: Path, synth_vision_root: Path, mlflow_uri: str,
                                              registered_tiny_model: RegisteredModel) -> None:
    """As in a Job: a process whose only MLflow setting is --tracking-uri (no MLFLOW_TRACKING_URI)."""
    result_file = tmp_path / "result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    proc = subprocess.run([sys.executable, "-m", "training_job", "--dataset", str(synth_vision_root), "--workdir",
                           str(tmp_path / "work"), "--epochs", "1", "--imgsz", "64", "--batch", "8",
                           "--tracking-uri", mlflow_uri, "--experiment", "warm-start", "--init-from",
                           registered_tiny_model.alias_uri, "--result-file", str(result_file)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(result_file.read_text())
    assert result["init_from"] == {"source": registered_tiny_model.alias_uri,
                                   "version": registered_tiny_model.version}
    params = MlflowClient(mlflow_uri).get_run(result["run_id"]).data.params
    assert params["init_from"] == registered_tiny_model.alias_uri
    assert params["init_version"] == registered_tiny_model.version and params["init_transfer"] == "full"


def test_warm_start_from_a_coco_pretrained_checkpoint_on_the_volume(tmp_path: Path, synth_vision_root: Path,
                                                                   mlflow_uri: str) -> None:
    """docs/training.md's path for real data: ultralytics' COCO ``yolov8n.pt`` (80 classes) on the dataset volume.
    Its class names come from the checkpoint (no class_map.json beside it); the backbone, neck and box head
    transfer, and the trained model predicts the dataset's classes, not COCO's."""
    from fixtures.models import coco_like_checkpoint

    weights = coco_like_checkpoint(tmp_path / "volume" / "pretrained" / "yolov8n.pt")
    assert warm_start.resolve(str(weights), mlflow_uri, tmp_path / "init").names[:2] == ["person", "bicycle"]
    code, result = train(tmp_path, synth_vision_root, mlflow_uri, str(weights), products="Casting")
    assert code == 0, result
    params = MlflowClient(mlflow_uri).get_run(result["run_id"]).data.params
    assert params["init_from"] == str(weights) and params["init_transfer"] == "backbone"
    assert "init_version" not in params
    trained = torch.load(tmp_path / "work" / "model" / "best.pt", weights_only=False)["model"]
    assert list(trained.names.values()) == ["casting/inclusoes", "casting/rechupe"]


@pytest.mark.parametrize(("source", "message"), [
    ("models:/no-such-model@production", "init-from models:/no-such-model@production: "),
    ("models:/x/y/z", "init-from models:/x/y/z: expected models:/<name>/<N> or models:/<name>@<alias>"),
    ("/nonexistent/best.pt", "init-from /nonexistent/best.pt: no such weights file"),
])
def test_unusable_sources_fail_with_one_line(tmp_path: Path, synth_vision_root: Path, mlflow_uri: str,
                                             source: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = train(tmp_path, synth_vision_root, mlflow_uri, source)
    assert code != 0
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {message}"), errors
    assert result["error"].startswith(message)
