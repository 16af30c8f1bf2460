"""The training Job end to end: real data prep, real ultralytics, real MLflow, zero network.

The job runs in a subprocess (``python -m training_job``) under the network audit of
tests/fixtures/netaudit.py, which records and blocks every DNS lookup or connection to a non-loopback
address, plus any connection to a dead proxy set in the environment: the job must make none. mAP is
never asserted (2 epochs on tiny data).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fixtures.netaudit import NetAudit
from mlflow.tracking import MlflowClient

from visionops import config, registry_cli

pytestmark = [pytest.mark.mlflow, pytest.mark.slow]



def run_audited(module: str, args: list[str], log: Path, cwd: Path, timeout: int = 600,
                extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` under the network audit (tests/fixtures/netaudit.py); attempts go to ``log``."""
    audit = NetAudit.create(log.parent / f".netaudit-{uuid.uuid4().hex[:6]}")
    proc = audit.run([sys.executable, "-m", module, *args], cwd=cwd, timeout=timeout, extra_env=extra_env)
    log.write_text(audit.log.read_text())
    return proc


@pytest.fixture(scope="module")
def trained(synth_vision_root: Path, mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One real 2-epoch training job on two synthetic products; its outputs for the tests below."""
    tmp = tmp_path_factory.mktemp("train-job")
    result_file, log = tmp / "result.json", tmp / "network.log"
    experiment = f"train-test-{uuid.uuid4().hex[:6]}"
    proc = run_audited("training_job", [
        "--dataset", str(synth_vision_root), "--products", "Casting,Screw", "--workdir", str(tmp / "work"),
        "--epochs", "2", "--imgsz", "64", "--batch", "8", "--tracking-uri", mlflow_uri,
        "--experiment", experiment, "--namespace", "team-a", "--name", "tr-e2e", "--uid", "uid-123",
        "--result-file", str(result_file),
    ], log, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"proc": proc, "result": json.loads(result_file.read_text()), "network": log.read_text(),
            "experiment": experiment, "workdir": tmp / "work"}


def test_job_makes_no_network_attempt(trained):
    assert trained["network"] == "", f"network attempts: {trained['network']}"


def test_run_is_finished_with_tags_and_params(trained, mlflow_uri):
    client = MlflowClient(tracking_uri=mlflow_uri)
    run = client.get_run(trained["result"]["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == trained["experiment"]
    tags = run.data.tags
    assert tags["visionops.io/kind"] == "training"
    assert (tags["visionops.io/namespace"], tags["visionops.io/name"], tags["visionops.io/uid"]) == (
        "team-a", "tr-e2e", "uid-123")
    assert tags["visionops.io/progress"] == "2/2"
    params = run.data.params
    assert params["epochs"] == "2" and params["imgsz"] == "64" and params["model"] == "yolov8n.yaml"
    assert params["products"] == "Casting,Screw" and params["nc"] == "3"


def test_ultralytics_own_mlflow_logging_stays_off(trained, mlflow_uri):
    client = MlflowClient(tracking_uri=mlflow_uri)
    # its callback would log to $MLFLOW_TRACKING_URI under an experiment named after `project`
    assert client.get_experiment_by_name(str(trained["workdir"] / "runs")) is None
    assert client.get_experiment_by_name("/Shared/Ultralytics") is None
    exp_id = client.get_experiment_by_name(trained["experiment"]).experiment_id
    assert len(client.search_runs([exp_id])) == 1
    cwd = trained["workdir"].parent
    assert not (cwd / "mlflow.db").exists() and not (cwd / "mlruns").exists()


def test_metrics_are_logged_per_epoch_and_per_class(trained, mlflow_uri):
    client = MlflowClient(tracking_uri=mlflow_uri)
    run_id = trained["result"]["run_id"]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "epoch")] == [(1, 1.0), (2, 2.0)]
    for key in ("map50", "map50_95", "precision", "recall", "train/box_loss", "train/cls_loss", "val/box_loss"):
        assert {m.step for m in client.get_metric_history(run_id, key)} == {1, 2}, key
    metrics = client.get_run(run_id).data.metrics
    names = ["casting/inclusoes", "casting/rechupe", "screw/defect"]
    assert {k for k in metrics if k.startswith("ap50/")} == {
        "ap50/casting.inclusoes", "ap50/casting.rechupe", "ap50/screw.defect"}
    per_class = json.loads(Path(client.download_artifacts(run_id, "per_class_ap50.json")).read_text())
    assert sorted(per_class) == names
    # the final values are the job's own validation of best.pt, the run's latest metric values
    assert metrics["map50"] == trained["result"]["metrics"]["map50"]
    assert all(0.0 <= v <= 1.0 for v in per_class.values())


def test_artifacts_follow_the_model_layout(trained, mlflow_uri, tmp_path):
    client = MlflowClient(tracking_uri=mlflow_uri)
    run_id = trained["result"]["run_id"]
    assert {a.path for a in client.list_artifacts(run_id)} >= {"model", "per_class_ap50.json", "results.csv", "plots",
                                                              "analysis", "dataset"}
    # the predictor's files, and the same folder is an MLflow pyfunc model (visionops.mlflow_model)
    # and the INT8 model, when it passed its gate (the scores of an untrained model are equal: it does)
    assert trained["result"]["serving"]["precision"] == "int8"
    assert {a.path for a in client.list_artifacts(run_id, "model")} == {f"model/{n}" for n in (
        "best.pt", "best.onnx", "class_map.json", "data_card.json", "MLmodel", "conda.yaml", "python_env.yaml",
        "requirements.txt", "input_example.json", "serving_input_example.json", "best_int8.xml", "best_int8.bin")}
    local = Path(client.download_artifacts(run_id, "model", str(tmp_path)))
    assert json.loads((local / "class_map.json").read_text())["names"] == [
        "casting/inclusoes", "casting/rechupe", "screw/defect"]
    import onnx

    onnx.checker.check_model(str(local / "best.onnx"))


def test_result_file_holds_the_contract(trained, mlflow_uri):
    result = trained["result"]
    run = MlflowClient(tracking_uri=mlflow_uri).get_run(result["run_id"])
    assert result["experiment_id"] == run.info.experiment_id
    assert result["artifact_uri"] == run.info.artifact_uri
    assert result["model_uri"] == f"runs:/{result['run_id']}/model"
    assert set(result["metrics"]) == {"map50", "map50_95", "precision", "recall"}
    assert sorted(result["per_class_ap50"]) == ["casting/inclusoes", "casting/rechupe", "screw/defect"]
    assert result["epochs_completed"] == 2
    assert result["duration_s"] > 0 and result["seconds_per_epoch"] > 0
    assert set(result["phase_seconds"]) == {"setup", "prepare", "train", "validate", "analyze", "export", "quantize",
                                            "upload"}
    # each value is rounded to 1 ms, so the sum may exceed the (also rounded) total by a few ms
    assert sum(result["phase_seconds"].values()) <= result["duration_s"] + 0.001 * len(result["phase_seconds"])
    assert "error" not in result


def test_int8_gate_is_logged_on_the_run_and_in_the_result(trained, mlflow_uri):
    run = MlflowClient(tracking_uri=mlflow_uri).get_run(trained["result"]["run_id"])
    serving = trained["result"]["serving"]
    assert set(serving) == {"precision", "reason", "fp32_score", "int8_score", "max_drop"}
    assert serving["max_drop"] == config.load("training")["int8_max_drop"]
    assert run.data.tags["visionops.io/serving-precision"] == serving["precision"]
    assert run.data.tags["visionops.io/serving-reason"] == serving["reason"]
    assert run.data.metrics["export_fp32_map50"] == pytest.approx(serving["fp32_score"])
    assert run.data.metrics["export_int8_map50"] == pytest.approx(serving["int8_score"])
    assert run.data.params["int8"] == "True"


def test_progress_goes_to_stderr(trained):
    err = trained["proc"].stderr
    assert "[train] epoch 1/2" in err and "[train] epoch 2/2" in err and "[train] done in" in err
    assert "error:" not in err


def test_trained_run_registers_and_passes_a_zero_threshold(trained, mlflow_uri, capsys):
    name = f"e2e-detector-{uuid.uuid4().hex[:6]}"
    argv = ["--run-id", trained["result"]["run_id"], "--name", name, "--threshold", "0", "--tracking-uri",
            mlflow_uri]
    assert registry_cli.main(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "production -> version 1"
    version = MlflowClient(tracking_uri=mlflow_uri).get_model_version(name, "1")
    assert version.tags["visionops.io/dataset-digest"] == trained["result"]["dataset_digest"]
    from mlflow.artifacts import download_artifacts

    local = Path(download_artifacts(f"models:/{name}@production", tracking_uri=mlflow_uri))
    # (MLflow's client adds its own registered_model_meta file to a downloaded MLflow model)
    assert {p.name for p in local.iterdir()} >= {"best.pt", "best.onnx", "class_map.json", "data_card.json", "MLmodel"}
    import mlflow.pyfunc

    boxes = mlflow.pyfunc.load_model(f"runs:/{trained['result']['run_id']}/model")
    assert boxes.metadata.signature is not None


def test_the_audit_hook_catches_ultralytics_when_not_offline(tmp_path):
    """Control: without the job's offline switches, importing ultralytics probes DNS and the hook sees it."""
    (tmp_path / "probe.py").write_text("import ultralytics\n")
    log = tmp_path / "network.log"
    proc = run_audited("probe", [], log, cwd=tmp_path, timeout=300, extra_env={"YOLO_CONFIG_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "socket.getaddrinfo" in log.read_text()


def test_missing_dataset_fails_with_one_line(tmp_path, mlflow_uri):
    result_file = tmp_path / "result.json"
    proc = run_audited("training_job", [
        "--dataset", str(tmp_path / "nope"), "--workdir", str(tmp_path / "work"), "--tracking-uri", mlflow_uri,
        "--result-file", str(result_file)], tmp_path / "network.log", cwd=tmp_path, timeout=300)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: dataset {tmp_path / 'nope'} is not a directory "
                      "(expected a VISION root: <Product>/train/...)"]
    assert proc.stderr.strip().splitlines()[-1] == errors[0] and "Traceback" not in proc.stderr
    assert json.loads(result_file.read_text()) == {"error": errors[0].removeprefix("error: ")}


def test_failure_after_the_run_started_marks_it_failed(synth_vision_root, tmp_path, mlflow_uri):
    result_file = tmp_path / "result.json"
    proc = run_audited("training_job", [
        "--dataset", str(synth_vision_root), "--products", "Screw", "--workdir", str(tmp_path / "work"),
        "--epochs", "1", "--imgsz", "64", "--device", "99", "--tracking-uri", mlflow_uri,
        "--experiment", "train-failures", "--result-file", str(result_file)],
        tmp_path / "network.log", cwd=tmp_path, timeout=300)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    result = json.loads(result_file.read_text())
    assert result["error"] == errors[0].removeprefix("error: ")
    run = MlflowClient(tracking_uri=mlflow_uri).get_run(result["run_id"])
    assert run.info.status == "FAILED"
    assert (tmp_path / "network.log").read_text() == ""


def test_unreachable_mlflow_fails_before_preparing_data(synth_vision_root, tmp_path):
    from visionops.local_mlflow import free_port

    uri = f"http://127.0.0.1:{free_port()}"
    proc = run_audited("training_job", [
        "--dataset", str(synth_vision_root), "--workdir", str(tmp_path / "work"), "--tracking-uri", uri,
        "--result-file", str(tmp_path / "result.json")], tmp_path / "network.log", cwd=tmp_path, timeout=300,
        extra_env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"})
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: MLflow at {uri} failed: ") and "Connection refused" in last
    assert not (tmp_path / "work" / "data").exists()
    assert "run_id" not in json.loads((tmp_path / "result.json").read_text())


def test_run_logs_training_plots_analysis_and_dataset(trained, mlflow_uri, tmp_path):
    """Every run carries its pictures (docs/mlflow-layout.md): ultralytics' plots, the per-class analysis with the
    hardest val images, and the dataset version with its card and sample grid."""
    client = MlflowClient(tracking_uri=mlflow_uri)
    run_id = trained["result"]["run_id"]
    plots = {Path(a.path).name for a in client.list_artifacts(run_id, "plots")}
    assert {"results.png", "confusion_matrix.png", "confusion_matrix_normalized.png"} <= plots, plots
    assert any("PR_curve" in name for name in plots) and any("F1_curve" in name for name in plots), plots
    analysis = {Path(a.path).name for a in client.list_artifacts(run_id, "analysis")}
    assert {"analysis.json", "per_class_ap50.png"} <= analysis
    report = json.loads(Path(client.download_artifacts(run_id, "analysis/analysis.json", str(tmp_path))).read_text())
    assert report["run_id"] == run_id and report["artifact_path"] == "analysis/"
    assert sorted(row["class"] for row in report["per_class"]) == sorted(trained["result"]["per_class_ap50"])
    assert sum(report["bands"].values()) == 3
    hardest = {item["png"] for item in report["analysis"]["hardest"]}
    assert hardest and hardest <= analysis
    from PIL import Image

    with Image.open(client.download_artifacts(run_id, "analysis/per_class_ap50.png", str(tmp_path))) as chart:
        assert chart.width >= 400 and chart.height >= 100
    assert {Path(a.path).name for a in client.list_artifacts(run_id, "dataset")} == {"data_card.json", "samples.png"}

    digest = trained["result"]["dataset_digest"]
    assert digest.startswith("sha256:") and len(digest) == 71
    run = client.get_run(run_id)
    assert run.data.tags["visionops.io/dataset-digest"] == digest
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "vision[Casting,Screw]"
    assert dataset_input.dataset.digest == digest.removeprefix("sha256:")[:12]
    assert json.loads(dataset_input.dataset.source)["digest"] == digest
