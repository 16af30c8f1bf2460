"""The console, walked step by step in a real browser, against the real control plane, MLflow, operator, Job pods
(played by PodRunner) and predictor. The tests of this module run in order and share what they made: the
TrainingRun created from the form in the training test is what evaluation, analysis and deploy show.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from consoletools import DATASET_PVC, ConsoleProcess, running_console, start_console
from fixtures.browser import PICTURES, browser_missing, screenshot, until
from fixtures.cluster import KubeCluster, wait_until
from fixtures.predictor_pods import predictor_pod

from visionops.local_mlflow import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.mlflow, pytest.mark.slow,
              pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))]

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "visionops.io", "v1alpha1"
KSERVE = ("serving.kserve.io", "v1beta1")
ISVC_NAME = "visionops-predictor"
DASH = "\u2013"
LOADED = "[...document.querySelectorAll('{}')].every(i => i.complete && i.naturalWidth > 0)"
HTML_PROBE = '<img src="/x-probe" onerror="window.__pwned=1">'


class Shared:
    """What the ordered tests hand on: the model name, the trained run, its MLflow run id and version."""

    model = f"console-detector-{uuid.uuid4().hex[:6]}"
    predictor_port = free_port()
    run_name = ""
    run_id = ""
    version = ""


def custom_api() -> Any:
    import kubernetes

    return kubernetes.client.CustomObjectsApi(
        kubernetes.config.new_client_from_config(config_file=os.environ.get("KUBECONFIG")))


def batch_api() -> Any:
    import kubernetes

    return kubernetes.client.BatchV1Api(
        kubernetes.config.new_client_from_config(config_file=os.environ.get("KUBECONFIG")))


def get_cr(namespace: str, plural: str, name: str) -> dict:
    return custom_api().get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)


def core_api() -> Any:
    import kubernetes

    return kubernetes.client.CoreV1Api(
        kubernetes.config.new_client_from_config(config_file=os.environ.get("KUBECONFIG")))


@pytest.fixture(scope="module")
def inference_service(console_namespace: str) -> dict:
    """The InferenceService a promoted model rolls out to (no KServe controller here: the operator patches it, and
    its Ready status is what KServe would report)."""
    body = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": ISVC_NAME, "annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
            "spec": {"predictor": {"containers": [{"name": "kserve-container", "image": "visionops-predictor:0.1.0"}]}}}
    api = custom_api()
    api.create_namespaced_custom_object(*KSERVE, console_namespace, "inferenceservices", body)
    return api.patch_namespaced_custom_object_status(*KSERVE, console_namespace, "inferenceservices", ISVC_NAME, {
        "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                   "address": {"url": f"http://{ISVC_NAME}-predictor.{console_namespace}.svc.cluster.local"}}})


def serve_version(namespace: str, model: str, version: str) -> None:
    """Play KServe and the kubelet for a rollout: once the operator pointed the InferenceService at ``version``,
    a predictor pod of it that is Ready (what the operator's ModelDeployment waits for before it says Serving)."""
    uri = f"models:/{model}/{version}"

    def pointed() -> bool:
        isvc = custom_api().get_namespaced_custom_object(*KSERVE, namespace, "inferenceservices", ISVC_NAME)
        env = isvc["spec"]["predictor"]["containers"][0].get("env") or []
        return any(e["name"] == "VISIONOPS_MODEL_URI" and e.get("value") == uri for e in env)

    wait_until(f"the InferenceService to point at {uri}", pointed, timeout=90)
    predictor_pod(core_api(), namespace, ISVC_NAME, f"{ISVC_NAME}-v{version}", uri)


@pytest.fixture(scope="module")
def console(kube_cluster: KubeCluster, console_namespace: str, mlflow_uri: str, volume: Path, operator_process,
            inference_service, tmp_path_factory: pytest.TempPathFactory) -> ConsoleProcess:
    log = tmp_path_factory.mktemp("console") / "console.log"
    process = start_console(
        log, "--kubeconfig", str(kube_cluster.kubeconfig), "--namespace", console_namespace, "--mlflow-uri",
        mlflow_uri, "--datasets", str(volume), "--dataset-pvc", DATASET_PVC, "--model-name", Shared.model,
        "--inference-service", ISVC_NAME, "--predictor-url", f"http://127.0.0.1:{Shared.predictor_port}",
        "--max-upload-mb", "1")
    yield process
    process.stop()


def goto(page: Any, console: ConsoleProcess, path: str) -> None:
    response = page.goto(console.url + path, wait_until="load")
    assert response is not None and response.status == 200, f"{path}: HTTP {response.status if response else '-'}"


def sample_keys(page: Any) -> list[str]:
    return page.eval_on_selector_all("#samples figure.sample", "els => els.map(e => e.dataset.key)")


# -- steps 1 and 2 --------------------------------------------------------------------------------------------


def test_data_step_lists_products_problems_and_samples(console, browser) -> None:
    page, _ = browser
    goto(page, console, "/data")
    rows = page.locator("#products tbody tr")
    assert rows.count() == 3
    assert page.locator("#products").inner_text().split("\n")[1].startswith("Casting")
    assert page.locator("#ready").inner_text() == "Yes"
    until(page, "document.querySelectorAll('#samples figure.sample img').length === 12")
    until(page, LOADED.format("#samples img"))
    first = sample_keys(page)
    page.click("#reshuffle")
    until(page, f"JSON.stringify([...document.querySelectorAll('#samples figure.sample')]"
                           f".map(e => e.dataset.key)) !== {json.dumps(json.dumps(first))}")
    assert len(sample_keys(page)) == 12
    until(page, LOADED.format("#samples img"))
    screenshot(page, "1-data")

    page.click("#samples figure.sample >> nth=0")
    lightbox = page.locator("#lightbox")
    lightbox.wait_for(state="visible")
    until(page, "document.querySelector('#lightbox img').naturalWidth > 0")
    caption = page.inner_text("#lightbox figcaption")
    assert "(1/12)" in caption
    page.keyboard.press("ArrowRight")
    assert "(2/12)" in page.inner_text("#lightbox figcaption")
    until(page, "document.querySelector('#lightbox img').complete")
    page.keyboard.press("Escape")
    lightbox.wait_for(state="hidden")

    goto(page, console, "/data?ds=vision-broken")
    assert page.locator("#ready").inner_text() == "No"
    problems = page.locator("#problems").inner_text()
    assert "is not valid COCO JSON" in problems and "vision-broken/Ring/val/_annotations.coco.json" in problems
    assert "clamped_box" in problems and "size_mismatch" in problems
    screenshot(page, "1-data-problems")


def test_data_card_filters_samples_by_class(console, browser) -> None:
    page, _ = browser
    goto(page, console, "/datacard")
    bars = page.locator("svg.bars .bar")
    assert bars.count() == 9
    values = [float(v) for v in page.eval_on_selector_all("svg.bars .bar-value", "els => els.map(e => e.textContent)")]
    assert values == sorted(values, reverse=True), "classes are sorted by instances, most first"
    until(page, "document.querySelectorAll('#samples figure.sample').length === 9")
    page.click('svg.bars .bar[data-class="screw/defect"]')
    until(page, "document.querySelector('#filter-chip .chip-text').textContent === 'screw/defect'")
    until(page, "[...document.querySelectorAll('#samples figure.sample')].length > 0 && "
                           "[...document.querySelectorAll('#samples figure.sample')]"
                           ".every(f => f.title.includes('screw/defect'))")
    assert "holding screw/defect" in page.inner_text("#sample-info")
    until(page, LOADED.format("#samples img"))
    screenshot(page, "2-data-card")
    page.click("#filter-chip button")
    until(page, "document.querySelector('#filter-chip').hidden")


# -- step 3 ------------------------------------------------------------------------------------------------


def apiserver_message(namespace: str, name: str, spec: dict) -> tuple[str, dict[str, list[str]]]:
    """What the apiserver itself says about ``spec`` (a dry run), to compare with the page word for word."""
    from kubernetes.client.rest import ApiException

    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingRun", "metadata": {"name": name}, "spec": spec}
    with pytest.raises(ApiException) as err:
        custom_api().create_namespaced_custom_object(GROUP, VERSION, namespace, "trainingruns", body, dry_run="All")
    doc = json.loads(err.value.body)
    fields: dict[str, list[str]] = {}
    for cause in doc["details"]["causes"]:
        fields.setdefault(cause["field"], []).append(cause["message"])
    return doc["message"], fields


# The run the form starts, which evaluation, analysis and deploy show: a quick one, or for `make pictures` the demo's
# recipe (visionops demo: 30 epochs at 128 px on its three products, gate 0.5) so that the pictures show a model
# that finds its defects.
RUN_FORM = ({"epochs": "30", "imgsz": "128", "batch": "8", "patience": "30", "map50Threshold": "0.5"} if PICTURES
            else {"epochs": "4", "imgsz": "64", "batch": "8", "patience": "4", "map50Threshold": "0"})
RUN_PRODUCTS = ["Casting", "PCB_1", "Screw"] if PICTURES else ["Casting", "Screw"]
EPOCHS = int(RUN_FORM["epochs"])


def fill(page: Any, values: dict[str, str]) -> None:
    for key, value in values.items():
        page.fill(f"#f-{key}", value)


@contextlib.contextmanager
def paused_training(mlflow_uri: str, uid: str) -> Iterator[None]:
    """Pause the training Job's process (run by PodRunner in this test process) once its first epoch is in MLflow."""
    import psutil
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_uri)

    def first_epoch() -> bool:
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, f"tags.`visionops.io/uid` = '{uid}'") if experiments else []
        return bool(runs) and runs[0].data.metrics.get("epoch", 0) >= 1

    wait_until("the first epoch in MLflow", first_epoch, timeout=600, every=0.2)
    def is_trainer(process: psutil.Process) -> bool:
        try:
            return "training_job" in process.cmdline()
        except psutil.Error:
            return False

    trainers = [p for p in psutil.Process().children(recursive=True) if is_trainer(p)]
    assert trainers, "the training process ended before the page could follow it"
    for process in trainers:
        process.suspend()
    try:
        yield
    finally:
        for process in trainers:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.resume()


