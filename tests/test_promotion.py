"""The promotion gate: a pure function, tested directly."""

from __future__ import annotations

import math

import pytest

from visionops import config
from visionops.promotion import PromotionDecision, class_regressions, decide, gate_defaults


def test_first_model_passes_on_threshold_alone():
    d = decide(0.412, {"casting/inclusoes": 0.5}, None, threshold=0.10, max_class_regression_points=5.0)
    assert d == PromotionDecision(True, "map50 0.412 >= threshold 0.100; no production model to compare with", {})


def test_below_threshold_is_rejected_with_both_numbers():
    d = decide(0.082, {}, None, threshold=0.10, max_class_regression_points=5.0)
    assert not d.promote
    assert d.reason == "map50 0.082 < threshold 0.100"


def test_threshold_is_inclusive():
    assert decide(0.1, {}, None, threshold=0.1, max_class_regression_points=5.0).promote


def test_class_regression_beyond_limit_blocks():
    d = decide(0.6, {"casting/inclusoes": 0.50, "screw/defect": 0.9},
               {"casting/inclusoes": 0.623, "screw/defect": 0.9}, threshold=0.1, max_class_regression_points=5.0)
    assert not d.promote
    assert d.reason == "class casting/inclusoes AP50 dropped 12.3 points (> 5.0)"
    assert d.regressions == {"casting/inclusoes": pytest.approx(12.3)}


def test_drop_exactly_at_limit_passes_despite_float_noise():
    # 0.50 - 0.45 is 0.05000000000000004 in floats: the gate must not read that as > 5.0 points
    d = decide(0.5, {"a/x": 0.45}, {"a/x": 0.50}, threshold=0.1, max_class_regression_points=5.0)
    assert d.promote, d.reason
    assert "no class of 1 shared with production dropped more than 5.0 AP50 points" in d.reason


def test_classes_present_in_only_one_model_are_ignored():
    d = decide(0.5, {"a/new": 0.0, "a/x": 0.7}, {"a/gone": 0.99, "a/x": 0.7}, threshold=0.1,
               max_class_regression_points=1.0)
    assert d.promote, d.reason


def test_improvements_never_block():
    d = decide(0.5, {"a/x": 0.9}, {"a/x": 0.1}, threshold=0.1, max_class_regression_points=0.0)
    assert d.promote and d.regressions == {}


def test_all_failures_are_reported_together_sorted_by_class():
    d = decide(0.05, {"b/y": 0.1, "a/x": 0.2}, {"b/y": 0.5, "a/x": 0.9}, threshold=0.1,
               max_class_regression_points=5.0)
    assert d.reason == ("map50 0.050 < threshold 0.100; class a/x AP50 dropped 70.0 points (> 5.0); "
                        "class b/y AP50 dropped 40.0 points (> 5.0)")
    assert list(d.regressions) == ["a/x", "b/y"]


def test_defaults_come_from_configs_model_yaml():
    gate = config.load("model")["promotion"]
    assert gate_defaults() == (gate["map50_threshold"], gate["max_class_regression_points"])
    just_below = gate["map50_threshold"] - 0.001
    assert not decide(just_below, {}, None).promote
    assert decide(gate["map50_threshold"], {}, None).promote


def test_one_default_can_be_overridden_alone():
    d = decide(0.5, {"a/x": 0.5}, {"a/x": 0.52}, max_class_regression_points=1.0)
    assert not d.promote and "dropped 2.0 points (> 1.0)" in d.reason


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"candidate_map50": 41.2}, "candidate map50 must be in [0, 1]"),
        ({"candidate_map50": math.nan}, "candidate map50 must be a finite number"),
        ({"candidate_map50": "0.4"}, "candidate map50 must be a finite number"),
        ({"threshold": 10}, "threshold must be in [0, 1]"),
        ({"max_class_regression_points": -1}, "max_class_regression_points must be a number >= 0"),
        ({"candidate_per_class": {"a/x": 55.0}}, "candidate AP50 of class 'a/x' must be in [0, 1]"),
        ({"production_per_class": {"a/x": None}}, "production AP50 of class 'a/x' must be a finite number"),
    ],
)
def test_bad_inputs_are_rejected_with_the_value(kwargs, message):
    args = {"candidate_map50": 0.5, "candidate_per_class": {}, "production_per_class": {},
            "threshold": 0.1, "max_class_regression_points": 5.0, **kwargs}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        decide(**args)


def test_class_regressions_rounds_before_comparing():
    assert class_regressions({"a": 0.45}, {"a": 0.5}, 5.0) == {}
    assert class_regressions({"a": 0.449}, {"a": 0.5}, 5.0) == {"a": pytest.approx(5.1)}


def test_decision_as_dict():
    d = PromotionDecision(False, "why", {"a/x": 7.0})
    assert d.as_dict() == {"promote": False, "reason": "why", "regressions": {"a/x": 7.0}}
