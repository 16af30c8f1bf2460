"""The operator's state machines (visionops_operator.decisions), with the clock as an argument: no cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from visionops_operator import conditions as c
from visionops_operator import decisions as d
from visionops_operator.jobs import ACTIVE, FAILED, SUCCEEDED, JobOutcome

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
RESULT = {"run_id": "r1", "metrics": {"map50": 0.5, "map50_95": 0.3, "precision": 0.6, "recall": 0.4},
          "per_class_ap50": {"scratch": 0.5}, "epochs_completed": 3}


def cond(st: d.Status, type_: str) -> tuple[str, str]:
    found = c.find(st.view.get("conditions"), type_)
    return found.get("status"), found.get("reason")


def step(status: dict, now: datetime = T0) -> d.Status:
    return d.Status(status, now, generation=1)


def created() -> dict:
    st = step({})
    d.training_job_created(st, "tr-train", created=True)
    return st.view


def test_a_created_run_is_pending_and_not_ready():
    st = step({})
    d.training_job_created(st, "tr-train", created=True)
    assert st.changes["phase"] == c.PENDING and st.changes["startTime"] == "2026-01-01T12:00:00Z"
    assert cond(st, c.READY) == ("Unknown", c.JOB_CREATED)
    assert [e.reason for e in st.events] == [c.JOB_CREATED]
    again = step(st.view)  # a restarted operator finds the Job: nothing changes, no Event
    d.training_job_created(again, "tr-train", created=False)
    assert not again.changes and not again.events


def test_running_is_recorded_once_without_an_event():
    st = step(created())
    d.training_job_observed(st, JobOutcome(ACTIVE, running=True), None, "")
    assert st.changes["phase"] == c.RUNNING and cond(st, c.TRAINED) == ("Unknown", c.TRAINING)
    assert not st.events
    again = step(st.view)
    d.training_job_observed(again, JobOutcome(ACTIVE, running=True), None, "")
    assert not again.changes


def test_a_failed_job_ends_the_run_ready_false_and_failed_true():
    st = step(created(), T0 + timedelta(minutes=5))
    d.training_job_observed(st, JobOutcome(FAILED, "BackoffLimitExceeded"), None, "dataset /data/x not found")
    assert st.view["phase"] == c.FAILED and st.view["message"] == "dataset /data/x not found"
    assert cond(st, c.READY) == ("False", c.JOB_FAILED)
    assert cond(st, c.FAILED) == ("True", c.JOB_FAILED)
    assert cond(st, c.TRAINED) == ("False", c.JOB_FAILED)
    assert st.view["completionTime"] == st.view["jobCompletionTime"] == "2026-01-01T12:05:00Z"
    assert [(e.reason, e.warning) for e in st.events] == [(c.JOB_FAILED, True)]
    later = step(st.view)  # a late event of the same Job changes nothing
    d.training_job_observed(later, JobOutcome(FAILED), None, "other")
    assert not later.changes


def test_a_succeeded_job_records_its_result_and_goes_on_registering():
    st = step(created())
    d.training_job_observed(st, JobOutcome(SUCCEEDED), RESULT, "")
    assert st.view["phase"] == c.REGISTERING and st.view["mlflowRunId"] == "r1"
    assert st.view["progress"] == {"epoch": 3, "epochs": 3, "display": "3/3"}
    assert cond(st, c.TRAINED) == ("True", c.TRAINING_SUCCEEDED)
    assert cond(st, c.READY) == ("Unknown", c.REGISTERING_VERSION)
    assert d.next_training_step(st.view, {"promotion": {"mode": "auto"}}, {}) == d.REGISTER


def test_without_a_result_the_run_is_looked_up_in_mlflow():
    st = step(created())
    d.training_job_observed(st, JobOutcome(SUCCEEDED), None, "")
    assert d.next_training_step(st.view, {}, {}) == d.FIND_RESULT
    d.training_failed(st, c.RESULT_MISSING, "no run")
    assert d.next_training_step(st.view, {}, {}) is None
    assert cond(st, c.FAILED) == ("True", c.RESULT_MISSING)


def test_a_deleted_job_fails_a_training_run_but_not_a_finished_one():
    st = step(created())
    d.training_job_gone(st)
    assert cond(st, c.READY) == ("False", c.JOB_DELETED)
    done = step({"jobName": "j", "phase": c.SUCCEEDED})
    d.training_job_gone(done)
    assert not done.changes


def registered(mode: str = "auto") -> tuple[dict, dict]:
    st = step(created())
    d.training_job_observed(st, JobOutcome(SUCCEEDED), RESULT, "")
    d.training_registered(st, "m", "3")
    return st.view, {"promotion": {"mode": mode}}


@pytest.mark.parametrize(("decision", "reason", "ready"), [
    ("Promoted", c.ROLLED_OUT, "True"), ("Promoted", c.GATE_PASSED, "True"),
    ("Rejected", c.GATE_REJECTED, "True"), ("Pending", c.AWAITING_MANUAL, "True"),
])
def test_every_promotion_decision_makes_the_run_ready(decision, reason, ready):
    view, _ = registered()
    st = step(view, T0 + timedelta(minutes=9))
    d.training_promotion(st, decision, "why", reason, "message")
    assert st.view["phase"] == c.SUCCEEDED and st.view["completionTime"] == "2026-01-01T12:09:00Z"
    assert cond(st, c.READY) == (ready, reason) and cond(st, c.SUCCEEDED) == ("True", reason)
    assert cond(st, c.PROMOTED) == ("True" if decision == "Promoted" else "False", reason)
    assert [e.reason for e in st.events] == [reason]


def test_manual_mode_waits_for_the_annotation_then_promotes():
    view, spec = registered("manual")
    assert d.next_training_step(view, spec, {}) == d.AWAIT_MANUAL
    assert d.next_training_step(view, spec, {d.ANNOTATION_PROMOTE: "true"}) == d.PROMOTE_MANUALLY
    st = step(view)
    d.training_promotion(st, "Pending", "annotate", c.AWAITING_MANUAL, "annotate")
    ready_since = c.find(st.view["conditions"], c.READY)["lastTransitionTime"]
    assert d.next_training_step(st.view, spec, {}) is None
    assert d.next_training_step(st.view, spec, {d.ANNOTATION_PROMOTE: "true"}) == d.PROMOTE_MANUALLY
    later = step(st.view, T0 + timedelta(hours=1))
    d.training_promotion(later, "Promoted", "promoted manually", c.ROLLED_OUT, "rolled out")
    assert cond(later, c.READY) == ("True", c.ROLLED_OUT)
    assert c.find(later.view["conditions"], c.READY)["lastTransitionTime"] == ready_since
    assert d.next_training_step(later.view, spec, {d.ANNOTATION_PROMOTE: "true"}) is None


def test_mlflow_trouble_is_said_while_registering_and_nothing_is_lost():
    view, spec = registered()
    st = step(view)
    d.training_mlflow_unavailable(st, "gate: MLflow call failed")
    assert cond(st, c.READY) == ("Unknown", c.MLFLOW_UNAVAILABLE)
    assert st.view["modelVersion"] == "3" and d.next_training_step(st.view, spec, {}) == d.GATE


def test_progress_is_written_only_while_running_and_only_when_it_changed():
    st = step(created())
    d.training_job_observed(st, JobOutcome(ACTIVE, running=True), None, "")
    running = step(st.view)
    d.training_progress(running, "r1", 2, 10)
    assert running.changes == {"mlflowRunId": "r1", "progress": {"epoch": 2, "epochs": 10, "display": "2/10"}}
    same = step(running.view)
    d.training_progress(same, "r1", 2, 10)
    assert not same.changes and not same.events
    done = step({"phase": c.REGISTERING})
    d.training_progress(done, "r1", 3, 10)
    assert not done.changes


# ---------------------------------------------------------------- DriftCheck

DRIFT = {"status": "drift", "drift_detected": True, "drift_share": 0.75, "drifted_features": ["brightness_mean"],
         "report_uri": "mlflow-artifacts:/r.html", "run_id": "d1"}


def test_a_check_runs_then_has_a_result_and_is_ready():
    st = step({})
    d.check_job_created(st, "dc-check-g1", created=True, recorded=False)
    assert st.view["phase"] == c.RUNNING and cond(st, c.READY) == ("Unknown", c.CHECK_RUNNING)
    done = step(st.view)
    assert d.check_job_finished(done, "dc-check-g1", 1, JobOutcome(SUCCEEDED), DRIFT, "", scheduled=False)
    assert done.view["phase"] == c.COMPLETED and done.view["result"] == "drift"
    assert cond(done, c.READY) == ("True", c.DRIFT) and cond(done, c.DRIFT_DETECTED) == ("True", c.DRIFT)
    assert [e.reason for e in done.events] == [c.DRIFT]
    again = step(done.view)  # the same Job seen again (restart, late event): recorded once
    assert not d.check_job_finished(again, "dc-check-g1", 1, JobOutcome(SUCCEEDED), DRIFT, "", scheduled=False)
    assert not again.changes


def test_a_failed_check_is_ready_false_and_a_later_scheduled_one_recovers():
    st = step({})
    d.check_job_finished(st, "j1", 1, JobOutcome(FAILED), None, "container OOMKilled", scheduled=True)
    assert st.view["phase"] == c.FAILED and cond(st, c.READY) == ("False", c.CHECK_FAILED)
    nxt = step(st.view)
    d.check_job_active(nxt, "j2")
    assert nxt.changes == {"phase": c.RUNNING}
    d.check_job_finished(nxt, "j2", 1, JobOutcome(SUCCEEDED), {"status": "no_drift", "drift_share": 0.1}, "", True)
    assert nxt.view["phase"] == c.SCHEDULED and cond(nxt, c.READY) == ("True", c.NO_DRIFT)
    assert [h["jobName"] for h in nxt.view["history"]] == ["j1", "j2"]


def test_a_skipped_check_is_ready_with_its_reason():
    st = step({})
    d.check_job_finished(st, "j", 1, JobOutcome(SUCCEEDED), {"status": "skipped", "reason": "3 < 20 images"}, "",
                         scheduled=False)
    assert st.view["result"] == "skipped" and cond(st, c.READY) == ("True", c.CHECK_SKIPPED)
    assert st.view["message"] == "3 < 20 images"


def test_history_is_bounded():
    st = step({})
    for i in range(d.HISTORY_LIMIT + 3):
        d.check_job_finished(st, f"j{i}", 1, JobOutcome(SUCCEEDED), {"status": "no_drift"}, "", scheduled=True)
    assert len(st.view["history"]) == d.HISTORY_LIMIT and st.view["history"][-1]["jobName"] == "j12"


@pytest.mark.parametrize(("on_drift", "last", "active", "allowed"), [
    ({"retrain": False}, None, [], False),
    ({"retrain": True, "cooldownSeconds": 0}, None, ["tr-1"], False),
    ({"retrain": True, "cooldownSeconds": 3600}, "2026-01-01T11:30:00Z", [], False),
    ({"retrain": True, "cooldownSeconds": 3600}, "2026-01-01T10:59:59Z", [], True),
    ({"retrain": True, "cooldownSeconds": 0}, "2026-01-01T12:00:00Z", [], True),
])
def test_retraining_is_gated_by_running_runs_and_the_cooldown(on_drift, last, active, allowed):
    assert d.retraining_allowed(on_drift, last, active, T0)[0] is allowed


def test_retraining_points_the_status_and_the_history_entry_at_the_run():
    st = step({})
    d.check_job_finished(st, "j1", 1, JobOutcome(SUCCEEDED), DRIFT, "", scheduled=False)
    d.retraining_started(st, "j1", "dc-retrain-abc", created=True)
    assert st.view["triggeredTrainingRun"] == "dc-retrain-abc" and st.view["lastRetrainTime"] == "2026-01-01T12:00:00Z"
    assert st.view["history"][-1]["triggeredTrainingRun"] == "dc-retrain-abc"
    assert [e.reason for e in st.events] == [c.DRIFT, c.RETRAINING_STARTED]


def test_a_resumed_training_says_from_which_epoch():
    st = step({"phase": c.REGISTERING})
    d.training_result(st, {**RESULT, "resumed_from_epoch": 27, "serving": {
        "precision": "int8", "reason": "INT8 is not lower", "fp32_score": 0.8, "int8_score": 0.81, "max_drop": 0.02}})
    assert st.view["resumedFromEpoch"] == 27
    assert st.view["serving"] == {"precision": "int8", "reason": "INT8 is not lower", "fp32MAP50": 0.8,
                                  "int8MAP50": 0.81}
    assert [e.reason for e in st.events] == [c.TRAINING_RESUMED, c.TRAINING_SUCCEEDED]
    assert "after epoch 27" in st.events[0].message


def test_an_uninterrupted_training_has_no_resume_in_status():
    st = step({"phase": c.REGISTERING})
    d.training_result(st, RESULT)
    assert "resumedFromEpoch" not in st.view and "serving" not in st.view
    assert [e.reason for e in st.events] == [c.TRAINING_SUCCEEDED]