def test_training_form_shows_the_apiservers_rejection_then_trains(console, browser, console_namespace, pods,
                                                                  mlflow_uri) -> None:
    page, guard = browser
    goto(page, console, "/training")
    assert page.locator("#runs tr.empty").count() == 1
    hint = page.inner_text('.field[data-field="epochs"] .hint')
    assert hint == f"1{DASH}1000", "the limits come from the apiserver's published schema"
    assert "as the apiserver publishes them" in page.inner_text("#new-run .card-head")

    # 1. a value the schema rejects: the apiserver's words next to the field
    guard.expect("/api/trainingruns", 422)
    name = "defects-" + uuid.uuid4().hex[:4]
    fill(page, {"name": name, "epochs": "5000", "imgsz": "100"})
    page.click("#start-run")
    page.wait_for_selector('.field[data-field="epochs"].invalid')
    status_message, causes = apiserver_message(console_namespace, name, {
        "dataset": {"pvc": DATASET_PVC, "path": "vision"},
        "hyperparameters": {"epochs": 5000, "batch": 8, "imgsz": 100, "lr0": 0.01, "patience": 5},
        "resources": {"gpu": 0}, "model": {"name": Shared.model},
        "promotion": {"mode": "auto", "map50Threshold": 0.1, "maxClassRegressionPoints": 5,
                      "inferenceService": ISVC_NAME}})
    assert page.inner_text('.field[data-field="epochs"] .error') == " · ".join(causes["spec.hyperparameters.epochs"])
    assert page.inner_text('.field[data-field="imgsz"] .error') == " · ".join(causes["spec.hyperparameters.imgsz"])
    assert "less than or equal to 1000" in page.inner_text('.field[data-field="epochs"] .error')
    summary = page.inner_text("#form-error")
    assert status_message.split(": [")[0] in summary  # TrainingRun.visionops.io "<name>" is invalid
    for messages in causes.values():
        assert all(message in summary for message in messages)
    screenshot(page, "3-training-rejected")
    assert not custom_api().list_namespaced_custom_object(GROUP, VERSION, console_namespace, "trainingruns")["items"]

    # 2. a good one: created through the API, then followed live while the pod trains
    fill(page, RUN_FORM)
    for product in RUN_PRODUCTS:
        page.click(f"#product-chips label:has-text('{product}')")
    page.click("#start-run")
    page.wait_for_url(f"**/training/{name}")
    Shared.run_name = name
    run = get_cr(console_namespace, "trainingruns", name)
    assert run["spec"]["dataset"] == {"pvc": DATASET_PVC, "path": "vision", "products": RUN_PRODUCTS}
    assert run["spec"]["hyperparameters"]["epochs"] == EPOCHS
    assert run["spec"]["promotion"]["map50Threshold"] == float(RUN_FORM["map50Threshold"])

    pod = pods.wait_for_pod(f"visionops.io/training-run={name}", timeout=90)
    outcome: dict[str, Any] = {}
    trainer = threading.Thread(target=lambda: outcome.update(proc=pods.run(pod, timeout=900)), daemon=True)
    trainer.start()
    # The page follows the pod while it trains: once MLflow has the first epoch, the training process is paused
    # (SIGSTOP) so that the test sees the live state for sure, then resumed.
    with paused_training(mlflow_uri, run["metadata"]["uid"]):
        until(page, "document.querySelector('#phase .badge').textContent === 'Running' && "
                    "document.querySelectorAll('#chart-metrics path').length > 0 && "
                    f"document.querySelector('#epoch-text').textContent !== '0/{EPOCHS}'", timeout=60_000)
        assert re.fullmatch(r"\d+m \d\ds", page.inner_text("#elapsed"))
        screenshot(page, "3-training-live")
    trainer.join(timeout=900)
    assert outcome["proc"].returncode == 0, outcome["proc"].stderr[-3000:]
    # Promoted: the run is RollingOut until its ModelDeployment serves the version (a predictor pod of it Ready).
    version = wait_until("the registered version", lambda: (get_cr(console_namespace, "trainingruns", name)
                                                            .get("status") or {}).get("modelVersion"), timeout=180)
    serve_version(console_namespace, Shared.model, version)
    until(page, "document.querySelector('#phase .badge').textContent === 'Succeeded'", timeout=180_000)
    until(page, f"document.querySelector('#version').textContent !== '{DASH}'")
    assert page.inner_text("#epoch-text") == f"{EPOCHS}/{EPOCHS}"
    assert page.inner_text("#tile-map50 .tile-value") != DASH
    assert page.inner_text("#promotion") == "Promoted"
    events = page.inner_text("#events")
    assert "JobCreated" in events
    assert page.locator("#chart-loss path").count() >= 3
    status = get_cr(console_namespace, "trainingruns", name)["status"]
    Shared.run_id, Shared.version = status["mlflowRunId"], status["modelVersion"]
    assert page.inner_text("#run-id") == Shared.run_id
    screenshot(page, "3-training-run")

    goto(page, console, "/training")
    row = page.locator(f'#runs tr[data-name="{name}"]')
    assert "Succeeded" in row.inner_text() and f"{EPOCHS}/{EPOCHS}" in row.inner_text()
    assert "Promoted" in row.inner_text()
    screenshot(page, "3-training")


