"""The Deploy step's production controls in a real browser (Debian's chromium), against the real control plane and
a real MLflow server, without the operator: the tests create a ModelDeployment and write its status through the
status subresource as the operator would, click "Set production" and "Roll back", and check what the console
wrote (spec.version, the change cause, its field manager), what it left alone (the MLflow alias: the operator's
job), and what it shows (phase, rollout, history, the RolloutFailed alert, refusals). tests/operator covers the
operator's side of the same resource.
"""

from __future__ import annotations

import json
import re
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from consoletools import ConsoleProcess, running_console, start_console
from fixtures.browser import browser_missing, screenshot, until
from fixtures.cluster import KubeCluster

from visionops import production

pytestmark = [pytest.mark.cluster, pytest.mark.mlflow, pytest.mark.slow,
              pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))]

NAME = "detector"  # the ModelDeployment and its InferenceService
KSERVE = ("serving.kserve.io", "v1beta1")
MD = (production.GROUP, production.VERSION)
CONSOLE = "visionops-console"
NOTICE = re.compile(r"/deploy\?.*notice=")


class Registry:
    """The registered model of the module: three versions, each from a finished training run."""

    model = f"deploy-detector-{uuid.uuid4().hex[:6]}"
    versions: list[str] = []


def api_client() -> Any:
    import os

    import kubernetes

    return kubernetes.config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))


def custom_api() -> Any:
    import kubernetes

    return kubernetes.client.CustomObjectsApi(api_client())


@pytest.fixture(scope="module")
def registry(mlflow_uri: str) -> list[str]:
    """Three versions of :attr:`Registry.model` with metrics, the gate's tag, and the production alias on v2."""
    from mlflow.tracking import MlflowClient

    from visionops.registry import PROMOTION_TAG

    client = MlflowClient(mlflow_uri)
    client.create_registered_model(Registry.model)
    experiment = client.create_experiment(f"exp-{Registry.model}")
    versions = []
    for i, map50 in enumerate((0.61, 0.68, 0.72), start=1):
        run = client.create_run(experiment, tags={"visionops.io/kind": "training", "visionops.io/name": f"defects-{i}"})
        for key, value in (("map50", map50), ("precision", map50 + 0.08), ("recall", map50 - 0.05)):
            client.log_metric(run.info.run_id, key, value)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "class_map.json").write_text("{}")
            client.log_artifact(run.info.run_id, str(Path(tmp) / "class_map.json"), "model")
        client.set_terminated(run.info.run_id)
        version = client.create_model_version(Registry.model, f"{run.info.artifact_uri}/model", run.info.run_id).version
        client.set_model_version_tag(Registry.model, version, PROMOTION_TAG, "promoted")
        versions.append(str(version))
    client.set_registered_model_alias(Registry.model, "production", versions[1])
    Registry.versions = versions
    return versions


@pytest.fixture(scope="module")
def deployment(console_namespace: str, registry: list[str]) -> str:
    """The InferenceService (Ready, as KServe would say) and its ModelDeployment; no operator acts on them."""
    api = custom_api()
    uri = f"models:/{Registry.model}/{registry[1]}"
    api.create_namespaced_custom_object(*KSERVE, console_namespace, "inferenceservices", {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": NAME, "annotations": {"visionops.io/model-version": registry[1]}},
        "spec": {"predictor": {"containers": [{"name": "kserve-container", "image": "visionops-predictor:0.1.0",
                                               "env": [{"name": "VISIONOPS_MODEL_URI", "value": uri}]}]}}})
    api.patch_namespaced_custom_object_status(*KSERVE, console_namespace, "inferenceservices", NAME, {"status": {
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        "address": {"url": f"http://{NAME}-predictor.{console_namespace}.svc.cluster.local"}}})
    api.create_namespaced_custom_object(*MD, console_namespace, production.PLURAL, {
        "apiVersion": f"{production.GROUP}/{production.VERSION}", "kind": production.KIND,
        "metadata": {"name": NAME},
        "spec": {"model": {"name": Registry.model}, "inferenceService": NAME, "version": registry[1]}})
    return console_namespace


