"""The predictor's runtime choice and its life without a model, on the real KServe server (``python -m predictor``).

- Pure parts: the CPU budget read from a cgroup's quota, the runtime and poll settings and flags; OpenVINO loads
  without its usage telemetry (network audit).
- Per runtime (ONNX Runtime, OpenVINO): the server's V1 answers are the in-process detector's, which the parity
  tests of test_predictor_onnx.py hold to ``YOLO(best.pt).predict``; 4 concurrent clients get the same answers as
  one, with no error (the images/s of 4 clients against 1: bench/bench_predictor.py).
- No model yet (real MLflow): started on an alias that does not exist, the server is live and not ready, and its
  readiness and predictions say what to do; once the alias is set it becomes ready and predicts that version.
"""

from __future__ import annotations

import io
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from fixtures.models import register_model_dir
from fixtures.netaudit import NetAudit
from fixtures.predictor_process import NAME, Predictor, b64, constant_model, start_predictor
from PIL import Image

from predictor.cli import build_parser, main
from predictor.onnx_yolo import YoloOnnx
from predictor.runtimes import RUNTIMES, cpu_budget, cpus_from_cgroup
from predictor.settings import ServingSettings

REPO = Path(__file__).resolve().parents[2]
CONFIDENCE = 0.0001  # the 1-epoch tiny model's boxes are faint


# -- pure parts ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("cpu_max", "cores", "threads"),
    [
        ("max 100000", 8, 8),  # no limit: the cores it may run on
        ("200000 100000", 8, 2),  # limits.cpu: 2
        ("150000 100000", 8, 2),  # 1.5 CPUs: 2 threads use the whole quota
        ("50000 100000", 8, 1),  # 500m: one thread
        ("800000 100000", 2, 2),  # a limit above the cores it may run on
        ("-1 100000", 4, 4),  # cgroup v1: no quota
        (None, 3, 3),  # no cgroup file
        ("garbage", 3, 3),
        ("0 100000", 3, 3),
        ("max 100000", 0, 1),
    ],
)
def test_cpu_budget_follows_the_cgroup_quota(cpu_max: str | None, cores: int, threads: int):
    assert cpus_from_cgroup(cpu_max, cores) == threads


def test_cpu_budget_here_is_at_least_one_thread():
    assert cpu_budget() >= 1


def test_runtime_and_poll_settings_are_validated():
    defaults = ServingSettings.from_config()
    assert defaults.runtime in RUNTIMES and defaults.model_poll_seconds > 0
    assert ServingSettings.from_config({"runtime": "onnxruntime"}).runtime == "onnxruntime"
    with pytest.raises(ValueError, match="runtime must be one of onnxruntime, openvino, got 'tensorrt'"):
        ServingSettings.from_config({"runtime": "tensorrt"})
    assert ServingSettings.from_config({"model_poll_seconds": 0}).model_poll_seconds == 0
    with pytest.raises(ValueError, match=r"model_poll_seconds must be a number of seconds >= 0 \(0: do not wait"):
        ServingSettings.from_config({"model_poll_seconds": -1})


def test_cli_runtime_and_poll_flags_with_env_fallback(monkeypatch: pytest.MonkeyPatch):
    for env in ("VISIONOPS_RUNTIME", "VISIONOPS_MODEL_POLL_SECONDS"):
        monkeypatch.delenv(env, raising=False)
    defaults = ServingSettings.from_config()
    args = build_parser(defaults).parse_args([])
    assert (args.runtime, args.model_poll_seconds) == (defaults.runtime, defaults.model_poll_seconds)
    for runtime in RUNTIMES:
        assert build_parser(defaults).parse_args(["--runtime", runtime]).runtime == runtime
    with pytest.raises(SystemExit):
        build_parser(defaults).parse_args(["--runtime", "tensorrt"])
    monkeypatch.setenv("VISIONOPS_RUNTIME", "onnxruntime")  # the chart's predictor.runtime
    monkeypatch.setenv("VISIONOPS_MODEL_POLL_SECONDS", "2.5")  # the chart's predictor.modelPollSeconds
    args = build_parser(defaults).parse_args([])
    assert (args.runtime, args.model_poll_seconds) == ("onnxruntime", 2.5)
    assert build_parser(defaults).parse_args(["--runtime", "openvino"]).runtime == "openvino"  # the flag wins
    monkeypatch.setenv("VISIONOPS_RUNTIME", "tensorrt")
    assert main(["--model-dir", "/nowhere"]) == 2  # refused before anything is loaded