def test_stop_deletes_the_job_and_says_so(console, browser, console_namespace, pods) -> None:
    page, _ = browser
    name = "stop-me-" + uuid.uuid4().hex[:4]
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingRun", "metadata": {"name": name},
            "spec": {"dataset": {"pvc": DATASET_PVC, "path": "vision"}, "hyperparameters": {"epochs": 1}}}
    custom_api().create_namespaced_custom_object(GROUP, VERSION, console_namespace, "trainingruns", body)
    job = wait_until("the training Job", lambda: (get_cr(console_namespace, "trainingruns", name).get("status") or {})
                     .get("jobName"), timeout=60)
    goto(page, console, f"/training/{name}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#stop-job")
    page.wait_for_selector("#toast:not([hidden])")
    toast = page.inner_text("#toast")
    assert f"Deleted Job {job} of TrainingRun {name}" in toast and "JobDeleted" in toast
    wait_until("the Job to go", lambda: not [j for j in batch_api().list_namespaced_job(console_namespace).items
                                             if j.metadata.name == job], timeout=60)
    until(page, "document.querySelector('#phase .badge').textContent === 'Failed'", timeout=60_000)
    assert "deleted" in page.inner_text("#run-message").lower()
    assert page.is_disabled("#stop-job")


# -- steps 4 and 5 -------------------------------------------------------------------------------------------


