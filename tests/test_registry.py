"""The registry library and ``visionops register`` against a real MLflow server.

Runs are made directly on the server (a ``model/`` folder with placeholder ``best.pt`` and ``best.onnx``, the
``map50`` metric and ``per_class_ap50.json``): registration and the gate read nothing else.
The real trained model goes through the same path in ``test_training_job.py``.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from visionops import registry, registry_cli
from visionops.mlflow_rest import MlflowRestClient
from visionops.registry import PROMOTION_REASON_TAG, PROMOTION_TAG, RegistryError

pytestmark = pytest.mark.mlflow


class RestClientWithSetup(MlflowRestClient):
    """The light REST client for every call the registry makes; MlflowClient only for the tests' own setup
    (create_run, log_metric...), which the REST client does not offer."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self._setup = MlflowClient(tracking_uri=uri)

    def __getattr__(self, name: str):
        return getattr(self._setup, name)


@pytest.fixture(params=["MlflowClient", "MlflowRestClient"])
def client(request: pytest.FixtureRequest, mlflow_uri: str) -> MlflowClient:
    """The registry runs with both clients: the CLI's MlflowClient and the operator's REST client."""
    return MlflowClient(tracking_uri=mlflow_uri) if request.param == "MlflowClient" else RestClientWithSetup(mlflow_uri)


@pytest.fixture
def model_name() -> str:
    return f"test-detector-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_run(client: MlflowClient, tmp_path: Path):
    """Create a FINISHED training-like run with ``map50`` and per-class AP50; return its id."""
    exp = client.get_experiment_by_name("registry-tests")
    exp_id = exp.experiment_id if exp else client.create_experiment("registry-tests")

    def make(map50: float, per_class: dict[str, float], *, model: bool = True, status: str = "FINISHED",
             tags: dict[str, str] | None = None, per_class_artifact: bool = True) -> str:
        run = client.create_run(exp_id, tags={"visionops.io/kind": "training", **(tags or {})})
        run_id = run.info.run_id
        client.log_metric(run_id, "map50", map50, step=1)
        for name, ap in per_class.items():
            client.log_metric(run_id, registry.class_metric_key(name), ap, step=1)
        if per_class_artifact:
            client.log_dict(run_id, per_class, registry.PER_CLASS_ARTIFACT)
        if model:
            folder = tmp_path / run_id / "model"
            folder.mkdir(parents=True)
            (folder / "best.pt").write_bytes(b"placeholder weights")
            (folder / "best.onnx").write_bytes(b"placeholder onnx")
            (folder / "class_map.json").write_text(json.dumps({"names": sorted(per_class)}))
            client.log_artifacts(run_id, str(folder), "model")
        client.set_terminated(run_id, status)
        return run_id

    return make


