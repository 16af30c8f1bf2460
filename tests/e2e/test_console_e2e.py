"""End to end on a real node: the chart's console pod (docker/console.Dockerfile), opened through its Service.

The release of ``charts/visionops/ci/05-kind-values.yaml`` runs the console with its own ServiceAccount and Role,
the dataset volume mounted read-only and the in-cluster MLflow; ``tests/e2e/e2e-values.yaml`` makes its Service a
NodePort, and the fixture adds the node's IP to the console's allowed Host headers. The pages are read the way a
browser reads them: plain GETs of the server-rendered HTML, JSON and images. Nothing is trained here
(tests/e2e/test_e2e.py does that): the deploy page shows the registry (empty) and the InferenceService the chart
created.
"""

from __future__ import annotations

import html
import json
import re
import urllib.error
import urllib.request

import pytest
from fixtures.e2e import Release, client, finished, mlflow_writer

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1800)]

CONSOLE = "visionops-console"  # the chart's console Deployment and Service (release "visionops")
MLFLOW = "visionops-mlflow"  # the chart's MLflow Service
CONSOLE_SELECTOR = "app.kubernetes.io/component=console"
MODEL = "vision-defect-detector"  # the chart's predictor.modelName
PREDICTOR = "visionops-predictor"  # the chart's InferenceService
DATASET = "synthetic"  # write_datasets(): the VISION tree <dataset volume>/synthetic (batches/bright is no tree)


def get(url: str, host: str | None = None, timeout: float = 60) -> tuple[int, str, bytes]:
    """``GET url``: ``(status, content type, body)``, 4xx/5xx included; ``host`` overrides the Host header."""
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def page(url: str) -> str:
    """The HTML of a console page that must answer 200, entities decoded."""
    status, content_type, body = get(url)
    text = body.decode(errors="replace")
    assert status == 200, f"GET {url} -> {status}: {text[-2000:]}"
    assert content_type.startswith("text/html"), content_type
    return html.unescape(text)


def answers(url: str) -> bool:
    try:
        return get(url, timeout=5)[0] == 200
    except OSError:  # refused while kube-proxy has no ready endpoint for the NodePort yet
        return False


def visible_text(markup: str) -> str:
    """The page's text without tags, whitespace collapsed (what the pills and tables say)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", markup))


def assert_connected(text: str, namespace: str, where: str) -> None:
    """The sidebar's pills: the Kubernetes API answered as the console's ServiceAccount, and MLflow answered."""
    assert f"cluster · ns {namespace}" in text and "no cluster" not in text, f"{where}: no cluster\n{text[:3000]}"
    assert "no MLflow" not in text, f"{where}: MLflow not reachable from the console pod\n{text[:3000]}"


@pytest.fixture(scope="module")
def console(e2e_release: Release, e2e_images: dict[str, str]) -> str:
    """Base URL of the console's Service on the node, once the pod (from the console image) answers there."""
    release = e2e_release
    pod = release.get("deployment", CONSOLE)["spec"]["template"]["spec"]["containers"][0]
    assert pod["image"] == e2e_images["console"], (pod["image"], e2e_images["console"])
    release.wait("a Ready console pod", lambda: any(
        c["type"] == "Ready" and c["status"] == "True"
        for p in release.get("pods", "-l", CONSOLE_SELECTOR)["items"] for c in p["status"].get("conditions", [])),
        180)
    base = release.node_port_url(CONSOLE)
    release.wait("the console Service to answer", lambda: answers(f"{base}/healthz"), 120)
    return base


def test_data_page_shows_the_dataset_volume(e2e_release: Release, console: str) -> None:
    release = e2e_release
    text = visible_text(page(f"{console}/data?ds={DATASET}"))
    assert_connected(text, release.namespace, "/data")
    products = sorted(p.name for p in (release.dataset_dir / DATASET).iterdir() if p.is_dir())
    assert products, f"no products under {release.dataset_dir / DATASET}"
    assert f"Products {len(products)} in {DATASET}" in text, text[:3000]
    for product in products:
        assert product in text, f"product {product} not on the data page"
    assert "Ready to train Yes" in text and "0 errors" in text, text[:3000]
    assert "cannot read" not in text and "no VISION tree" not in text

    # The random annotated samples: JSON, then one rendered tile (pillow + pycocotools in the image).
    status, content_type, body = get(f"{console}/api/samples?ds={DATASET}&split=val&n=3&seed=1")
    assert status == 200 and content_type.startswith("application/json"), (status, body[:500])
    samples = json.loads(body)
    assert samples["ok"] and len(samples["items"]) == 3, samples
    assert {item["caption"].split(" · ")[0] for item in samples["items"]} <= set(products)
    status, content_type, body = get(console + samples["items"][0]["tile"])
    assert status == 200 and content_type == "image/jpeg" and body[:3] == b"\xff\xd8\xff", (status, content_type)

    text = visible_text(page(f"{console}/datacard?ds={DATASET}"))
    assert "no VISION tree" not in text and "cannot read" not in text