def test_evaluation_shows_final_metrics_curves_params_and_plots(console, browser, mlflow_uri) -> None:
    if not Shared.run_id:
        pytest.skip("needs the run trained by test_training_form_shows_the_apiservers_rejection_then_trains")
    from mlflow.tracking import MlflowClient

    MlflowClient(mlflow_uri).log_param(Shared.run_id, "note", HTML_PROBE)  # text from MLflow is escaped
    page, _ = browser
    goto(page, console, f"/evaluation?run={Shared.run_id}")
    for key in ("precision", "recall", "map50", "map50_95"):
        assert re.fullmatch(r"\d+\.\d %", page.inner_text(f"#final-{key} .tile-value")), key
    assert page.locator("#chart-loss path").count() >= 3 and page.locator("#chart-metrics path").count() == 4
    plots = page.eval_on_selector_all("#plots img", "els => els.map(e => e.alt)")
    assert "results.png" in plots and "BoxPR_curve.png" in plots and "confusion_matrix.png" in plots
    until(page, LOADED.format("#plots img"))
    params = page.inner_text("#params")
    assert "epochs" in params and HTML_PROBE in params
    assert page.evaluate("() => window.__pwned") is None
    assert Shared.run_name in page.inner_text("#compare")
    screenshot(page, "4-evaluation")


