"""Compare two feature tables with Evidently's data-drift preset and summarise the verdict."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drift_job.features import FEATURES


def _to_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def skipped_reason(
    reference_count: int, current_count: int, min_reference: int, min_current: int
) -> str | None:
    """Why the check cannot run on so few images, or ``None`` when there are enough."""
    problems = []
    if reference_count < min_reference:
        problems.append(f"reference has {reference_count} images, needs at least {min_reference}")
    if current_count < min_current:
        problems.append(f"current has {current_count} images, needs at least {min_current}")
    return "; ".join(problems) or None


def run_report(reference: pd.DataFrame, current: pd.DataFrame, drift_share: float, features: Sequence[str]):
    """Run ``Report([DataDriftPreset(drift_share)], include_tests=True)`` on the feature columns only."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=list(features))
    ref = Dataset.from_pandas(reference[list(features)], data_definition=definition)
    cur = Dataset.from_pandas(current[list(features)], data_definition=definition)
    report = Report([DataDriftPreset(drift_share=drift_share)], include_tests=True)
    # Constant columns make numpy's correlation helpers warn; the drift tests are unaffected.
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return report.run(current_data=cur, reference_data=ref)


def summarise(snapshot_dict: dict[str, Any], drift_share: float) -> dict[str, Any]:
    """Turn an Evidently 0.7 snapshot ``.dict()`` into the drift result fields.

    ``DriftedColumnsCount`` gives the share of drifted columns; each ``ValueDrift`` gives a column's
    score, method and threshold, and its bound test (``FAIL``) says whether that column drifted.
    """
    failed = {
        test["metric_config"]["metric_id"]
        for test in snapshot_dict.get("tests", [])
        if str(getattr(test.get("status"), "value", test.get("status"))) == "FAIL"
    }
    share: float | None = None
    scores: dict[str, dict[str, Any]] = {}
    for metric in snapshot_dict.get("metrics", []):
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith(":DriftedColumnsCount"):
            share = _to_float(metric["value"].get("share"))
        elif kind.endswith(":ValueDrift"):
            scores[config["column"]] = {
                "score": _to_float(metric.get("value")),
                "method": config.get("method"),
                "threshold": _to_float(config.get("threshold")),
                "drifted": metric.get("id") in failed,
            }
    if share is None:
        raise RuntimeError("Evidently report has no DriftedColumnsCount metric")
    detected = share >= drift_share
    return {
        "status": "drift" if detected else "no_drift",
        "drift_detected": detected,
        "drift_share": share,
        "drifted_features": sorted(name for name, s in scores.items() if s["drifted"]),
        "feature_scores": scores,
    }


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    drift_share: float,
    min_reference: int,
    min_current: int,
    report_path: Path | None = None,
    features: Sequence[str] = FEATURES,
) -> dict[str, Any]:
    """Drift verdict of ``current`` against ``reference`` (feature tables, one row per image).

    Too few rows on either side gives ``status: "skipped"`` with a ``reason`` (Evidently is not run).
    Otherwise the HTML report is saved to ``report_path`` (when given) and the result holds
    ``status`` (``drift``/``no_drift``), ``drift_detected`` (share of drifted features >=
    ``drift_share``), ``drift_share``, ``drifted_features`` and ``feature_scores``.
    """
    if not 0 < drift_share <= 1:
        raise ValueError(f"drift_share must be in (0, 1]; got {drift_share!r}")
    counts = {"reference_count": len(reference), "current_count": len(current)}
    reason = skipped_reason(len(reference), len(current), min_reference, min_current)
    if reason:
        return {"status": "skipped", "reason": reason, "drift_detected": False, **counts}
    snapshot = run_report(reference, current, drift_share, features)
    if report_path is not None:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(report_path))
    return {**summarise(snapshot.dict(), drift_share), **counts}