def test_deploy_page_shows_the_registry_and_the_inference_service(e2e_release: Release, console: str) -> None:
    release = e2e_release
    markup = page(f"{console}/deploy")
    text = visible_text(markup)
    assert_connected(text, release.namespace, "/deploy")
    assert "MLflow is not reachable" not in text and "MLflow answered with an error" not in text, text[:3000]
    # Everything it reads here (InferenceService, ModelDeployments) its chart Role allows (a refusal says "may not").
    assert "may not" not in text and "orbidden" not in text, text[:3000]
    # The chart's console signs people in (console.signIn: token): until then it offers no change.
    assert "sign in with your Kubernetes token first" in text and "Sign in" in text, text[:3000]
    # The registry section, read from the in-cluster MLflow (nothing trained in this release).
    assert f"Registry {MODEL}" in text, text[:3000]
    assert f"No version of {MODEL} is registered yet" in text, text[:3000]
    # The InferenceService the chart created, read through the console's Role (get inferenceservices).
    assert f"InferenceService {PREDICTOR}" in text
    assert "Rollout state needs a cluster" not in text and f"No InferenceService {PREDICTOR}" not in text, text[:3000]
    assert 'id="served-uri"' in markup, "the InferenceService's state is not shown"
    assert f"models:/{MODEL}" in text, "the InferenceService's model URI is not shown"
    # "Try it" is wired to the chart's predictor Service (console.predictorUrl empty: predictor-http).
    assert 'id="predict-form"' in markup and "No predictor address" not in text


def test_other_pages_and_the_host_check(e2e_release: Release, console: str) -> None:
    release = e2e_release
    for path in ("/training", "/evaluation", "/analysis", "/drift"):
        text = visible_text(page(console + path))
        assert_connected(text, release.namespace, path)
        assert "orbidden" not in text, f"{path}: an RBAC refusal\n{text[:3000]}"
    status, content_type, _ = get(f"{console}/static/console.css")
    assert status == 200 and content_type.startswith("text/css")
    # A Host the chart did not list (DNS rebinding) is refused before any page runs.
    status, _, body = get(f"{console}/data", host="attacker.example")
    assert status == 421, (status, body[:300])
    logs = release.kubectl("logs", f"deployment/{CONSOLE}", "--tail=200", check=False)
    assert not re.search(r"Traceback|[Ff]orbidden", logs), logs[-4000:]


def test_only_visionops_pods_reach_mlflow(e2e_release: Release, console: str) -> None:
    """The chart's NetworkPolicies (kube-router enforces them on kind): a training-Job-like pod reaches MLflow, any
    other pod does not; the console (through its page, above) does. The console's Service stays open to all. And
    MLflow's sign-in: without an account a write is 401, with a read-only one 403."""
    release = e2e_release
    port = release.get("service", MLFLOW)["spec"]["ports"][0]["port"]
    url = f"http://{MLFLOW}:{port}/health"
    job_like = {"app.kubernetes.io/name": "visionops", "app.kubernetes.io/component": "training"}
    release.cluster.apply(json.dumps(client("mlflow-from-job", url, job_like)), namespace=release.namespace)
    assert finished(release.cluster, release.namespace, "mlflow-from-job") == "Succeeded", release.diagnostics()
    release.cluster.apply(json.dumps(client("mlflow-from-stranger", url)), namespace=release.namespace)
    assert finished(release.cluster, release.namespace, "mlflow-from-stranger") == "Failed", \
        "a pod outside the allow-list reached MLflow"
    # Inside the allow-list MLflow still wants an account: none -> 401; the console's (read-only) -> 403 on moving
    # the production alias (MLflow's auth app answers 403 whether or not the model exists yet).
    alias = f"http://{MLFLOW}:{port}/api/2.0/mlflow/registered-models/alias"
    move = {"name": MODEL, "alias": "production", "version": "1"}
    for name, secret, key, expected in (("mlflow-anonymous", "", "", "401"),
                                        ("mlflow-as-console", f"{MLFLOW}-auth", "console", "403")):
        release.cluster.apply(json.dumps(mlflow_writer(name, alias, move, job_like, secret, key)),
                              namespace=release.namespace)
        assert finished(release.cluster, release.namespace, name) == "Succeeded", release.diagnostics()
        said = release.kubectl("logs", name).strip()
        assert said == expected, f"{name}: MLflow answered {said}, not {expected}"
    console_url = f"http://{CONSOLE}:{release.get('service', CONSOLE)['spec']['ports'][0]['port']}/healthz"
    release.cluster.apply(json.dumps(client("console-from-stranger", console_url)), namespace=release.namespace)
    assert finished(release.cluster, release.namespace, "console-from-stranger") == "Succeeded"
