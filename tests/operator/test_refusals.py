"""Kubernetes errors named by their cause (issue 23): a refusal that stays fails the run with the API server's words,
one a retry may heal is retried as Kubernetes' (never reported as an MLflow failure). No cluster: the API server's
answers are ApiExceptions built from the Status bodies it sends."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from functools import partial

import pytest
from kubernetes.client.rest import ApiException
from visionops_operator import conditions as c
from visionops_operator import decisions as d
from visionops_operator import deployments, kube, training
from visionops_operator.settings import OperatorSettings

FORBIDDEN = ('modeldeployments.visionops.io "visionops-predictor" is forbidden: User '
             '"system:serviceaccount:ml:visionops-operator" cannot patch resource "modeldeployments" in API group '
             '"visionops.io" in the namespace "ml"')


def api_error(status: int, reason: str, message: str) -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.body = json.dumps({"kind": "Status", "status": "Failure", "message": message, "code": status}).encode()
    return error


@pytest.mark.parametrize(("status", "reason", "transient"), [
    (403, "Forbidden", False), (422, "Unprocessable Entity", False), (404, "Not Found", False),
    (409, "Conflict", True), (429, "Too Many Requests", True), (500, "Internal Server Error", True),
    (503, "Service Unavailable", True), (0, "", True),
])
def test_refusal_tells_what_a_retry_may_heal(status, reason, transient):
    healable, line = kube.refusal(api_error(status, reason, "said"))
    assert healable is transient and line.endswith(": said") and line.startswith(str(status))


def test_refusal_quotes_the_status_message_in_one_bounded_line():
    _, line = kube.refusal(api_error(403, "Forbidden", FORBIDDEN + "\n  and more " + "x" * 500))
    assert line.startswith("403 Forbidden: modeldeployments.visionops.io") and "cannot patch" in line
    assert "\n" not in line and len(line) < 400


RUN = {"metadata": {"namespace": "ml", "name": "tr", "uid": "u1"},
       "spec": {"model": {"name": "m"}, "promotion": {"inferenceService": "visionops-predictor"}}}
CURRENT = {"phase": c.REGISTERING, "mlflowRunId": "r1", "modelVersion": "3"}


@pytest.fixture
def promotion_patch_fails(monkeypatch):
    """The promotion reaches the ModelDeployment patch, which the API server answers with ``error``."""
    def arrange(error: ApiException) -> None:
        def refuse(*_args, **_kwargs):
            raise error
        monkeypatch.setattr(kube, "read_inference_service", lambda namespace, name: {"metadata": {"name": name}})
        monkeypatch.setattr(deployments, "deployment_for", lambda namespace, isvc, model: isvc)
        monkeypatch.setattr(kube, "patch_custom", refuse)
    return arrange


def act():
    settings = OperatorSettings(mlflow_uri="http://mlflow.invalid")  # never called: the patch comes first
    return training.act(d.PROMOTE_MANUALLY, RUN, CURRENT, settings, logging.getLogger("test"))


def test_a_403_on_the_modeldeployment_fails_the_run_as_a_kubernetes_refusal(promotion_patch_fails):
    promotion_patch_fails(api_error(403, "Forbidden", FORBIDDEN))
    decision = act()
    st = d.Status(dict(CURRENT), datetime.now(UTC), generation=1)
    decision(st)
    assert isinstance(decision, partial) and decision.func is d.training_failed
    assert st.view["phase"] == c.FAILED
    ready = c.find(st.view["conditions"], c.READY)
    assert ready["reason"] == c.KUBERNETES_REFUSED and "MLflow" not in st.view["message"]
    assert st.view["message"] == f"{d.PROMOTE_MANUALLY}: the Kubernetes API refused: 403 Forbidden: {FORBIDDEN}"


def test_a_503_on_the_modeldeployment_is_retried_as_kubernetes_not_mlflow(promotion_patch_fails):
    promotion_patch_fails(api_error(503, "Service Unavailable", "etcdserver: leader changed"))
    with pytest.raises(training.RetryLater) as raised:
        act()
    assert raised.value.reason == c.KUBERNETES_UNAVAILABLE
    assert "Kubernetes API call failed (503 Service Unavailable: etcdserver: leader changed)" in str(raised.value)
    assert "MLflow" not in str(raised.value)