def test_openvino_sends_no_usage_event(tmp_path: Path):
    """``import openvino`` alone would (its openvino-telemetry package, from a forked process); the predictor's
    OpenVINO session keeps quiet, audited in the whole process tree with every telemetry switch removed."""
    model = constant_model(tmp_path / "m.onnx", np.zeros((1, 6, 3)), [1, 3, 64, 64])
    audit = NetAudit.create(tmp_path / "audit")
    code = ("import sys, time\nfrom pathlib import Path\nfrom PIL import Image\n"
            "from predictor.onnx_yolo import YoloOnnx\n"
            "YoloOnnx(Path(sys.argv[1]), 'openvino').detect(Image.new('RGB', (64, 48)), 0.25, 0.45)\n"
            "time.sleep(2)\nprint('detected')\n")  # the sleep: time for a forked sender to try
    done = audit.run([sys.executable, "-c", code, str(model)], cwd=REPO,
                     extra_env={"HOME": str(tmp_path)})  # no opt-out file in this home
    assert done.returncode == 0 and "detected" in done.stdout, done.stderr[-3000:]
    assert audit.attempts() == []
    assert not (tmp_path / "intel").exists(), "openvino-telemetry wrote its client id"


# -- each runtime, served -----------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=RUNTIMES)
def served(request: pytest.FixtureRequest, model_dir: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Predictor]]:
    """``(runtime, the predictor serving model_dir on it)``."""
    server = start_predictor(["--model-dir", str(model_dir), "--runtime", request.param, "--imgsz", "64",
                              "--confidence", str(CONFIDENCE), "--intra-op-threads", "2"],
                             tmp_path_factory.mktemp(f"predictor-{request.param}") / "server.log")
    yield request.param, server
    server.stop()


@pytest.mark.slow
def test_the_server_answers_what_the_runtime_detects(served: tuple[str, Predictor], model_dir: Path,
                                                     tiny_images: list[bytes]):
    runtime, server = served
    assert f"on {runtime} " in server.log.read_text()  # the start line names the runtime, its version and threads
    detector = YoloOnnx(model_dir / "best.onnx", runtime)
    response = server.v1({"instances": [b64(image) for image in tiny_images]})
    assert response.status_code == 200, response.text
    for raw, prediction in zip(tiny_images, response.json()["predictions"], strict=True):
        found = detector.detect(Image.open(io.BytesIO(raw)).convert("RGB"), CONFIDENCE, 0.45)
        assert prediction["num_detections"] == len(found) > 0
        assert [d["class_id"] for d in prediction["detections"]] == found.class_ids.tolist()
        for det, box in zip(prediction["detections"], found.boxes.tolist(), strict=True):
            assert det["bbox"] == pytest.approx(box, abs=1e-3)


@pytest.mark.slow
def test_four_concurrent_clients_get_the_answers_of_one(served: tuple[str, Predictor], tiny_images: list[bytes]):
    _, server = served
    expected = [server.v1({"instances": [b64(image)]}).json()["predictions"][0]["detections"] for image in tiny_images]

    def client(offset: int) -> list[tuple[int, int, list]]:
        with requests.Session() as session:
            answers = []
            for i in range(8):
                index = (offset + i) % len(tiny_images)
                response = session.post(f"{server.url}/v1/models/{NAME}:predict", timeout=60,
                                        json={"instances": [b64(tiny_images[index])]})
                answers.append((index, response.status_code, response.json()["predictions"][0]["detections"]
                                if response.ok else response.text))
            return answers

    with ThreadPoolExecutor(4) as pool:
        answers = [a for batch in pool.map(client, range(4)) for a in batch]
    assert [code for _, code, _ in answers] == [200] * 32
    assert all(detections == expected[index] for index, _, detections in answers)


