"""The Production page in a real browser, over real parts: the real predictor (``python -m predictor``) answers
images, a real Prometheus (Debian's) scrapes it every second and evaluates the chart's alerting rules, and the
namespace's ModelDeployment history on the real control plane gives the rollouts to mark. The page shows the
detections per class, images, latency and errors with the rollout marked, and the alert that is active."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from consoletools import REPO, running_console
from fixtures.browser import browser_missing, screenshot
from fixtures.cluster import wait_until
from fixtures.prometheus import prometheus_missing, running_prometheus

from visionops import production
from visionops.local_mlflow import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.slow,
              pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing())),
              pytest.mark.skipif(prometheus_missing() is not None, reason=str(prometheus_missing()))]

MODEL = "vision-defect-detector"


@pytest.fixture(scope="module")
def predictor(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real predictor serving the tiny model (every box counts: confidence 0.0001); its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("predictor") / "predictor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "predictor", "--model-dir", str(tiny_model_dir), "--imgsz",
                                 "64", "--confidence", "0.0001", "--http_port", str(port), "--grpc_port",
                                 str(free_port())], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            return requests.get(f"{url}/v2/health/ready", timeout=2).ok
        except requests.ConnectionError:
            return False

    try:
        wait_until("the predictor", ready, timeout=180)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def traffic(url: str, images: list[bytes], seconds: float) -> None:
    """A line's worth of requests for ``seconds``: good images, and now and then one that is not base64."""
    deadline, i = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        body = {"instances": [base64.b64encode(images[i % len(images)]).decode()]}
        assert requests.post(f"{url}/v1/models/{MODEL}:predict", json=body, timeout=30).status_code == 200
        if i % 6 == 0:
            requests.post(f"{url}/v1/models/{MODEL}:predict", json={"instances": ["%%%"]}, timeout=30)
        i += 1
        time.sleep(0.25)


def deployment_with_history(kubeconfig: Path, namespace: str, version: str, moved: datetime) -> None:
    """A ModelDeployment whose history says ``version`` went into production at ``moved`` (the operator's record)."""
    import kubernetes

    api = kubernetes.client.CustomObjectsApi(kubernetes.config.new_client_from_config(config_file=str(kubeconfig)))
    md = (production.GROUP, production.VERSION, namespace, production.PLURAL)
    api.create_namespaced_custom_object(*md, {
        "apiVersion": f"{production.GROUP}/{production.VERSION}", "kind": production.KIND,
        "metadata": {"name": "predictor"},
        "spec": {"model": {"name": MODEL}, "inferenceService": "predictor", "version": version}})
    stamp = moved.strftime("%Y-%m-%dT%H:%M:%SZ")
    api.patch_namespaced_custom_object_status(*md, "predictor", {"status": {
        "phase": production.SERVING, "servingVersion": version, "desiredVersion": version,
        "history": [production.history_entry(version, "visionops-console:alice", stamp, cause="a better model")]}})


def test_production_page_shows_the_defect_trend_with_the_rollout_and_the_alerts(
        predictor: str, tiny_images: list[bytes], console_namespace: str, kube_cluster: Any, browser: Any,
        tmp_path: Path) -> None:
    page, _ = browser
    scrape = predictor.removeprefix("http://")
    gone = f"127.0.0.1:{free_port()}"  # a predictor replica that does not answer: VisionOpsPredictorDown
    deployment_with_history(kube_cluster.kubeconfig, console_namespace, "2", datetime.now(UTC) - timedelta(seconds=20))
    with running_prometheus(tmp_path / "prometheus", {"visionops-predictor": [scrape],
                                                      "visionops-predictor-canary": [gone]}) as prometheus:
        traffic(predictor, tiny_images, 15)
        args = ["--kubeconfig", str(kube_cluster.kubeconfig), "--namespace", console_namespace,
                "--prometheus-url", prometheus]
        with running_console(tmp_path / "console.log", *args) as console:
            response = page.goto(f"{console.url}/production?window=15m", wait_until="load")
            assert response is not None and response.status == 200
            for panel in ("detections", "images", "latency", "errors"):
                lines = page.locator(f"#panel-{panel} svg.timechart path")
                assert lines.count() >= 1, f"panel {panel} drew nothing:\n{page.inner_text('main')[:2000]}"
            legend = page.inner_text("#panel-detections .chart-legend")
            assert any(name in legend for name in ("screw/", "casting/", "ring/")), legend
            assert "not_base64" in page.inner_text("#panel-errors .chart-legend")
            assert page.locator("#panel-detections svg .marker text").first.text_content() == "v2"
            assert "the newest v2" in page.inner_text("#markers-note")
            alert = page.locator('#alerts [data-alert="VisionOpsPredictorDown"]')
            assert alert.count() == 1 and gone in alert.inner_text()
            screenshot(page, "production")

    with running_console(tmp_path / "bare.log", "--kubeconfig", str(kube_cluster.kubeconfig)) as bare:
        page.goto(f"{bare.url}/production", wait_until="load")
        assert "console.prometheusUrl" in page.inner_text("#no-prometheus")
