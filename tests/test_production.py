"""visionops.production's pure parts: the patch every tool sends, the rollback target, the history as kept in
MLflow, and reading the predictor's active-model gauge."""

from __future__ import annotations

import json

import pytest

from visionops import production as p


def test_the_patch_sets_the_version_and_its_cause_or_clears_a_stale_cause():
    assert p.set_version_patch(3, "why") == {"metadata": {"annotations": {p.CHANGE_CAUSE: "why"}},
                                             "spec": {"version": "3"}}
    assert p.set_version_patch("4")["metadata"]["annotations"][p.CHANGE_CAUSE] is None
    for bad in ("0", "v3", "3a", "", "-1", "1.0"):
        with pytest.raises(p.ProductionError, match="version number"):
            p.set_version_patch(bad)


def test_rollback_goes_to_the_previous_version_or_the_last_other_one_that_served():
    assert p.rollback_target({"previousVersion": "2", "servingVersion": "3"}) == "2"
    history = [{"version": "1"}, {"version": "4", "outcome": "RolloutFailed"}, {"version": "3"}]
    assert p.rollback_target({"servingVersion": "3", "history": history}) == "1"
    with pytest.raises(p.ProductionError, match="nothing to roll back to"):
        p.rollback_target({"servingVersion": "1", "history": [{"version": "1"}]})


def test_history_tag_keeps_the_newest_entries_within_mlflows_limit():
    entries = [p.history_entry(str(i), "kubectl-patch", "2026-11-30T00:00:00Z", cause="x" * 400) for i in range(40)]
    text = p.history_tag_value(entries)
    assert len(text) <= p.TAG_VALUE_LIMIT
    kept = p.read_history_tag({p.HISTORY_TAG: text})
    assert kept[-1]["version"] == "39" and len(kept) < 40
    assert p.read_history_tag({p.HISTORY_TAG: "not json"}) == [] and p.read_history_tag({}) == []
    assert json.loads(p.history_tag_value([])) == []


def test_served_versions_reads_the_predictors_gauge():
    text = "\n".join([
        "# HELP visionops_active_model_info The model version being served (value 1)",
        'visionops_active_model_info{alias="unknown",model_name="det",run_id="r1",version="7"} 1.0',
        'visionops_active_model_info{alias="unknown",model_name="other",run_id="r2",version="2"} 1.0',
        'visionops_active_model_info{alias="unknown",model_name="det",run_id="r0",version="6"} 0.0',
    ])
    assert p.served_versions(text) == ["7", "2"]
    assert p.served_versions(text, "det") == ["7"]