def test_analysis_shows_bands_and_hardest_images_filtered_by_class(console, browser) -> None:
    if not Shared.run_id:
        pytest.skip("needs the trained run")
    page, _ = browser
    goto(page, console, f"/analysis?run={Shared.run_id}")
    bars = page.locator("#ap-chart .bar")
    assert bars.count() >= 2
    assert sum(int(page.inner_text(f"#band-{b}")) for b in ("good", "fair", "poor")) == bars.count()
    figures = page.locator("#hardest figure.hard")
    assert figures.count() >= 1
    until(page, LOADED.format("#hardest img"))
    classes = page.eval_on_selector_all("#hardest figure.hard", "els => els.map(e => e.dataset.classes)")
    assert any(classes), "the hardest images' classes were found on the dataset volume"
    wanted = next(c for c in classes if c).split(" ")[0]
    page.click(f'#ap-chart .bar[data-class="{wanted}"]')
    assert page.inner_text("#filter-chip .chip-text") == wanted
    shown = page.eval_on_selector_all("#hardest figure.hard:not([hidden])", "els => els.map(e => e.dataset.classes)")
    assert shown and all(wanted in c.split(" ") for c in shown)
    screenshot(page, "5-analysis")


# -- step 6 -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictor(mlflow_uri: str, tmp_path_factory: pytest.TempPathFactory):
    """The real predictor serving the version the form's TrainingRun registered (started once it exists)."""
    if not Shared.version:
        pytest.skip("needs the version registered by the training test")
    log = tmp_path_factory.mktemp("predictor") / "predictor.log"
    # confidence 0: a 4-epoch model at 64 px scores below any useful threshold; the page draws the 20 best boxes.
    # The pictures' model (the demo's recipe) answers at the serving default, as a user's does.
    confidence = [] if PICTURES else ["--confidence", "0"]
    cmd = [sys.executable, "-m", "predictor", "--model-uri", f"models:/{Shared.model}/{Shared.version}",
           "--tracking-uri", mlflow_uri, "--model_name", Shared.model, *confidence,
           "--http_port", str(Shared.predictor_port), "--grpc_port", str(free_port())]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        def ready() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                return requests.get(f"http://127.0.0.1:{Shared.predictor_port}/v2/health/ready", timeout=2).ok
            except requests.ConnectionError:
                return False
        wait_until("the predictor", ready, timeout=180)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_deploy_lists_versions_serving_state_and_tries_an_image(console, browser, predictor, volume, tmp_path) -> None:
    page, guard = browser
    goto(page, console, "/deploy")
    row = page.locator(f'#versions tr[data-version="{Shared.version}"]')
    assert "production" in row.inner_text() and "promoted" in row.inner_text()
    assert Shared.run_name in row.inner_text()
    assert page.inner_text("#served-uri") == f"models:/{Shared.model}/{Shared.version}"
    # the ModelDeployment the operator made for the promotion, serving the version after its rollout
    card = page.locator(f'#production .md-card[data-name="{ISVC_NAME}"]')
    assert card.locator('[data-f="phase"]').inner_text() == "Serving"
    assert card.locator('[data-f="serving"]').inner_text() == Shared.version
    assert "Succeeded" in card.locator('[data-f="rollout"]').inner_text()
    history = card.locator("table.history tbody tr")
    assert history.count() == 1 and f"TrainingRun {Shared.run_name}" in history.inner_text()
    assert "Served" in history.inner_text()
    button = row.locator("form.set-production button")
    assert button.is_disabled() and button.inner_text() == "Serving"
    assert page.locator("#versions form.rollback:not([hidden])").count() == 0, "nothing served before"
    assert f"ModelDeployment {ISVC_NAME}" in page.inner_text("#production-note")

    image = sorted((volume / "vision" / "Casting" / "val").glob("*.png"))[0]
    page.set_input_files("#predict-file", str(image))
    page.click("#predict-button")
    page.wait_for_selector("#predict-result:not([hidden])", timeout=60_000)
    summary = page.inner_text("#predict-summary")
    count = int(summary.split(" ")[0])
    assert count >= 1 and "ms in the predictor" in summary, summary
    assert page.locator("#detections li").count() == min(count, 20)
    drawn = page.evaluate("""() => { const c = document.querySelector('#predict-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4)
          if (Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]) > 120) n++; return n; }""")
    assert drawn > 50, "coloured boxes are drawn on the image"
    screenshot(page, "6-deploy")

    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not an image")
    guard.expect("/api/predict", 415)
    page.set_input_files("#predict-file", str(not_image))
    page.click("#predict-button")
    until(page, "document.querySelector('#toast').textContent.includes('not an image')")
    assert page.locator("#predict-result").is_hidden()

    big = tmp_path / "big.bmp"
    from PIL import Image

    Image.new("RGB", (800, 600), (90, 90, 90)).save(big)  # 1.4 MB, over the console's --max-upload-mb 1
    guard.expect("/api/predict", 413)
    page.set_input_files("#predict-file", str(big))
    page.click("#predict-button")
    until(page, "document.querySelector('#toast').textContent.includes('more than the 1.0 MB')")
    assert requests.get(f"{console.url}/healthz", timeout=5).ok, "the console keeps serving"


