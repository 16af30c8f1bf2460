"""MLflow's sign-in as the chart runs it, on a real ``mlflow server --app-name basic-auth``: the accounts set up by the
very file the MLflow image runs (visionops/mlflow_accounts.py), each component's least rights, and the
registry's steps (register, promote, read production) under the accounts that take them in the cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from visionops import mlflow_accounts, registry
from visionops.local_mlflow import start_mlflow_server
from visionops.mlflow_rest import MlflowRestClient, MlflowRestError

pytestmark = pytest.mark.mlflow

REPO = Path(__file__).resolve().parents[1]
ACCOUNTS_SCRIPT = REPO / "visionops" / "mlflow_accounts.py"
# the chart's ConfigMap (templates/mlflow/auth.yaml) with the user store under the test's folder
INI = """[mlflow]
default_permission = READ
database_uri = sqlite:///{db}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
"""
ROLES = ("operator", "jobs", "console", "predictor")


def passwords(suffix: str = "") -> dict[str, str]:
    return {role: f"{role}-password-{suffix or 'first'}-0123456789" for role in ("admin", *ROLES)}


def accounts_env(ini: Path, secret: dict[str, str]) -> dict[str, str]:
    """What the chart's ``accounts`` init container is given."""
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
           "MLFLOW_AUTH_ADMIN_PASSWORD": secret["admin"]}
    for role in ROLES:
        env[f"VISIONOPS_MLFLOW_{role.upper()}_USERNAME"] = f"visionops-{role}"
        env[f"VISIONOPS_MLFLOW_{role.upper()}_PASSWORD"] = secret[role]
    return env


def run_accounts(env: dict[str, str]) -> subprocess.CompletedProcess:
    """The file alone in a folder, as the image holds it (/opt/visionops): it needs nothing else of the project."""
    alone = Path(env["MLFLOW_AUTH_CONFIG_PATH"]).parent / "opt" / ACCOUNTS_SCRIPT.name
    alone.parent.mkdir(exist_ok=True)
    shutil.copyfile(ACCOUNTS_SCRIPT, alone)
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("VISIONOPS_MLFLOW_", "MLFLOW_AUTH_", "PYTHONPATH"))}
    return subprocess.run([sys.executable, str(alone)], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120, cwd=alone.parent)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A basic-auth MLflow whose accounts were set up the chart's way; the URI, the folder and the passwords."""
    folder = tmp_path_factory.mktemp("mlflow-auth")
    ini = folder / "basic_auth.ini"
    ini.write_text(INI.format(db=folder / "basic_auth.db"))
    secret = passwords()
    env = accounts_env(ini, secret)
    done = run_accounts(env)
    assert done.returncode == 0, done.stderr
    assert "created visionops-operator" in done.stdout and "EDIT on registered_model *" in done.stdout
    server_env = {k: env[k] for k in ("MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_ADMIN_USERNAME",
                                      "MLFLOW_AUTH_ADMIN_PASSWORD")}
    proc, uri = start_mlflow_server(folder / "server", auth_env={
        **server_env, "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-csrf-key-0123456789"})
    try:
        yield {"uri": uri, "ini": ini, "env": env, "secret": secret, "folder": folder}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def client_as(secured: dict, role: str) -> MlflowRestClient:
    """The REST client the operator and console use, signed in as a component (as the chart's env does)."""
    return MlflowRestClient(secured["uri"], environ={"MLFLOW_TRACKING_USERNAME": f"visionops-{role}",
                                                     "MLFLOW_TRACKING_PASSWORD": secured["secret"][role]})


