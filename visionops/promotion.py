"""The promotion gate: a pure decision on whether a candidate model may replace production.

A candidate passes when its mAP@0.50 reaches the threshold and no class evaluated by both the
candidate and the current production model loses more than N AP50 points (0-100 scale).
AP values are fractions in [0, 1], as ultralytics reports them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from visionops import config

# Drops are compared after rounding, so 0.50 -> 0.45 is exactly 5.0 points, not 5.000000000000004.
_POINTS_DECIMALS = 6


@dataclass(frozen=True)
class PromotionDecision:
    """The gate's verdict: ``promote``, a human ``reason``, and the blocking per-class drops (points)."""

    promote: bool
    reason: str
    regressions: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "reason": self.reason, "regressions": dict(self.regressions)}


def gate_defaults() -> tuple[float, float]:
    """``(map50_threshold, max_class_regression_points)`` from ``configs/model.yaml``."""
    gate = config.load("model").get("promotion", {})
    return float(gate["map50_threshold"]), float(gate["max_class_regression_points"])


def _fraction(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{what} must be in [0, 1] (a fraction, not points), got {value!r}")
    return float(value)


def _per_class(what: str, values: Mapping[str, Any]) -> dict[str, float]:
    return {str(name): _fraction(f"{what} AP50 of class {name!r}", ap) for name, ap in values.items()}


def class_regressions(
    candidate_per_class: Mapping[str, float],
    production_per_class: Mapping[str, float],
    max_points: float,
) -> dict[str, float]:
    """Classes present in both models whose AP50 dropped by more than ``max_points`` points."""
    out: dict[str, float] = {}
    for name in sorted(set(candidate_per_class) & set(production_per_class)):
        drop = round((production_per_class[name] - candidate_per_class[name]) * 100.0, _POINTS_DECIMALS)
        if drop > max_points:
            out[name] = drop
    return out


def decide(
    candidate_map50: float,
    candidate_per_class: Mapping[str, float],
    production_per_class: Mapping[str, float] | None,
    threshold: float | None = None,
    max_class_regression_points: float | None = None,
) -> PromotionDecision:
    """Decide whether the candidate may become production; ``None`` limits come from configs/model.yaml.

    ``production_per_class`` is ``None`` when there is no production model yet (nothing to regress from).
    """
    max_points = max_class_regression_points
    if threshold is None or max_points is None:
        default_threshold, default_points = gate_defaults()
        threshold = default_threshold if threshold is None else threshold
        max_points = default_points if max_points is None else max_points
    threshold = _fraction("threshold", threshold)
    if isinstance(max_points, bool) or not isinstance(max_points, int | float) or not max_points >= 0:
        raise ValueError(f"max_class_regression_points must be a number >= 0 (AP50 points), got {max_points!r}")
    max_points = float(max_points)
    map50 = _fraction("candidate map50", candidate_map50)
    candidate = _per_class("candidate", candidate_per_class)
    production = None if production_per_class is None else _per_class("production", production_per_class)

    failures: list[str] = []
    if map50 < threshold:
        failures.append(f"map50 {map50:.3f} < threshold {threshold:.3f}")
    regressions = class_regressions(candidate, production, max_points) if production is not None else {}
    failures += [
        f"class {name} AP50 dropped {drop:.1f} points (> {max_points:.1f})" for name, drop in regressions.items()
    ]
    if failures:
        return PromotionDecision(False, "; ".join(failures), regressions)

    passed = f"map50 {map50:.3f} >= threshold {threshold:.3f}"
    if production is None:
        return PromotionDecision(True, f"{passed}; no production model to compare with")
    shared = len(set(candidate) & set(production))
    return PromotionDecision(
        True, f"{passed}; no class of {shared} shared with production dropped more than {max_points:.1f} AP50 points"
    )