@pytest.fixture(scope="module")
def deploy_console(kube_cluster: KubeCluster, deployment: str, mlflow_uri: str,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleProcess]:
    process = start_console(tmp_path_factory.mktemp("deploy-console") / "console.log", *console_args(
        kube_cluster.kubeconfig, deployment, mlflow_uri))
    yield process
    process.stop()


def console_args(kubeconfig: Path, namespace: str, mlflow_uri: str) -> list[str]:
    return ["--kubeconfig", str(kubeconfig), "--namespace", namespace, "--mlflow-uri", mlflow_uri,
            "--model-name", Registry.model, "--inference-service", NAME]


# -- playing the operator ------------------------------------------------------------------------------------


def stamp(seconds_ago: float = 0) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry(version: str, moved_by: str, outcome: str = "", cause: str = "", ago: float = 0) -> dict[str, str]:
    found = production.history_entry(version, moved_by, stamp(ago), cause=cause)
    return found | ({"outcome": outcome} if outcome else {})


def get_md(namespace: str) -> dict:
    return custom_api().get_namespaced_custom_object(*MD, namespace, production.PLURAL, NAME)


def operator_writes(namespace: str, version: str | None = None, **status: Any) -> dict:
    """What the operator would write: spec.version (when it goes back) as its field manager, then the whole status
    (observedGeneration: the generation it acted on)."""
    api = custom_api()
    if version is not None:
        api.patch_namespaced_custom_object(*MD, namespace, production.PLURAL, NAME, {"spec": {"version": version}},
                                           field_manager="visionops-operator")
    md = get_md(namespace)
    old = md.get("status") or {}
    body = {key: None for key in old} | {"observedGeneration": md["metadata"]["generation"]} | status
    for key, value in status.items():  # a merge patch merges objects: the keys the new one lacks go
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            body[key] = {k: None for k in old[key]} | value
    return api.patch_namespaced_custom_object_status(*MD, namespace, production.PLURAL, NAME, {"status": body})


def serving(namespace: str, version: str, previous: str, history: list[dict], seconds: float = 8.4,
            spec: str | None = None) -> dict:
    return operator_writes(
        namespace, spec, phase="Serving", desiredVersion=version, servingVersion=version, previousVersion=previous,
        modelUri=f"models:/{Registry.model}/{version}",
        message=f"pod {NAME}-predictor-v{version} serves version {version}",
        rollout={"version": version, "startTime": stamp(seconds + 60), "endTime": stamp(60), "seconds": seconds,
                 "outcome": "Succeeded"}, history=history,
        conditions=[{"type": "Ready", "status": "True", "reason": "Serving", "lastTransitionTime": stamp(60)}])


def v2_serving(namespace: str) -> dict:
    """The starting point: v1 came from the alias, v2 from the CLI; v2 serves."""
    v1, v2, _ = Registry.versions
    history = [entry(v1, "mlflow-alias", "Served", "the production alias was moved in MLflow", ago=7200),
               entry(v2, "visionops-cli", "Served", "alice@lab with visionops deploy", ago=3600)]
    return serving(namespace, v2, v1, history, spec=v2)


# -- the page -------------------------------------------------------------------------------------------------


def goto(page: Any, console: ConsoleProcess) -> None:
    response = page.goto(f"{console.url}/deploy?model={Registry.model}", wait_until="load")
    assert response is not None and response.status == 200


def set_button(page: Any, version: str) -> Any:
    return page.locator(f'#versions tr[data-version="{version}"] form.set-production button')


def rollback_form(page: Any, version: str) -> Any:
    return page.locator(f'#versions tr[data-version="{version}"] form.rollback')


def submit(page: Any, button: Any) -> str:
    """Click a production button, accept its confirmation, land back on the Deploy page: its notice text."""
    before = page.url
    page.once("dialog", lambda dialog: dialog.accept())
    button.click()
    page.wait_for_url(lambda url: url != before and NOTICE.search(url) is not None)
    return page.inner_text("#deploy-notice")


