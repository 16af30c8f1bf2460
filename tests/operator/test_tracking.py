"""The operator's MLflow reads through the light REST client, against a real MLflow server."""

from __future__ import annotations

import socket
import uuid

import pytest
from mlflow.tracking import MlflowClient
from visionops_operator import tracking

from visionops.mlflow_rest import MlflowRestClient, MlflowRestError

pytestmark = pytest.mark.mlflow


def test_find_run_progress_and_result_by_the_resource_uid(mlflow_uri):
    setup = MlflowClient(tracking_uri=mlflow_uri)
    exp = setup.get_experiment_by_name("tracking-tests") or setup.get_experiment(
        setup.create_experiment("tracking-tests"))
    uid = str(uuid.uuid4())
    run_id = setup.create_run(exp.experiment_id, tags={tracking.UID_TAG: uid}).info.run_id
    setup.log_param(run_id, "epochs", 30)
    for epoch in (1, 2, 3):
        setup.log_metric(run_id, "epoch", epoch, step=epoch)
    setup.log_metric(run_id, "map50", 0.42)
    mlflow = tracking.client(mlflow_uri)
    assert tracking.find_run_id(mlflow, uid) == run_id
    assert tracking.find_run_id(mlflow, str(uuid.uuid4())) is None
    assert tracking.epoch_progress(mlflow, run_id) == (3, 30)
    assert tracking.result_from_run(mlflow, run_id) == {"run_id": run_id, "status": "RUNNING",
                                                        "metrics": {"map50": 0.42}}


def test_errors_carry_mlflow_error_codes(mlflow_uri):
    with pytest.raises(MlflowRestError) as missing:
        MlflowRestClient(mlflow_uri).get_registered_model(f"absent-{uuid.uuid4().hex[:6]}")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(MlflowRestError) as down:
        MlflowRestClient(f"http://127.0.0.1:{port}", timeout=2).get_run("x")
    assert down.value.error_code == "TEMPORARILY_UNAVAILABLE"
