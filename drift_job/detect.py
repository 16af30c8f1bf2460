"""Compare two feature tables with Evidently and summarise the verdict, per group of features.

Features come in groups: ``image`` (the four pixel statistics, always), and with a model
``predictions`` (its confidence, detection count and class mix) and ``embedding`` (its backbone
embedding). Each column group gets Evidently's data-drift preset (one test per column: K-S, chi-square,
..., as Evidently picks them); each embedding is one multivariate test, Evidently's embedding drift with
the distance method: the euclidean distance between the mean embeddings of reference and current,
drifted when it exceeds the 95th percentile of that distance between bootstrap samples of the reference
alone. A group's share is the share of its features that drifted; the check finds drift when any
group's share reaches ``drift_share``, and reports the largest share as ``drift_share``. With the image
group alone this is the share of drifted image statistics, as before.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drift_job.features import FEATURES
from visionops.contract import DriftStatus

IMAGE_GROUP = "image"
PREDICTIONS_GROUP = "predictions"
EMBEDDING_GROUP = "embedding"
EMBEDDING_METHOD_NAME = "distance (euclidean, mean embeddings, bootstrap 95%)"


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


def embedding_method() -> Any:
    """Evidently's embedding drift method used for every embedding (see the module docstring)."""
    from evidently.metrics.embeddings import DistanceDriftMethod

    return DistanceDriftMethod(dist="euclidean", bootstrap=True, quantile_probability=0.95)


def _embedding_frame(name: str, vectors: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(np.asarray(vectors, dtype=np.float64),
                        columns=[f"{name}_{i:03d}" for i in range(np.shape(vectors)[1])])


def embedding_verdicts(embeddings: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[float, bool]]:
    """``(score, drifted)`` per embedding, from the same Evidently method the report runs."""
    verdicts: dict[str, tuple[float, bool]] = {}
    for name, (ref, cur) in embeddings.items():
        score, drifted, _ = embedding_method()(_embedding_frame(name, cur), _embedding_frame(name, ref))
        verdicts[name] = (float(score), bool(drifted))
    return verdicts


def run_report(reference: pd.DataFrame, current: pd.DataFrame, drift_share: float,
               groups: Mapping[str, Sequence[str]],
               embeddings: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> Any:
    """One Evidently report: ``DataDriftPreset`` per column group (tests included) and ``EmbeddingsDrift``
    per embedding (``(reference, current)`` arrays, row for row with the tables)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift
    from evidently.presets import DataDriftPreset

    columns = [column for group in groups.values() for column in group]
    categorical = [c for c in columns if not pd.api.types.is_numeric_dtype(reference[c])]
    ref, cur = reference[columns].reset_index(drop=True), current[columns].reset_index(drop=True)
    metrics: list[Any] = [DataDriftPreset(columns=list(group), drift_share=drift_share) for group in groups.values()]
    embedding_columns: dict[str, list[str]] = {}
    for name, (ref_vectors, cur_vectors) in (embeddings or {}).items():
        ref_emb, cur_emb = _embedding_frame(name, ref_vectors), _embedding_frame(name, cur_vectors)
        ref, cur = pd.concat([ref, ref_emb], axis=1), pd.concat([cur, cur_emb], axis=1)
        embedding_columns[name] = list(ref_emb.columns)
        metrics.append(EmbeddingsDrift(embeddings_name=name, drift_method=embedding_method()))
    definition = DataDefinition(numerical_columns=[c for c in columns if c not in categorical],
                                categorical_columns=categorical or None, embeddings=embedding_columns or None)
    report = Report(metrics, include_tests=True)
    # Constant columns make numpy's correlation helpers warn; the drift tests are unaffected.
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return report.run(current_data=Dataset.from_pandas(cur, data_definition=definition),
                          reference_data=Dataset.from_pandas(ref, data_definition=definition))


def summarise(snapshot_dict: dict[str, Any], drift_share: float, groups: Mapping[str, Sequence[str]] | None = None,
              embeddings: Mapping[str, tuple[float, bool]] | None = None) -> dict[str, Any]:
    """Turn an Evidently 0.7 snapshot ``.dict()`` into the drift result fields.

    Each ``ValueDrift`` gives a column's score, method and threshold, and its bound test (``FAIL``)
    says whether that column drifted; ``embeddings`` holds each embedding's ``(score, drifted)``
    (:func:`embedding_verdicts`). ``groups`` defaults to the image statistics alone.
    """
    groups = dict(groups or {IMAGE_GROUP: FEATURES})
    failed = {
        test["metric_config"]["metric_id"]
        for test in snapshot_dict.get("tests", [])
        if str(getattr(test.get("status"), "value", test.get("status"))) == "FAIL"
    }
    member = {column: group for group, columns in groups.items() for column in columns}
    scores: dict[str, dict[str, Any]] = {}
    for metric in snapshot_dict.get("metrics", []):
        config = metric.get("config", {})
        if str(config.get("type", "")).endswith(":ValueDrift") and config.get("column") in member:
            scores[config["column"]] = {
                "score": _to_float(metric.get("value")),
                "method": config.get("method"),
                "threshold": _to_float(config.get("threshold")),
                "drifted": metric.get("id") in failed,
                "group": member[config["column"]],
            }
    missing = sorted(set(member) - set(scores))
    if missing:
        raise RuntimeError(f"Evidently report has no ValueDrift result for {', '.join(missing)}")
    for name, (score, drifted) in (embeddings or {}).items():
        scores[name] = {"score": _to_float(score), "method": EMBEDDING_METHOD_NAME, "threshold": None,
                        "drifted": drifted, "group": EMBEDDING_GROUP}
        groups.setdefault(EMBEDDING_GROUP, ())
        groups[EMBEDDING_GROUP] = (*groups[EMBEDDING_GROUP], name)
    shares = {group: sum(scores[f]["drifted"] for f in features) / len(features)
              for group, features in groups.items() if features}
    share = max(shares.values())
    detected = share >= drift_share
    return {
        "status": DriftStatus.DRIFT if detected else DriftStatus.NO_DRIFT,
        "drift_detected": detected,
        "drift_share": share,
        "group_shares": shares,
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
    groups: Mapping[str, Sequence[str]] | None = None,
    embeddings: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Drift verdict of ``current`` against ``reference`` (feature tables, one row per image).

    ``groups`` maps a group name to its columns (default: ``image`` -> :data:`FEATURES`); ``embeddings``
    maps an embedding name to its ``(reference, current)`` arrays, one row per table row. Too few rows
    on either side gives ``status: "skipped"`` with a ``reason`` (Evidently is not run). Otherwise the
    HTML report is saved to ``report_path`` (when given) and the result holds ``status``
    (``drift``/``no_drift``), ``drift_detected``, ``drift_share`` (the largest group share),
    ``group_shares``, ``drifted_features`` and ``feature_scores`` (score, method, threshold, drifted, group).
    """
    if not 0 < drift_share <= 1:
        raise ValueError(f"drift_share must be in (0, 1]; got {drift_share!r}")
    counts = {"reference_count": len(reference), "current_count": len(current)}
    reason = skipped_reason(len(reference), len(current), min_reference, min_current)
    if reason:
        return {"status": DriftStatus.SKIPPED, "reason": reason, "drift_detected": False, **counts}
    groups = dict(groups or {IMAGE_GROUP: FEATURES})
    snapshot = run_report(reference, current, drift_share, groups, embeddings)
    if report_path is not None:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(report_path))
    verdicts = embedding_verdicts(embeddings or {})
    return {**summarise(snapshot.dict(), drift_share, groups, verdicts), **counts}