def card(page: Any) -> Any:
    return page.locator(f'#production .md-card[data-name="{NAME}"]')


def field(page: Any, name: str) -> str:
    return card(page).locator(f'[data-f="{name}"]').inner_text()


def console_wrote(md: dict, version: str, cause: str) -> None:
    """spec.version and the change cause, sent in one request by the console's field manager."""
    assert md["spec"]["version"] == version
    assert md["metadata"]["annotations"][production.CHANGE_CAUSE] == cause
    mine = [e for e in md["metadata"]["managedFields"] if e["manager"] == CONSOLE]
    assert len(mine) == 1 and mine[0]["operation"] == "Update", md["metadata"]["managedFields"]
    owned = mine[0]["fieldsV1"]
    assert "f:version" in owned["f:spec"]
    assert f"f:{production.CHANGE_CAUSE}" in owned["f:metadata"]["f:annotations"]


def alias(mlflow_uri: str) -> str:
    from mlflow.tracking import MlflowClient

    return MlflowClient(mlflow_uri).get_model_version_by_alias(Registry.model, "production").version


# -- the tests ------------------------------------------------------------------------------------------------


def test_set_production_then_roll_back(deploy_console, deployment, browser, mlflow_uri) -> None:
    page, _ = browser
    ns, (v1, v2, v3) = deployment, Registry.versions
    v2_serving(ns)
    goto(page, deploy_console)
    assert field(page, "phase") == "Serving"
    assert (field(page, "version"), field(page, "serving"), field(page, "previous")) == (v2, v2, v1)
    assert card(page).locator("table.history tbody tr").count() == 2
    assert set_button(page, v2).is_disabled() and set_button(page, v2).inner_text() == "Serving"
    assert set_button(page, v3).is_enabled() and set_button(page, v3).inner_text() == "Set production"
    assert page.locator("#versions form.rollback:not([hidden])").count() == 1
    assert rollback_form(page, v1).inner_text() == f"Roll back to version {v1}"
    assert page.locator("#production").get_attribute("data-poll") == "false", "nothing to follow"

    notice = submit(page, set_button(page, v3))
    assert f"Version {v3} requested." in notice and f"spec.version of ModelDeployment {NAME} is now {v3}" in notice
    console_wrote(get_md(ns), v3, "console: set production")
    assert alias(mlflow_uri) == v2, "the console leaves the MLflow alias to the operator"
    assert card(page).locator(".md-alert").inner_text().startswith(f"Version {v3} requested.")
    assert set_button(page, v3).is_disabled() and set_button(page, v3).inner_text() == "Requested"

    # The operator's turn (played): the panel follows its status by itself, without a reload.
    page.evaluate("() => { window.__samePage = true; }")
    history = [*get_md(ns)["status"]["history"], entry(v3, CONSOLE, cause="console: set production")]
    operator_writes(ns, phase="RollingOut", desiredVersion=v3, servingVersion=v2, previousVersion=v1,
                    message=f"rolling out version {v3} (3/300 s): pod {NAME}-predictor-v{v3} is not ready yet",
                    rollout={"version": v3, "startTime": stamp(3), "outcome": "InProgress"}, history=history)
    until(page, "document.querySelector('.md-card [data-f=phase]').textContent === 'Rolling out' && "
                "document.querySelector('.md-card .md-alert').textContent.includes('is not ready yet')")
    assert page.evaluate("() => window.__samePage") is True
    assert field(page, "rollout").startswith(f"version {v3} \u00b7 InProgress, started ")
    assert set_button(page, v3).is_disabled() and set_button(page, v3).inner_text() == "Rolling out"
    assert set_button(page, v2).is_enabled(), "back to the serving version: cancels the rollout"
    screenshot(page, "deploy-rolling-out")
    history[-1]["outcome"] = "Served"
    serving(ns, v3, v2, history)
    until(page, "document.querySelector('.md-card [data-f=phase]').textContent === 'Serving' && "
                "document.querySelector('#production').dataset.poll === 'false'")
    assert page.evaluate("() => window.__samePage") is True
    assert (field(page, "serving"), field(page, "previous")) == (v3, v2)
    assert card(page).locator(".md-alert").is_hidden()
    assert set_button(page, v3).is_disabled() and set_button(page, v3).inner_text() == "Serving"
    assert set_button(page, v1).is_enabled() and rollback_form(page, v2).is_visible()
    newest = card(page).locator("table.history tbody tr").first.inner_text()
    assert CONSOLE in newest and "console: set production" in newest and "Served" in newest

    notice = submit(page, rollback_form(page, v2).locator("button"))
    assert f"Version {v2} requested." in notice and "console: rollback" in notice
    console_wrote(get_md(ns), v2, "console: rollback")
    assert page.locator("#versions form.rollback:not([hidden])").count() == 0, "already asked for"
    assert page.locator("#production").get_attribute("data-poll") == "true"


