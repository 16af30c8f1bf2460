"""The Drift page: the namespace's DriftChecks (schedule, last result, the retraining it started), a check's
Evidently report, and "Check now"."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from visionops_console.core import Console
from visionops_console.security import REPORT_CSP


def page_drift(console: Console, request: Request) -> Response:
    checks, error = console.guard(lambda: console.cluster.list_drift_checks(), [])
    name = request.query_params.get("check") or (checks[0]["metadata"]["name"] if checks else "")
    selected = next((c for c in checks if c["metadata"]["name"] == name), None)
    status = (selected or {}).get("status") or {}
    has_report = bool(status.get("mlflowRunId") and status.get("reportUri"))
    return console.render(request, "drift.html", "drift", checks=checks, error=error, selected=selected,
                          has_report=has_report)


def drift_report(console: Console, request: Request) -> Response:
    """A check's Evidently HTML report from MLflow, served sandboxed: its inline scripts run, it reaches nothing."""
    name = request.path_params["name"]
    check, error = console.guard(lambda: console.cluster.get_drift_check(name))
    run_id = ((check or {}).get("status") or {}).get("mlflowRunId")
    if not run_id:
        raise HTTPException(404, error or f"DriftCheck {name} has no report yet")
    report, error = console.guard(lambda: console.mlflow.drift_report(run_id))
    if report is None:
        raise HTTPException(404, error or f"the MLflow run {run_id} of DriftCheck {name} has no HTML report")
    return FileResponse(report, media_type="text/html", headers={"Content-Security-Policy": REPORT_CSP,
                                                                 "Cache-Control": "private, max-age=60"})


async def api_check_now(console: Console, request: Request) -> Response:
    return await console.write(request, "check_now", request.path_params["name"])
