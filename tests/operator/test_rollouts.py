"""The ModelDeployment state machine as pure functions (no cluster): which side of production moved, when a
rollout is served, waiting or failed, and what the status says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from visionops_operator import rollouts as r
from visionops_operator.decisions import Status

URI = "models:/m/2"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def pod(name: str, uri: str = URI, ready: bool = True, terminating: bool = False, problem: str = "") -> r.PredictorPod:
    return r.PredictorPod(name=name, uri=uri, ready=ready, terminating=terminating, ip="10.0.0.1", problem=problem)


def test_a_change_of_spec_version_wins_over_the_alias_then_the_alias_then_nothing():
    assert r.choose_target("3", "4", "2") == r.Target("3", r.SPEC)
    assert r.choose_target("2", "4", "2") == r.Target("4", r.ALIAS)
    assert r.choose_target("2", None, "2") == r.Target("2", r.STEADY)  # MLflow down: keep what was agreed
    assert r.choose_target("", "", "") == r.Target("", r.NONE)
    assert r.choose_target("", "1", "") == r.Target("1", r.ALIAS)


def test_served_needs_the_service_ready_a_confirming_pod_and_no_old_ready_pod():
    new, old = pod("new"), pod("old", uri="models:/m/1")
    args = dict(uri=URI, version="2", elapsed=5, timeout=60)
    assert r.observe_rollout(isvc_is_ready=True, pods=[new], reported={"new": ["2"]}, **args).state == r.SERVED
    assert r.observe_rollout(isvc_is_ready=True, pods=[new, old], reported={"new": ["2"]}, **args).state == r.WAITING
    assert r.observe_rollout(isvc_is_ready=False, pods=[new], reported={"new": ["2"]}, **args).state == r.WAITING
    said_other = r.observe_rollout(isvc_is_ready=True, pods=[new], reported={"new": ["1"]}, **args)
    assert said_other.state == r.WAITING and "serves 1" in said_other.message
    gone = pod("old", uri="models:/m/1", terminating=True)
    assert r.observe_rollout(isvc_is_ready=True, pods=[new, gone], reported={"new": ["2"]}, **args).state == r.SERVED


def test_past_the_timeout_it_failed_with_the_predictors_own_words():
    crashing = pod("new", ready=False, problem="CrashLoopBackOff; last exit 1: visionops serve: cannot load the model")
    seen = r.observe_rollout(URI, "2", True, [crashing], {"new": ""}, elapsed=61, timeout=60)
    assert seen.state == r.FAILED and "did not become ready within 60 s" in seen.message
    assert "cannot load the model" in seen.message
    waiting = pod("new", ready=False)
    said = r.observe_rollout(URI, "2", True, [waiting], {"new": "predictor not ready: no model to serve yet"},
                             elapsed=61, timeout=60)
    assert "no model to serve yet" in said.message
    assert "no predictor pod" in r.observe_rollout(URI, "2", True, [], {}, elapsed=61, timeout=60).message


def test_predictor_pod_reads_env_readiness_and_the_last_termination_line():
    last = {"terminated": {"exitCode": 1, "message": "Traceback...\nvisionops serve: bad"}}
    view = r.predictor_pod({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "kserve-container", "env": [{"name": "VISIONOPS_MODEL_URI", "value": URI}],
                                 "ports": [{"containerPort": 8080}]}]},
        "status": {"podIP": "10.1.2.3", "conditions": [{"type": "Ready", "status": "False"}],
                   "containerStatuses": [{"name": "kserve-container",
                                          "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                          "lastState": last}]}})
    assert view.uri == URI and not view.ready and view.ip == "10.1.2.3" and view.port == 8080
    assert view.problem == "CrashLoopBackOff; last exit 1: visionops serve: bad"
    tail = "INFO starting\nvisionops serve: cannot load the model from models:/m/3: Exception from src:\n" \
           "Model can't be parsed\n"
    assert r.last_words(tail) == "visionops serve: cannot load the model from models:/m/3: Exception from src: " \
                                 "Model can't be parsed"
    assert r.last_words("just one line\n") == "just one line" and r.last_words("") == ""


def test_status_through_a_rollout_that_serves_then_one_that_fails_and_goes_back():
    st = Status({"servingVersion": "1", "desiredVersion": "1", "phase": "Serving"}, NOW, generation=3)
    r.production_changed(st, "2", {"version": "2", "movedBy": "kubectl-patch", "time": "t"})
    r.rollout_started(st, "2", URI)
    assert st.get("phase") == "RollingOut" and st.condition_of("Ready")["status"] == "Unknown"
    later = Status(st.view, NOW + timedelta(seconds=12))
    r.rollout_served(later, "2", "pod p serves version 2")
    assert later.get("phase") == "Serving" and later.get("previousVersion") == "1"
    assert later.get("rollout")["seconds"] == 12.0 and later.get("history")[-1]["outcome"] == "Served"
    assert [e.reason for e in st.events + later.events] == ["RollingOut", "Serving"]

    failing = Status(later.view, NOW + timedelta(seconds=20))
    r.production_changed(failing, "3", {"version": "3", "movedBy": "visionops-cli", "time": "t"})
    r.rollout_started(failing, "3", "models:/m/3")
    end = Status(failing.view, NOW + timedelta(seconds=120))
    r.rollout_failed(end, "3", "version 3 did not become ready within 90 s: boom", back_to="2", back_uri=URI)
    assert end.get("phase") == "RolloutFailed" and end.get("desiredVersion") == "2" and end.get("modelUri") == URI
    assert "went back to version 2" in end.get("message") and end.condition_of("Ready")["reason"] == "RolloutFailed"
    assert [(h["version"], h["movedBy"], h.get("outcome")) for h in end.get("history")][-2:] == [
        ("3", "visionops-cli", "RolloutFailed"), ("2", "rollout-failed", None)]
    back = Status(end.view, NOW + timedelta(seconds=125))
    r.rollout_served(back, "2", "pod p serves version 2")  # back on 2: the failure stays visible
    assert back.get("phase") == "RolloutFailed" and not back.events