def mlflow_client_as(secured: dict, role: str, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """MLflow's own client (the jobs, the predictor), signed in through its standard variables."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", f"visionops-{role}")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", secured["secret"][role])
    return MlflowClient(tracking_uri=secured["uri"])


def status_of(call) -> int | None:
    try:
        call()
    except MlflowRestError as exc:
        return exc.status
    return 200


def trained_run(client: MlflowClient, tmp_path: Path) -> str:
    """A finished training-like run with a model folder, logged as the training job logs it."""
    exp = client.get_experiment_by_name("auth-tests")
    exp_id = exp.experiment_id if exp else client.create_experiment("auth-tests")
    run_id = client.create_run(exp_id, tags={"visionops.io/kind": "training"}).info.run_id
    client.log_metric(run_id, "map50", 0.6, step=1)
    client.log_metric(run_id, registry.class_metric_key("scratch"), 0.6, step=1)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "best.pt").write_bytes(b"weights")
    (folder / "best.onnx").write_bytes(b"onnx")
    (folder / "class_map.json").write_text(json.dumps({"names": ["scratch"]}))
    client.log_artifacts(run_id, str(folder), "model")
    client.set_terminated(run_id, "FINISHED")
    return run_id


def test_without_credentials_mlflow_answers_401_and_health_stays_open(secured: dict) -> None:
    uri = secured["uri"]
    anonymous = requests.post(f"{uri}/api/2.0/mlflow/experiments/search", json={"max_results": 1}, timeout=10)
    assert anonymous.status_code == 401 and "Basic" in anonymous.headers.get("WWW-Authenticate", "")
    wrong = requests.post(f"{uri}/api/2.0/mlflow/experiments/search", json={"max_results": 1}, timeout=10,
                          auth=("visionops-console", "not-the-password"))
    assert wrong.status_code == 401
    assert status_of(lambda: MlflowRestClient(uri, environ={}).search_experiments()) == 401
    assert requests.get(f"{uri}/health", timeout=10).status_code == 200  # the kubelet's probes sign in to nothing


def test_each_component_may_do_its_job_and_no_more(secured: dict, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"auth-detector-{uuid.uuid4().hex[:6]}"
    jobs = mlflow_client_as(secured, "jobs", monkeypatch)
    run_id = trained_run(jobs, tmp_path)  # the training job: experiment, run, metrics, artifacts

    operator, console, predictor = (client_as(secured, r) for r in ("operator", "console", "predictor"))
    assert registry.production_version(operator, name) is None  # no model yet: MLflow says 403, we read "none"
    version = registry.register_version(operator, name, run_id)
    registry.promote(operator, name, version.version, "gate passed")
    assert registry.production_version(console, name).version == version.version
    assert registry.production_version(predictor, name).run_id == run_id

    # read-only accounts: 403 on every write to what exists
    assert status_of(lambda: console.set_registered_model_alias(name, "production", version.version)) == 403
    assert status_of(lambda: predictor.set_registered_model_alias(name, "production", version.version)) == 403
    assert status_of(lambda: console._api("DELETE", "registered-models/delete", json={"name": name})) == 403
    assert status_of(lambda: console._api("DELETE", "model-versions/delete",
                                          json={"name": name, "version": version.version})) == 403
    assert status_of(lambda: console._api("POST", "runs/log-metric", json={
        "run_id": run_id, "key": "map50", "value": 1.0, "timestamp": 0})) == 403
    # the jobs write runs, not the registry; the operator the registry, not runs
    assert status_of(lambda: client_as(secured, "jobs").set_registered_model_alias(
        name, "production", version.version)) == 403
    assert status_of(lambda: operator._api("POST", "runs/log-metric", json={
        "run_id": run_id, "key": "map50", "value": 1.0, "timestamp": 0})) == 403
    assert status_of(lambda: client_as(secured, "jobs")._api("DELETE", "model-versions/delete",
                                                             json={"name": name, "version": version.version})) == 403
    assert registry.production_version(console, name).version == version.version  # nothing moved


def test_the_secret_is_the_truth_each_start_rotates_and_refuses_a_half_set_account(secured: dict) -> None:
    again = run_accounts(secured["env"])
    assert again.returncode == 0 and "created" not in again.stdout and "new password" not in again.stdout
    rotated = passwords("second")
    done = run_accounts(accounts_env(secured["ini"], rotated))
    assert done.returncode == 0 and "new password for visionops-console" in done.stdout
    uri = secured["uri"]
    for password, expected in ((secured["secret"]["console"], 401), (rotated["console"], 200)):
        answer = requests.post(f"{uri}/api/2.0/mlflow/experiments/search", json={"max_results": 1}, timeout=10,
                               auth=("visionops-console", password))
        assert answer.status_code == expected
    for line in done.stdout.splitlines() + done.stderr.splitlines():
        assert not any(p in line for p in (*rotated.values(), *secured["secret"].values()))
    assert run_accounts(accounts_env(secured["ini"], secured["secret"])).returncode == 0  # back, for the others

    half = dict(secured["env"], VISIONOPS_MLFLOW_JOBS_PASSWORD="")
    refused = run_accounts(half)
    said = [line for line in refused.stderr.splitlines() if line.startswith("mlflow accounts:")]
    assert refused.returncode == 2 and said == [
        "mlflow accounts: the jobs account 'visionops-jobs' has no password: set VISIONOPS_MLFLOW_JOBS_PASSWORD "
        "from its Secret"]


def test_one_username_for_two_accounts_is_refused() -> None:
    env = {"VISIONOPS_MLFLOW_CONSOLE_USERNAME": "shared", "VISIONOPS_MLFLOW_CONSOLE_PASSWORD": "p" * 12,
           "VISIONOPS_MLFLOW_PREDICTOR_USERNAME": "shared", "VISIONOPS_MLFLOW_PREDICTOR_PASSWORD": "q" * 12}
    with pytest.raises(mlflow_accounts.AccountError, match="one username for two accounts: shared"):
        mlflow_accounts.wanted_accounts(env)
    assert [role for role, _, _ in mlflow_accounts.wanted_accounts(
        {"VISIONOPS_MLFLOW_JOBS_USERNAME": "j", "VISIONOPS_MLFLOW_JOBS_PASSWORD": "x" * 12})] == ["jobs"]