def test_a_failed_rollout_shows_the_operators_message_in_an_alert(deploy_console, deployment, browser) -> None:
    page, _ = browser
    ns, (v1, v2, v3) = deployment, Registry.versions
    why = (f"version {v3} did not become ready within 300 s: pod {NAME}-predictor-v{v3}: CrashLoopBackOff: back-off "
           f"2m40s restarting failed container=kserve-container; production went back to version {v2}")
    operator_writes(
        ns, v2, phase="RolloutFailed", desiredVersion=v2, servingVersion=v2, previousVersion=v1, message=why,
        rollout={"version": v3, "startTime": stamp(320), "endTime": stamp(20), "seconds": 300.2, "outcome": "Failed"},
        history=[entry(v1, "mlflow-alias", "Served", "the production alias was moved in MLflow", ago=7200),
                 entry(v2, "visionops-cli", "Served", "alice@lab with visionops deploy", ago=3600),
                 entry(v3, CONSOLE, "RolloutFailed", "console: set production", ago=320),
                 entry(v2, production.ROLLBACK_MOVER, "", f"version {v3} did not become ready", ago=20)],
        conditions=[{"type": "Ready", "status": "False", "reason": "RolloutFailed", "message": why,
                     "lastTransitionTime": stamp(20)}])
    goto(page, deploy_console)
    alert = card(page).locator('.md-alert[role="alert"]')
    assert alert.is_visible() and "error" in alert.get_attribute("class").split()
    assert alert.inner_text().startswith("Rollout failed.") and "CrashLoopBackOff" in alert.inner_text()
    assert field(page, "phase") == "Rollout failed"
    assert field(page, "rollout") == f"version {v3} \u00b7 Failed in 300.2 s"
    assert set_button(page, v2).inner_text() == "Serving" and set_button(page, v3).is_enabled()
    assert rollback_form(page, v1).is_visible()
    assert "rollout-failed" in card(page).locator("table.history tbody tr").first.inner_text()
    screenshot(page, "deploy-rollout-failed")