# -- drift ------------------------------------------------------------------------------------------------


def test_drift_page_shows_a_check_its_report_and_checks_now(console, browser, console_namespace, pods) -> None:
    page, _ = browser
    spec = {"reference": {"pvc": DATASET_PVC, "path": "vision", "split": "train"},
            "current": {"path": "batches/bright"}, "thresholds": {"minReferenceSamples": 10, "minCurrentSamples": 10}}
    api = custom_api()
    for name, body_spec in (("bright", spec), ("odd-path", {**spec, "current": {"path": f"batches/{HTML_PROBE}"}})):
        api.create_namespaced_custom_object(GROUP, VERSION, console_namespace, "driftchecks", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftCheck", "metadata": {"name": name}, "spec": body_spec})
    pod = pods.wait_for_pod("visionops.io/drift-check=bright,app.kubernetes.io/component=drift-check", timeout=60)
    proc = pods.run(pod)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wait_until("the check result", lambda: (get_cr(console_namespace, "driftchecks", "bright").get("status") or {})
               .get("reportUri"), timeout=90)

    goto(page, console, "/drift?check=bright")
    row = page.locator('#checks tr[data-name="bright"]').inner_text()
    assert "drift" in row and "brightness_mean" in row
    frame = page.frame_locator("#report")
    frame.locator("body").wait_for()
    until(page, "document.querySelector('#report').contentWindow !== null")
    report = page.frame(url=re.compile(r"/drift/bright/report$"))
    assert report is not None
    until(report, "document.body && document.body.innerText.length > 200", timeout=60_000)
    assert "drift" in report.inner_text("body").lower()
    screenshot(page, "7-drift")

    page.once("dialog", lambda dialog: dialog.accept())
    page.click('#checks tr[data-name="bright"] button.check-now')
    until(page, "document.querySelector('#toast').textContent.includes('Created check Job')")
    created = [j for j in batch_api().list_namespaced_job(console_namespace,
                                                            label_selector="visionops.io/drift-check=bright").items
               if j.metadata.name.startswith("bright-now-")]
    assert len(created) == 1
    assert created[0].metadata.owner_references[0].kind == "DriftCheck"

    goto(page, console, "/drift?check=odd-path")
    assert page.inner_text("#current-path") == f"{DATASET_PVC}/batches/{HTML_PROBE}"
    assert page.evaluate("() => window.__pwned") is None


# -- read-only, no cluster, cross-site ----------------------------------------------------------------------


def test_read_only_console_refuses_writes(kube_cluster, console_namespace, mlflow_uri, volume, browser,
                                          tmp_path) -> None:
    page, guard = browser
    with running_console(tmp_path / "ro.log", "--kubeconfig", str(kube_cluster.kubeconfig), "--namespace",
                         console_namespace, "--mlflow-uri", mlflow_uri, "--datasets", str(volume),
                         "--read-only") as ro:
        response = page.goto(ro.url + "/training", wait_until="load")
        assert response.status == 200
        assert page.is_disabled("#start-run")
        assert "read-only" in page.inner_text(".sidebar-foot")
        guard.expect("/api/trainingruns", 403)
        answer = page.evaluate("""async () => {
            const r = await fetch('/api/trainingruns', {method: 'POST', headers: {'Content-Type': 'application/json',
              'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content}, body: '{"epochs": "1"}'});
            return [r.status, (await r.json()).message]; }""")
        assert answer[0] == 403 and "read-only" in answer[1]


def test_without_a_cluster_the_console_serves_data_mlflow_and_says_what_needs_one(
        mlflow_uri, volume, browser, tmp_path) -> None:
    page, _ = browser
    kubeconfig = tmp_path / "nowhere.kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "x", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}]}))
    with running_console(tmp_path / "nocluster.log", "--kubeconfig", str(kubeconfig), "--mlflow-uri", mlflow_uri,
                         "--datasets", str(volume), "--model-name", Shared.model) as lone:
        page.goto(lone.url + "/data", wait_until="load")
        until(page, "document.querySelectorAll('#samples figure.sample').length === 12")
        until(page, LOADED.format("#samples img"))
        assert "no cluster" in page.inner_text(".sidebar-foot")
        page.goto(lone.url + "/training", wait_until="load")
        banner = page.inner_text(".needs-cluster")
        assert "Training needs a Kubernetes cluster" in banner and "does not answer" in banner
        assert page.is_disabled("#start-run")
        screenshot(page, "no-cluster")
        for path in ("/datacard", "/evaluation", "/analysis"):
            assert page.goto(lone.url + path, wait_until="load").status == 200
            if path == "/datacard":
                until(page, "document.querySelectorAll('#samples figure.sample').length === 9")
            until(page, LOADED.format("main img:not([loading=lazy])"))  # leaving earlier would abort image loads
        page.goto(lone.url + "/deploy", wait_until="load")
        if Shared.version:
            assert page.locator(f'#versions tr[data-version="{Shared.version}"]').count() == 1
        assert "Rollout state needs a cluster" in page.inner_text("#isvc")
        assert "need a cluster" in page.inner_text("#production-empty")
        assert "need a Kubernetes cluster" in page.inner_text("#production-note")
        assert page.locator("#versions form").count() == 0, "no Set production / Roll back without a cluster"
        page.goto(lone.url + "/drift", wait_until="load")
        assert "The drift page needs a Kubernetes cluster" in page.inner_text("main")


def test_cross_site_writes_are_refused(console) -> None:
    session = requests.Session()
    page = session.get(f"{console.url}/training", timeout=30)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    assert session.cookies.get("visionops_csrf") == token
    url = f"{console.url}/api/trainingruns"
    good = {"Origin": console.url, "X-CSRF-Token": token}
    refused = [
        session.post(url, json={}, headers={"Origin": "https://evil.example", "X-CSRF-Token": token}, timeout=30),
        session.post(url, json={}, headers={"Origin": console.url}, timeout=30),
        session.post(url, json={}, headers={"Origin": console.url, "X-CSRF-Token": "forged" * 4}, timeout=30),
        requests.post(url, json={}, headers=good, timeout=30),  # no cookie
        session.post(url, json={}, headers={"X-CSRF-Token": token}, timeout=30),  # no Origin, no Referer
    ]
    for answer in refused:
        assert answer.status_code == 403 and "cross-site request refused" in answer.json()["message"], answer.text
    rebound = requests.get(f"{console.url}/training", headers={"Host": "rebound.example"}, timeout=30)
    assert rebound.status_code == 421, "a page whose DNS name was rebound to the console's address gets nothing"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("style-src")[0]