def _alias(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return client.get_model_version_by_alias(name, alias).version
    except Exception:
        return None


def test_register_is_idempotent_and_points_at_the_model_folder(client, model_name, make_run):
    run_id = make_run(0.3, {"a/x": 0.3}, tags={"visionops.io/uid": "u-1", "visionops.io/name": "tr-1"})
    first = registry.register_version(client, model_name, run_id)
    again = registry.register_version(client, model_name, run_id)
    assert first.version == again.version == "1"
    assert len(registry.versions(client, model_name)) == 1
    assert first.source == f"{client.get_run(run_id).info.artifact_uri}/model"
    assert first.run_id == run_id
    assert first.tags == {"visionops.io/uid": "u-1", "visionops.io/name": "tr-1"}
    assert _alias(client, model_name, "staging") == "1"


def test_staging_alias_follows_the_newest_version(client, model_name, make_run):
    old, new = make_run(0.3, {"a/x": 0.3}), make_run(0.4, {"a/x": 0.4})
    assert registry.register_version(client, model_name, old).version == "1"
    assert registry.register_version(client, model_name, new).version == "2"
    assert _alias(client, model_name, "staging") == "2"
    assert registry.register_version(client, model_name, old).version == "1"  # re-registering the old run
    assert _alias(client, model_name, "staging") == "2"


def test_runs_that_cannot_be_registered_are_refused(client, model_name, make_run):
    missing = r"lacks the artifacts model/best\.pt, model/best\.onnx, model/class_map\.json"
    with pytest.raises(RegistryError, match=missing):
        registry.register_version(client, model_name, make_run(0.3, {}, model=False))
    with pytest.raises(RegistryError, match="is FAILED; only FINISHED training runs"):
        registry.register_version(client, model_name, make_run(0.3, {}, status="FAILED"))
    with pytest.raises(RegistryError, match="not found on the tracking server"):
        registry.register_version(client, model_name, "0" * 32)


def test_first_version_is_promoted_when_it_passes_the_threshold(client, model_name, make_run):
    assert registry.production_metrics(client, model_name) is None
    version = registry.register_version(client, model_name, make_run(0.35, {"a/x": 0.35})).version
    decision = registry.evaluate_and_promote(client, model_name, version, threshold=0.1)
    assert decision.promote
    assert decision.reason == "map50 0.350 >= threshold 0.100; no production model to compare with"
    assert _alias(client, model_name, "production") == version
    tags = client.get_model_version(model_name, version).tags
    assert tags[PROMOTION_TAG] == "promoted" and tags[PROMOTION_REASON_TAG] == decision.reason
    current = registry.production_metrics(client, model_name)
    assert current is not None and current.map50 == 0.35 and current.per_class == {"a/x": 0.35}


def test_rejection_below_threshold_leaves_production_alone(client, model_name, make_run):
    good = registry.register_version(client, model_name, make_run(0.5, {"a/x": 0.5})).version
    registry.evaluate_and_promote(client, model_name, good, threshold=0.1)
    weak = registry.register_version(client, model_name, make_run(0.082, {"a/x": 0.5})).version
    decision = registry.evaluate_and_promote(client, model_name, weak, threshold=0.1)
    assert not decision.promote
    assert decision.reason == "map50 0.082 < threshold 0.100"
    assert _alias(client, model_name, "production") == good
    assert _alias(client, model_name, "staging") == weak
    tags = client.get_model_version(model_name, weak).tags
    assert tags[PROMOTION_TAG] == "rejected" and tags[PROMOTION_REASON_TAG] == decision.reason


def test_a_class_regression_blocks_promotion(client, model_name, make_run):
    prod = registry.register_version(
        client, model_name, make_run(0.6, {"casting/inclusoes": 0.623, "screw/defect": 0.6})).version
    registry.evaluate_and_promote(client, model_name, prod, threshold=0.1)
    # better overall, but one class lost 12.3 points; a class production never saw does not count
    cand = registry.register_version(
        client, model_name,
        make_run(0.7, {"casting/inclusoes": 0.5, "screw/defect": 0.95, "wood/pits": 0.0})).version
    decision = registry.evaluate_and_promote(client, model_name, cand, threshold=0.1, max_regression=5.0)
    assert not decision.promote
    assert decision.reason == "class casting/inclusoes AP50 dropped 12.3 points (> 5.0)"
    assert decision.regressions == {"casting/inclusoes": pytest.approx(12.3)}
    assert _alias(client, model_name, "production") == prod
    # with a looser limit the same candidate passes and becomes production
    assert registry.evaluate_and_promote(client, model_name, cand, threshold=0.1, max_regression=15.0).promote
    assert _alias(client, model_name, "production") == cand


def test_per_class_falls_back_to_metrics_without_the_json(client, make_run):
    run_id = make_run(0.4, {"casting/inclusoes": 0.25}, per_class_artifact=False)
    assert registry.run_metrics(client, run_id).per_class == {"casting/inclusoes": 0.25}


def test_the_production_version_re_evaluated_stays_production(client, model_name, make_run):
    version = registry.register_version(client, model_name, make_run(0.4, {"a/x": 0.4})).version
    registry.evaluate_and_promote(client, model_name, version, threshold=0.1)
    again = registry.evaluate_and_promote(client, model_name, version, threshold=0.9)
    assert again.promote and again.reason == f"version {version} is already production"


def test_manual_promotion_ignores_the_gate(client, model_name, make_run):
    version = registry.register_version(client, model_name, make_run(0.01, {"a/x": 0.01})).version
    registry.promote(client, model_name, version)
    assert _alias(client, model_name, "production") == version
    assert client.get_model_version(model_name, version).tags[PROMOTION_REASON_TAG] == "promoted manually"


def test_cli_auto_promotes_and_prints_the_decision(mlflow_uri, model_name, make_run, capsys):
    run_id = make_run(0.3, {"a/x": 0.3})
    capsys.readouterr()  # MLflow prints a "View run" line when a run ends
    argv = ["--run-id", run_id, "--name", model_name, "--threshold", "0.2", "--tracking-uri", mlflow_uri]
    assert registry_cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"registered {model_name} version 1 from run {run_id} (staging)",
                   "gate: PASS - map50 0.300 >= threshold 0.200; no production model to compare with",
                   "production -> version 1"]


def test_cli_manual_mode_registers_without_promoting(client, mlflow_uri, model_name, make_run, capsys):
    run_id = make_run(0.3, {"a/x": 0.3})
    capsys.readouterr()
    argv = ["--run-id", run_id, "--name", model_name, "--promote", "manual", "--tracking-uri", mlflow_uri, "--json"]
    assert registry_cli.main(argv) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["version"] == "1" and outcome["promoted"] is False and outcome["gate"]["promote"] is True
    assert _alias(client, model_name, "production") is None
    assert registry_cli.main(["--promote-version", "1", "--name", model_name, "--tracking-uri", mlflow_uri]) == 0
    assert _alias(client, model_name, "production") == "1"


def test_cli_errors_are_one_line(mlflow_uri, model_name, capsys, monkeypatch):
    argv = ["--run-id", "0" * 32, "--name", model_name, "--tracking-uri", mlflow_uri]
    assert registry_cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: run '{'0' * 32}' not found")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert registry_cli.main(["--run-id", "x"]) == 2
    assert "no MLflow tracking URI" in capsys.readouterr().err