# -- no model yet ---------------------------------------------------------------------------------------------

def _wait_for(check, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"{what} not within {timeout} s:\n{log.read_text()[-3000:]}")


def _live(server: Predictor) -> bool:
    if server.proc.poll() is not None:
        raise AssertionError(f"predictor exited {server.proc.returncode}:\n{server.log.read_text()[-3000:]}")
    try:
        return requests.get(f"{server.url}/v2/health/live", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.mark.slow
@pytest.mark.mlflow
def test_without_a_model_it_stays_up_not_ready_and_serves_once_one_is_promoted(
        mlflow_uri: str, model_dir: Path, tiny_images: list[bytes], tmp_path: Path):
    name = f"later-detector-{uuid.uuid4().hex[:6]}"  # nothing registered under this name yet: a fresh install
    server = Predictor(["--model-uri", f"models:/{name}@production", "--tracking-uri", mlflow_uri,
                        "--model-poll-seconds", "1", "--imgsz", "64", "--confidence", str(CONFIDENCE)],
                       tmp_path / "server.log")
    try:
        _wait_for(lambda: _live(server), 120, "live", server.log)
        ready = requests.get(f"{server.url}/v2/health/ready", timeout=5)
        assert ready.status_code == 503
        message = ready.json()["error"]
        for part in (f"model {NAME}: no model to serve yet", f"models:/{name}@production",
                     f"promote a version of registered model '{name}'", "set its alias 'production' in MLflow",
                     "Looking again every 1 s"):
            assert part in message, message
        for path in (f"/v2/models/{NAME}/ready", f"/v1/models/{NAME}"):
            model_ready = requests.get(f"{server.url}{path}", timeout=5)
            assert model_ready.status_code == 503 and "no model to serve yet" in model_ready.json()["error"], path
        refused = server.v1({"instances": [b64(tiny_images[0])]})
        assert refused.status_code == 503 and "no model to serve yet" in refused.json()["error"]
        assert requests.get(f"{server.url}/v1/models", timeout=5).json() == {"models": [NAME]}
        time.sleep(3)  # a few more looks, all finding nothing
        assert server.proc.poll() is None

        registered = register_model_dir(mlflow_uri, model_dir, name)  # the first promotion
        _wait_for(lambda: requests.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200, 60,
                  "ready after the alias was set", server.log)
        response = server.v1({"instances": [b64(tiny_images[0])]})
        assert response.status_code == 200 and response.json()["predictions"][0]["num_detections"] > 0
        info = (f'visionops_active_model_info{{alias="production",model_name="{NAME}",'
                f'run_id="{registered.run_id}",version="{registered.version}"}} 1.0')
        assert info in server.metrics()
        log = server.log.read_text()
        # the reason is logged when it changes, not at every look (a look between the model's registration and its
        # alias finds another reason)
        assert log.count("no model to serve yet") in (1, 2), log
        assert "Traceback" not in log and f"loaded from models:/{name}@production" in log
    finally:
        server.stop()


@pytest.mark.mlflow
def test_without_polling_a_missing_model_exits_1(mlflow_uri: str, capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")  # what main() sets by default, undone after the test
    name = f"never-{uuid.uuid4().hex[:6]}"
    assert main(["--model-uri", f"models:/{name}@production", "--tracking-uri", mlflow_uri,
                 "--model-poll-seconds", "0", "--http_port", "1"]) == 1
    assert f"no model at models:/{name}@production" in capsys.readouterr().err