def restricted_kubeconfig(kube_cluster: KubeCluster, namespace: str, folder: Path) -> Path:
    """A kubeconfig of a ServiceAccount that may read ModelDeployments but not patch them."""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "deploy-reader"},
            "rules": [{"apiGroups": ["visionops.io"], "resources": ["trainingruns", "modeldeployments"],
                       "verbs": ["get", "list", "watch"]},
                      {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"], "verbs": ["get"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": "deploy-reader"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deploy-reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "deploy-reader", "namespace": namespace}]}
    kube_cluster.kubectl("create", "serviceaccount", "deploy-reader", "-n", namespace)
    kube_cluster.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": [role, binding]}), namespace)
    token = kube_cluster.kubectl("create", "token", "deploy-reader", "-n", namespace, "--duration=1h").stdout.strip()
    config = json.loads(kube_cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    config["users"] = [{"name": config["users"][0]["name"], "user": {"token": token}}]
    path = folder / "reader.kubeconfig"
    path.write_text(json.dumps(config))
    return path


def test_refusals_are_one_clear_message_and_change_nothing(deploy_console, deployment, browser, kube_cluster,
                                                           mlflow_uri, tmp_path) -> None:
    page, _ = browser
    ns, v3 = deployment, Registry.versions[2]
    v2_serving(ns)
    before = get_md(ns)
    goto(page, deploy_console)

    def tampered(name: str, value: str) -> str:
        page.evaluate("([v, name, value]) => { document.querySelector(`#versions tr[data-version=\"${v}\"] "
                      "form.set-production input[name=\"${name}\"]`).value = value; }", [v3, name, value])
        return submit(page, set_button(page, v3))

    # a version the CRD's schema refuses (13 digits: longer than spec.version's maxLength): the apiserver's words
    from kubernetes.client.rest import ApiException

    with pytest.raises(ApiException) as dry:
        custom_api().patch_namespaced_custom_object(*MD, ns, production.PLURAL, NAME,
                                                    production.set_version_patch("1234567890123"), dry_run="All")
    said = json.loads(dry.value.body)["message"]
    notice = tampered("version", "1234567890123")
    assert notice.startswith("Production was not changed.") and said in notice, (said, notice)
    assert page.locator("#deploy-notice").get_attribute("role") == "alert"
    assert tampered("version", "v3").endswith("a model version is a registered version number like 3, got 'v3'")
    assert f"ModelDeployment gone does not exist in namespace {ns}" in tampered("deployment", "gone")
    after = get_md(ns)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], "nothing was written"

    # RBAC: a console whose identity may read ModelDeployments but not patch them
    reader = restricted_kubeconfig(kube_cluster, ns, tmp_path)
    with running_console(tmp_path / "reader.log", *console_args(reader, ns, mlflow_uri)) as limited:
        goto(page, limited)
        assert field(page, "phase") == "Serving"
        notice = submit(page, set_button(page, v3))
        assert notice.startswith("Production was not changed.")
        assert f"the console may not patch ModelDeployments in namespace {ns}" in notice and "forbidden" in notice
    assert get_md(ns)["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_a_read_only_console_shows_production_without_buttons(deployment, browser, kube_cluster, mlflow_uri,
                                                               tmp_path) -> None:
    page, _ = browser
    ns, (_, v2, v3) = deployment, Registry.versions
    v2_serving(ns)
    before = get_md(ns)["metadata"]["resourceVersion"]
    args = console_args(kube_cluster.kubeconfig, ns, mlflow_uri)
    with running_console(tmp_path / "ro.log", *args, "--read-only") as ro:
        goto(page, ro)
        assert field(page, "phase") == "Serving" and field(page, "serving") == v2
        assert page.locator("#versions tr[data-version]").count() == 3
        assert page.locator("#versions form").count() == 0
        assert "Read-only console" in page.inner_text("#production-note")
        # the same form, sent anyway (with a valid token): refused, nothing written
        session = requests.Session()
        token = re.search(r'name="csrf-token" content="([^"]+)"', session.get(f"{ro.url}/deploy", timeout=30).text)[1]
        answer = session.post(f"{ro.url}/deploy/production", headers={"Origin": ro.url}, allow_redirects=False,
                              data={"csrf_token": token, "deployment": NAME, "model": Registry.model, "action": "set",
                                    "version": v3}, timeout=30)
        assert answer.status_code == 303
        shown = session.get(f"{ro.url}{answer.headers['location']}", timeout=30).text
        assert "Production was not changed." in shown and "The console is read-only" in shown
    assert get_md(ns)["metadata"]["resourceVersion"] == before


