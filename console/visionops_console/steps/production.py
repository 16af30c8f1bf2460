"""The Production page: what the served model finds, hour by hour, from Prometheus (``--prometheus-url``) —
detections per class, images per hour, latency (p95) and errors over a window, with the rollouts of the namespace's
ModelDeployments marked on the time axis, so that a change after a new version is visible at a glance; and the
active alerts. Without Prometheus the page says how to connect one."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from visionops_console import charts, kube
from visionops_console.core import Console
from visionops_console.kube import ClusterUnavailable, Rejection
from visionops_console.monitoring import POINTS, QUERIES, WINDOWS, PrometheusUnavailable, rate_window

PANELS = (  # (query key, title, unit, series label)
    ("detections", "Detections per hour, by class", "", "class_name"),
    ("images", "Images per hour", "", ""),
    ("latency", "Latency p95 (decode + inference)", " ms", ""),
    ("errors", "Failed requests per hour, by reason", "", "reason"),
)


def rollout_markers(deployments: list[dict[str, Any]]) -> list[tuple[float, str]]:
    """``(unix time, "v<N>")`` of every version put into production, from the ModelDeployments' history."""
    marks = []
    for md in deployments:
        for entry in (md.get("status") or {}).get("history") or []:
            when = kube.parse_time(entry.get("time"))
            if when is not None and entry.get("version"):
                marks.append((when.timestamp(), f"v{entry['version']}"))
    return sorted(marks)


def trends(console: Console, seconds: int, now: float) -> tuple[list[dict[str, Any]], str | None]:
    """Each panel's chart (queries run side by side), or why Prometheus gave none."""
    start, step = now - seconds, seconds / POINTS
    futures = {key: console.pool.submit(console.prometheus.range, query.format(rate=rate_window(step)), start, now,
                                        step) for key, query in QUERIES.items()}
    results, problem = {}, None
    for key, future in futures.items():
        try:
            results[key] = future.result()
        except PrometheusUnavailable as exc:
            results[key], problem = [], str(exc)
    return [{"key": key, "title": title, "series": results[key], "unit": unit, "by": by,
             "empty": not any(s.points for s in results[key])} for key, title, unit, by in PANELS], problem


def page_production(console: Console, request: Request) -> Response:
    window = request.query_params.get("window", "6h")
    window = window if window in WINDOWS else "6h"
    context: dict[str, Any] = {"window": window, "windows": list(WINDOWS), "panels": [], "alerts": [],
                               "problem": None, "markers_note": "", "queries": QUERIES}
    if console.prometheus.configured:
        now = time.time()
        try:
            deployments = console.cluster.list_model_deployments()
            markers = rollout_markers(deployments)
        except (ClusterUnavailable, Rejection) as exc:
            markers, context["markers_note"] = [], f"rollouts not marked: {getattr(exc, 'message', exc)}"
        panels, problem = trends(console, WINDOWS[window], now)
        clock = "%H:%M" if WINDOWS[window] <= 86400 else "%m-%d"
        for panel in panels:
            label = panel["by"]
            lines = [((s.labels.get(label) or "all") if label else panel["title"].split(",")[0], s.points)
                     for s in panel["series"]]
            panel["chart"] = charts.time_chart(lines, now - WINDOWS[window], now, markers=markers,
                                               unit=panel["unit"], clock=clock)
        try:
            context["alerts"] = console.prometheus.alerts()
        except PrometheusUnavailable as exc:
            problem = problem or str(exc)
        context.update(panels=panels, problem=problem, markers=markers)
    return console.render(request, "production.html", "production", **context)