def person(kube_cluster: KubeCluster, namespace: str, name: str, verbs: list[str]) -> str:
    """A ServiceAccount standing for a person, with ``verbs`` on ModelDeployments; a bearer token of it."""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": f"person-{name}"},
            "rules": [{"apiGroups": ["visionops.io"], "resources": ["modeldeployments"], "verbs": verbs}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": f"person-{name}"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"person-{name}"},
               "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]}
    kube_cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
    kube_cluster.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": [role, binding]}), namespace)
    return kube_cluster.kubectl("create", "token", name, "-n", namespace, "--duration=1h").stdout.strip()


def sign_in(page: Any, console: ConsoleProcess, token: str) -> None:
    page.goto(f"{console.url}/signin?next=/deploy%3Fmodel%3D{Registry.model}", wait_until="load")
    page.fill("#token", token)
    page.click("#signin-submit")
    page.wait_for_load_state("load")


def test_people_sign_in_and_change_production_as_themselves(deployment, browser, kube_cluster, mlflow_uri,
                                                            tmp_path) -> None:
    """--sign-in token: read-only until someone signs in with their Kubernetes token; then "Set production" is made
    with that token, so RBAC decides (a refusal names the person) and the field manager and cause name them."""
    page, guard = browser
    ns, (_, v2, v3) = deployment, Registry.versions
    v2_serving(ns)
    before = get_md(ns)["metadata"]["resourceVersion"]
    alice = person(kube_cluster, ns, "alice", ["get", "list", "patch"])
    bob = person(kube_cluster, ns, "bob", ["get", "list"])
    args = console_args(kube_cluster.kubeconfig, ns, mlflow_uri)
    with running_console(tmp_path / "signin.log", *args, "--sign-in", "token") as console:
        goto(page, console)
        assert page.locator("#versions form").count() == 0, "changes offered before anyone signed in"
        assert "sign in" in page.inner_text("#production-note") and page.locator("#signin-link").is_visible()
        screenshot(page, "deploy-signed-out")
        # the API refuses too, with a pointer to the sign-in
        session = requests.Session()
        token = re.search(r'name="csrf-token" content="([^"]+)"', session.get(f"{console.url}/training",
                                                                              timeout=30).text)[1]
        refused = session.post(f"{console.url}/api/trainingruns", json={"name": "x"}, timeout=30,
                               headers={"Origin": console.url, "X-CSRF-Token": token})
        assert refused.status_code == 401 and refused.json()["signIn"] == "/signin"

        guard.expect("/signin", 401)
        sign_in(page, console, "not-a-token-the-cluster-knows")
        assert "the cluster does not accept this token" in page.inner_text("#signin-problem")
        screenshot(page, "signin-refused")

        sign_in(page, console, bob)
        who = f"system:serviceaccount:{ns}:bob"
        assert page.inner_text("#signed-in .pill") == who and "/deploy" in page.url
        notice = submit(page, set_button(page, v3))
        assert notice.startswith("Production was not changed.")
        assert f"{who} may not patch ModelDeployments in namespace {ns}" in notice and "forbidden" in notice
        assert get_md(ns)["metadata"]["resourceVersion"] == before, "a refused change wrote something"
        screenshot(page, "deploy-refused-for-bob")
        page.click("#signout")
        page.wait_for_url(lambda url: url.endswith("/data"))
        assert page.locator("#signin-link").is_visible()

        sign_in(page, console, alice)
        who = f"system:serviceaccount:{ns}:alice"
        notice = submit(page, set_button(page, v3))
        assert f"Version {v3} requested." in notice, notice
        md = get_md(ns)
        assert md["spec"]["version"] == v3
        assert md["metadata"]["annotations"][production.CHANGE_CAUSE] == f"console: set production by {who}"
        from visionops_operator.deployments import change_author

        assert change_author(md) == (f"{CONSOLE}:{who}", f"console: set production by {who}"), \
            "the ModelDeployment's history (the operator's change_author) does not name the person"
        assert f"{CONSOLE}:{who}" in page.inner_text("#production-note")
        screenshot(page, "deploy-signed-in")
        log = console.log.read_text()
        assert f"signed in: {who}" in log and alice not in log and bob not in log, "a token in the console's log"
    v2_serving(ns)  # back, for the tests after this one
    assert v2 == get_md(ns)["spec"]["version"]
