"""The console's web app (Starlette): six step pages and a drift page, server-rendered with Jinja2 (autoescaped),
plus the small JSON API their script polls and posts to, and the Deploy step's "Set production" / "Roll back" forms
(a plain POST, then a redirect back to the page).

Handlers are plain functions: Starlette runs them in its thread pool, so the blocking Kubernetes and MLflow
clients never stall the event loop. Each page degrades on its own: no cluster -> the cluster parts say so and
the rest is served; no MLflow -> the same.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from visionops import analysis, crds, production
from visionops.data.errors import DataError
from visionops_console import charts, kube, predict, tracking
from visionops_console.datasets import LIGHTBOX_SIDE, TILE_SIDE, DatasetIndex, DatasetVolume
from visionops_console.kube import Cluster, ClusterUnavailable, Rejection
from visionops_console.security import REPORT_CSP, SecurityMiddleware
from visionops_console.settings import ConsoleSettings
from visionops_console.tracking import LOSSES, SUMMARY, Tracking, TrackingUnavailable

HERE = Path(__file__).resolve().parent
log = logging.getLogger("visionops.console")

STEPS = (
    # (id, number, title, path, what it needs)
    ("data", "1", "Data", "/data", "dataset volume"),
    ("datacard", "2", "Data card", "/datacard", "dataset volume"),
    ("training", "3", "Training", "/training", "cluster"),
    ("evaluation", "4", "Evaluation", "/evaluation", "MLflow"),
    ("analysis", "5", "Analysis", "/analysis", "MLflow"),
    ("deploy", "6", "Deploy", "/deploy", "MLflow"),
    ("drift", "", "Drift", "/drift", "cluster"),
)
TERMINAL = {"Succeeded", "Failed"}
SAMPLE_COUNT = {"data": 12, "datacard": 9}
MAX_SAMPLES = 48
RUNS_SHOWN = 50  # the runs list shows the newest; ?all=1 shows every one
METRIC_LABELS = {"precision": "Precision", "recall": "Recall", "map50": "mAP50", "map50_95": "mAP50-95"}
CPU_NOTE = "training and rollout need a Kubernetes cluster"
DASH = "\u2013"  # what a missing value shows


# -- formatting (Jinja filters) -------------------------------------------------------------------------------


def fmt_pct(value: Any, digits: int = 1) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return DASH
    return DASH if not math.isfinite(number) else f"{number * 100:.{digits}f} %"


def fmt_num(value: Any, digits: int = 3) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return DASH
    return DASH if not math.isfinite(number) else f"{number:.{digits}f}"


def _as_datetime(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    if isinstance(value, datetime):
        return value
    return kube.parse_time(str(value))


def fmt_time(value: Any) -> str:
    when = _as_datetime(value)
    return DASH if when is None else when.strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return DASH
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def fmt_ago(value: Any, now: datetime | None = None) -> str:
    when = _as_datetime(value)
    if when is None:
        return DASH
    seconds = ((now or datetime.now(UTC)) - when).total_seconds()
    if seconds < 60:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


# -- what pages show of a TrainingRun ---------------------------------------------------------------------------


def run_row(run: dict[str, Any]) -> dict[str, Any]:
    """One TrainingRun as the runs list shows it (the columns of ``kubectl get tr``)."""
    meta, spec, status = run["metadata"], run.get("spec") or {}, run.get("status") or {}
    progress = status.get("progress") or {}
    epochs = progress.get("epochs") or (spec.get("hyperparameters") or {}).get("epochs")
    return {
        "name": meta["name"], "phase": status.get("phase") or "Pending",
        "epoch": progress.get("epoch") or 0, "epochs": epochs or 0,
        "display": progress.get("display") or (f"0/{epochs}" if epochs else DASH),
        "map50": (status.get("metrics") or {}).get("map50"),
        "version": status.get("modelVersion") or "",
        "promoted": (status.get("promotion") or {}).get("decision") or "",
        "created": meta.get("creationTimestamp"), "message": status.get("message") or "",
        "products": (spec.get("dataset") or {}).get("products") or [],
        "ready": kube.condition(run, "Ready"),
    }


def elapsed_seconds(status: dict[str, Any], now: datetime | None = None) -> float | None:
    start = kube.parse_time(status.get("startTime"))
    if start is None:
        return None
    end = kube.parse_time(status.get("completionTime") or status.get("jobCompletionTime"))
    return ((end or now or datetime.now(UTC)) - start).total_seconds()


def event_rows(events: list[dict[str, Any]]) -> list[dict[str, str]]:
    rows = []
    for e in events:
        involved = e.get("involvedObject") or {}
        rows.append({
            "time": str(e.get("lastTimestamp") or e.get("eventTime") or e["metadata"].get("creationTimestamp") or ""),
            "type": e.get("type") or "", "reason": e.get("reason") or "",
            "object": f"{involved.get('kind', '')}/{involved.get('name', '')}", "message": e.get("message") or "",
            "count": str(e.get("count") or 1),
        })
    return rows


# -- what pages show of a ModelDeployment -----------------------------------------------------------------------

PHASE_LABELS = {production.SERVING: "Serving", production.ROLLING_OUT: "Rolling out",
                production.ROLLOUT_FAILED: "Rollout failed", production.NO_MODEL: "No model"}


def deployment_row(md: dict[str, Any]) -> dict[str, Any]:
    """One ModelDeployment as the Deploy step shows it (and its script re-renders while a rollout runs): plain
    strings, the alert a person must see, what "Set production" and "Roll back" may offer."""
    meta, spec, status = md.get("metadata") or {}, md.get("spec") or {}, md.get("status") or {}
    version = str(spec.get("version") or "")
    desired, serving = str(status.get("desiredVersion") or ""), str(status.get("servingVersion") or "")
    phase, message = str(status.get("phase") or ""), str(status.get("message") or "")
    model = str((spec.get("model") or {}).get("name") or "")
    isvc = str(spec.get("inferenceService") or "")
    requested = version if version and version != desired else ""
    try:
        rollback = production.rollback_target(status)
    except production.ProductionError:
        rollback = ""
    if rollback == version:
        rollback = ""  # already what spec.version asks for
    rollout = status.get("rollout") or {}
    rollout_text = DASH
    if rollout.get("version"):
        outcome = rollout.get("outcome") or production.IN_PROGRESS
        rollout_text = f"version {rollout['version']} \u00b7 {outcome}"
        if outcome != production.IN_PROGRESS and rollout.get("seconds") is not None:
            rollout_text += f" in {fmt_num(rollout['seconds'], 1)} s"
        elif rollout.get("startTime"):
            rollout_text += f", started {fmt_ago(rollout['startTime'])}"
    alert = {"kind": "", "title": "", "text": ""}
    if requested:
        alert = {"kind": "note", "title": f"Version {requested} requested.",
                 "text": f"Waiting for the operator to move the production alias of {model or 'the model'} and to "
                         f"roll InferenceService {isvc} out to it." + (f" Now: {message}" if message else "")}
    elif phase == production.ROLLOUT_FAILED:
        alert = {"kind": "error", "title": "Rollout failed.",
                 "text": message or "the last requested version did not become ready"}
    elif phase == production.ROLLING_OUT:
        alert = {"kind": "note", "title": f"Rolling out version {rollout.get('version') or desired}.",
                 "text": message}
    elif phase == production.NO_MODEL:
        alert = {"kind": "warn", "title": "No model in production yet.", "text": message}
    elif not phase:
        alert = {"kind": "warn", "title": "No status yet.",
                 "text": "The operator has not reported on this ModelDeployment: is it running and watching "
                         f"namespace {meta.get('namespace', '')}?"}
    history = [{"time": fmt_time(h.get("time")), "version": str(h.get("version") or ""),
                "movedBy": str(h.get("movedBy") or ""), "cause": str(h.get("cause") or ""),
                "outcome": str(h.get("outcome") or "")} for h in reversed(status.get("history") or [])]
    return {
        "name": str(meta.get("name") or ""), "model": model, "inferenceService": isvc, "version": version,
        "desired": desired, "serving": serving, "previous": str(status.get("previousVersion") or ""),
        "phase": phase, "phaseLabel": PHASE_LABELS.get(phase, phase or "No status"),
        "phaseClass": "phase-" + (phase.lower() or "pending"), "message": message, "requested": requested,
        "rollbackTo": rollback, "active": bool(requested) or phase == production.ROLLING_OUT, "rollout": rollout_text,
        # the version asked for has no "Set production" (it is asked for already): its button says where it is
        "askedLabel": "Serving" if version == serving and not requested else (
            "Rolling out" if phase == production.ROLLING_OUT and not requested else "Requested"),
        "alert": alert, "history": history,
    }


def primary_deployment(rows: list[dict[str, Any]], model: str, inference_service: str) -> dict[str, Any] | None:
    """The ModelDeployment "Set production" acts on for ``model``: the one of the console's InferenceService,
    else the first that deploys ``model``."""
    mine = [r for r in rows if r["model"] == model]
    return next((r for r in mine if r["inferenceService"] == inference_service), mine[0] if mine else None)


class Notices:
    """One-time messages for the page a form POST redirects to (``?notice=<id>``: the text never travels in the
    URL). Kept in memory, a few minutes, the newest few hundred."""

    def __init__(self, limit: int = 200, seconds: float = 600.0):
        self._items: dict[str, tuple[float, str, str, str]] = {}
        self._lock = threading.Lock()
        self.limit, self.seconds = limit, seconds

    def put(self, kind: str, title: str, text: str) -> str:
        key = secrets.token_urlsafe(12)
        with self._lock:
            now = time.monotonic()
            self._items = {k: v for k, v in self._items.items() if now - v[0] < self.seconds}
            while len(self._items) >= self.limit:
                self._items.pop(next(iter(self._items)))
            self._items[key] = (now, kind, title, text)
        return key

    def pop(self, key: str) -> dict[str, str] | None:
        with self._lock:
            found = self._items.pop(key, None)
        if found is None or time.monotonic() - found[0] >= self.seconds:
            return None
        return {"kind": found[1], "title": found[2], "text": found[3]}


# -- the application ----------------------------------------------------------------------------------------------


class Console:
    """The pages and API of one console process: settings + its cluster, MLflow and dataset volume."""

    def __init__(self, settings: ConsoleSettings, cluster: Cluster | None = None, mlflow: Tracking | None = None,
                 volume: DatasetVolume | None = None):
        self.settings = settings
        self.cluster = cluster or Cluster(settings.kubeconfig, settings.namespace, settings.request_timeout)
        self.mlflow = mlflow or Tracking(settings.mlflow_uri, timeout=settings.request_timeout)
        self.volume = volume or DatasetVolume(settings.datasets or None)
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(
            enabled_extensions=("html",), default_for_string=True, default=True), trim_blocks=True,
            lstrip_blocks=True)
        self.env.filters.update(pct=fmt_pct, num=fmt_num, time=fmt_time, ago=fmt_ago, duration=fmt_duration)
        self.started = time.time()
        self.notices = Notices()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="console")

    # helpers ------------------------------------------------------------------------------------------------

    def render(self, request: Request, template: str, page: str, status_code: int = 200, **context: Any) -> Response:
        cluster_reason = self.cluster.unavailable()
        context.update(
            page=page, steps=STEPS, settings=self.settings, csrf_token=request.state.csrf_token,
            namespace=self.cluster.namespace, cluster_reason=cluster_reason,
            mlflow_reason=self.mlflow.unavailable(), read_only=self.settings.read_only,
            writes_enabled=not self.settings.read_only and cluster_reason is None,
            datasets_configured=self.volume.configured,
        )
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})

    @staticmethod
    def guard(fn: Callable[[], Any], default: Any = None) -> tuple[Any, str | None]:
        """``(fn(), None)``, or ``(default, why)`` when the cluster or MLflow is not there."""
        try:
            return fn(), None
        except (ClusterUnavailable, TrackingUnavailable) as exc:
            return default, str(exc)

    async def refuse_write(self) -> JSONResponse | None:
        """Why a write cannot be made (read-only, no cluster), or None; the cluster probe runs off the event loop
        (a hanging apiserver must not stall every other page)."""
        from starlette.concurrency import run_in_threadpool

        if self.settings.read_only:
            return JSONResponse({"ok": False, "message": "the console is read-only (--read-only / console.readOnly)"
                                 ": writes go through kubectl"}, status_code=403)
        reason = await run_in_threadpool(self.cluster.unavailable)
        if reason:
            return JSONResponse({"ok": False, "message": f"{CPU_NOTE}: {reason}"}, status_code=503)
        return None

    def inference_service(self) -> dict[str, Any] | None:
        """The InferenceService the Deploy step's "try it" asks, when the cluster answers and RBAC lets it read it
        (blocking: call it off the event loop)."""
        if self.cluster.unavailable() is not None:
            return None
        with contextlib.suppress(Rejection):  # may not read it (RBAC): no address, said by the caller
            isvc, _ = self.guard(lambda: self.cluster.get_inference_service(self.settings.inference_service))
            return isvc
        return None

    def dataset(self, request: Request) -> tuple[list[str], DatasetIndex | None, str | None]:
        """The VISION trees of the volume, the chosen one (``?ds=``, default the first) and why there is none."""
        if not self.volume.configured:
            return [], None, "no dataset volume is configured (--datasets)"
        roots = self.volume.roots()
        if not roots:
            layout = "<Product>/{train,val}/_annotations.coco.json"
            return [], None, f"no VISION tree ({layout}) under {self.volume.folder}"
        chosen = request.query_params.get("ds", roots[0])
        if chosen not in roots:
            return roots, None, f"{chosen!r} is not a VISION tree of the dataset volume"
        try:
            return roots, self.volume.index(chosen), None
        except (DataError, OSError) as exc:
            return roots, None, f"cannot read {chosen}: {exc}"

    # pages ------------------------------------------------------------------------------------------------------

    def home(self, request: Request) -> Response:
        return RedirectResponse("/data", status_code=307)

    def page_data(self, request: Request) -> Response:
        roots, index, problem = self.dataset(request)
        products = []
        if index is not None:
            by = {(s.product, s.split): s for s in index.splits}
            for product in index.products:
                train, val = by.get((product, "train")), by.get((product, "val"))
                products.append({"name": product, "train": train, "val": val,
                                 "inference": index.inference_images.get(product, 0),
                                 "errors": sum(1 for p in index.errors if p.product == product),
                                 "warnings": sum(1 for p in index.warnings if p.product == product)})
        return self.render(request, "data.html", "data", roots=roots, index=index, problem=problem,
                           products=products, sample_count=SAMPLE_COUNT["data"])

    def page_datacard(self, request: Request) -> Response:
        roots, index, problem = self.dataset(request)
        chart = None
        if index is not None and index.card:
            chart = charts.class_distribution(index.card["classes"], index.colour_hex())
        return self.render(request, "datacard.html", "datacard", roots=roots, index=index, problem=problem,
                           chart=chart, sample_count=SAMPLE_COUNT["datacard"],
                           active_class=request.query_params.get("class", ""))

    def _run_rows(self, request: Request) -> tuple[list[dict[str, Any]], int, str | None]:
        """The newest runs (:data:`RUNS_SHOWN`, or all with ``?all=1``), how many there are, and why none."""
        runs, error = self.guard(self.cluster.list_training_runs, [])
        shown = runs if request.query_params.get("all") == "1" else runs[:RUNS_SHOWN]
        return [run_row(r) for r in shown], len(runs), error

    def page_training(self, request: Request) -> Response:
        runs, total, error = self._run_rows(request)
        schema = None
        if error is None and self.cluster.unavailable() is None:
            schema = self.cluster.training_run_schema()
        products_by_root = {}
        for root in self.volume.roots() if self.volume.configured else []:
            try:
                products_by_root[root] = self.volume.index(root).products
            except (DataError, OSError):
                products_by_root[root] = []
        return self.render(request, "training.html", "training", runs=runs, total=total, error=error,
                           form=form_fields(schema), products_by_root=products_by_root,
                           show_all=request.query_params.get("all") == "1")

    def page_run(self, request: Request) -> Response:
        name = request.path_params["name"]
        run, error = self.guard(lambda: self.cluster.get_training_run(name))
        if run is None:
            message = error or f"TrainingRun {name} does not exist in namespace {self.cluster.namespace}"
            return self.render(request, "error.html", "training", status_code=404 if error is None else 503,
                               title=f"TrainingRun {name}", message=message)
        live = self.live(name, run)
        return self.render(request, "run.html", "training", run=run, row=run_row(run), live=live,
                           spec=run.get("spec") or {})

    def page_evaluation(self, request: Request) -> Response:
        runs, error = self.guard(lambda: self.mlflow.training_runs(), [])
        selected = self._selected_run(request, runs)
        context: dict[str, Any] = {"runs": runs, "error": error, "run": selected}
        if selected is not None:
            histories, herr = self.guard(lambda: self.mlflow.histories(selected.run_id, (*LOSSES, *SUMMARY)), {})
            plots = tracking.order_plots(self.mlflow.list_artifacts(selected.run_id, tracking.PLOTS_DIR))
            main = [p for p in plots if p in tracking.PLOT_ORDER]
            context.update(
                series={"loss": tracking.history_series(histories, LOSSES),
                        "metrics": tracking.history_series(histories, SUMMARY)},
                plots=main, more_plots=[p for p in plots if p not in main], error=error or herr,
            )
        finished = [r for r in runs if r.status == "FINISHED" and "map50" in r.metrics]
        best = max(finished, key=lambda r: r.metrics["map50"], default=None)
        return self.render(request, "evaluation.html", "evaluation", compare=finished[:12],
                           best=best.run_id if best else "", labels=METRIC_LABELS, **context)

    def page_analysis(self, request: Request) -> Response:
        runs, error = self.guard(lambda: self.mlflow.training_runs(), [])
        selected = self._selected_run(request, runs)
        context: dict[str, Any] = {"runs": runs, "error": error, "run": selected, "rows": [], "hardest": [],
                                   "report": None, "chart": None}
        if selected is not None:
            report = self.mlflow.analysis_report(selected)
            per_class = {r["class"]: r["ap50"] for r in (report or {}).get("per_class", [])} or \
                self.mlflow.per_class_ap50(selected)
            rows = analysis.class_rows(per_class)
            hardest = []
            for item in ((report or {}).get("analysis") or {}).get("hardest") or []:
                classes = self.volume.find_image_classes(str(item.get("image", ""))) if self.volume.configured else None
                product = str(item.get("image", "")).split("_", 1)[0].lower()
                hardest.append({**item, "classes": classes, "product": product})
            context.update(rows=rows, bands=analysis.band_counts(rows), report=report, hardest=hardest,
                           chart=charts.ap50_bands(rows) if rows else None,
                           totals=(report or {}).get("analysis") or {})
        return self.render(request, "analysis.html", "analysis", band_colours=analysis.BAND_COLOURS, **context)

    def page_deploy(self, request: Request) -> Response:
        models, error = self.guard(lambda: self.mlflow.registered_models(), [])
        model = request.query_params.get("model") or (
            self.settings.model_name if self.settings.model_name in models or not models else models[0])
        (versions, aliases), verr = self.guard(lambda: self.mlflow.model_versions(model), ([], {}))
        isvc, cerr = None, self.cluster.unavailable()
        if cerr is None:
            try:
                isvc, cerr = self.guard(lambda: self.cluster.get_inference_service(self.settings.inference_service))
            except Rejection as exc:
                cerr = exc.message
        deployments, deployments_error = self.deployments()
        primary = primary_deployment(deployments, model, self.settings.inference_service)
        return self.render(request, "deploy.html", "deploy", models=models, model=model, versions=versions,
                           aliases=aliases, error=error or verr, isvc=isvc, isvc_error=cerr,
                           isvc_ready=kube.condition(isvc, "Ready") if isvc else {},
                           served=kube.served_version(isvc), predictor_url=self.predictor_url(isvc),
                           labels=METRIC_LABELS, max_upload=predict.human_size(self.settings.max_upload_bytes),
                           deployments=deployments, deployments_error=deployments_error, primary=primary,
                           notice=self.notices.pop(request.query_params.get("notice", "")))

    def deployments(self) -> tuple[list[dict[str, Any]], str | None]:
        """The namespace's ModelDeployments as :func:`deployment_row` shows them, or why there are none to show."""
        reason = self.cluster.unavailable()
        if reason:
            return [], reason
        try:
            return [deployment_row(md) for md in self.cluster.list_model_deployments()], None
        except (ClusterUnavailable, Rejection) as exc:
            return [], exc.message if isinstance(exc, Rejection) else str(exc)

    def page_drift(self, request: Request) -> Response:
        checks, error = self.guard(lambda: self.cluster.list_drift_checks(), [])
        name = request.query_params.get("check") or (checks[0]["metadata"]["name"] if checks else "")
        selected = next((c for c in checks if c["metadata"]["name"] == name), None)
        has_report = False
        if selected is not None and (selected.get("status") or {}).get("mlflowRunId"):
            has_report = bool((selected.get("status") or {}).get("reportUri"))
        return self.render(request, "drift.html", "drift", checks=checks, error=error, selected=selected,
                           has_report=has_report)

    def _selected_run(self, request: Request, runs: list[tracking.RunSummary]) -> tracking.RunSummary | None:
        wanted = request.query_params.get("run")
        if wanted:
            found = next((r for r in runs if r.run_id == wanted), None)
            return found or self.guard(lambda: self.mlflow.run(wanted))[0]
        return next((r for r in runs if r.status == "FINISHED"), runs[0] if runs else None)

    def predictor_url(self, isvc: dict[str, Any] | None) -> str:
        if self.settings.predictor_url:
            return self.settings.predictor_url
        status = (isvc or {}).get("status") or {}
        return ((status.get("address") or {}).get("url")) or status.get("url") or ""

    # live data of a TrainingRun ---------------------------------------------------------------------------------

    def live(self, name: str, run: dict[str, Any]) -> dict[str, Any]:
        """What the run page shows and polls: status, progress, curves, events, the pod's log tail."""
        meta, status = run["metadata"], run.get("status") or {}
        row = run_row(run)
        run_id = status.get("mlflowRunId") or ""
        notes: list[str] = []
        series: dict[str, list] = {"loss": [], "metrics": []}
        latest: dict[str, float] = dict(status.get("metrics") or {})
        # the Kubernetes reads (pods, Events, log) run beside the MLflow reads (metric histories)
        cluster_part = self._pool.submit(self._live_cluster, name, status, row["phase"])
        if self.mlflow.configured:
            if not run_id:
                run_id, err = self.guard(lambda: self.mlflow.find_run_for_uid(meta.get("uid", "")), "")
                if err:
                    notes.append(err)
            if run_id:
                histories, err = self.guard(lambda: self.mlflow.histories(run_id, (*LOSSES, *SUMMARY)), {})
                if err:
                    notes.append(err)
                series = {"loss": tracking.history_series(histories, LOSSES),
                          "metrics": tracking.history_series(histories, SUMMARY)}
                if row["phase"] not in TERMINAL or not latest:
                    latest.update({k: v[-1][1] for k, v in histories.items() if v and k in SUMMARY})
                logged = max((v[-1][0] for v in histories.values() if v), default=0)
                if logged > row["epoch"] and (not row["epochs"] or logged <= row["epochs"]):
                    row["epoch"] = logged  # MLflow is ahead of the operator's periodic progress read
                    row["display"] = f"{logged}/{row['epochs']}" if row["epochs"] else str(logged)
        events, log_text, log_note, pod_name, note = cluster_part.result()
        if note:
            notes.append(note)
        return {
            "name": name, "phase": row["phase"], "epoch": row["epoch"], "epochs": row["epochs"],
            "display": row["display"], "startTime": status.get("startTime") or "",
            "endTime": status.get("completionTime") or status.get("jobCompletionTime") or "",
            "elapsed": elapsed_seconds(status), "terminal": row["phase"] in TERMINAL,
            "tiles": {k: latest.get(k) for k in SUMMARY}, "series": series, "events": events,
            "log": log_text[-20000:], "logNote": log_note, "pod": pod_name, "runId": run_id,
            "version": status.get("modelVersion") or "", "message": status.get("message") or "",
            "promotion": status.get("promotion") or {},
            "conditions": [{k: c.get(k, "") for k in ("type", "status", "reason", "message")}
                           for c in status.get("conditions") or []],
            "notes": notes,
        }

    def _live_cluster(self, name: str, status: dict[str, Any], phase: str) -> tuple[list, str, str, str, str]:
        """``(events, log text, why no log, pod name, problem)`` of a TrainingRun: its pods, Events, log tail."""
        events: list[dict[str, str]] = []
        log_text, log_note, pod_name = "", "", ""
        try:
            objects = [("TrainingRun", name)]
            if status.get("jobName"):
                objects.append(("Job", status["jobName"]))
            pods = self.cluster.training_pods(name)
            objects += [("Pod", p["metadata"]["name"]) for p in pods[:3]]
            events = event_rows(self.cluster.events(objects))
            if pods:
                pod_name = pods[0]["metadata"]["name"]
                log_text, log_note = self.cluster.pod_log_tail(pods[0])
            else:
                log_note = "no pod yet" if phase not in TERMINAL else "the pod is gone (the Job was deleted)"
        except ClusterUnavailable as exc:
            return events, log_text, log_note, pod_name, str(exc)
        except Exception as exc:  # an RBAC gap for events or logs must not take the page down
            return events, log_text, log_note, pod_name, f"{type(exc).__name__}: {exc}"
        return events, log_text, log_note, pod_name, ""

    # API ------------------------------------------------------------------------------------------------------

    def api_samples(self, request: Request) -> Response:
        _, index, problem = self.dataset(request)
        if index is None:
            return JSONResponse({"ok": False, "message": problem}, status_code=404)
        split = request.query_params.get("split", "val")
        if split not in ("train", "val"):
            return JSONResponse({"ok": False, "message": f"unknown split {split!r}"}, status_code=400)
        wanted = request.query_params.get("class", "")
        classes = [wanted] if wanted else []
        if wanted and wanted not in index.class_names:
            return JSONResponse({"ok": False, "message": f"unknown class {wanted!r}"}, status_code=400)
        try:
            count = max(1, min(MAX_SAMPLES, int(request.query_params.get("n", "12"))))
            seed = int(request.query_params.get("seed") or random.randrange(1 << 30))
        except ValueError:
            return JSONResponse({"ok": False, "message": "n and seed must be integers"}, status_code=400)
        chosen = self.volume.samples(index, split, classes, count, seed)
        candidates = sum(1 for s in index.split_images(split)
                         if not classes or {index.class_names[b.class_id] for b in s.labeled.boxes} & set(classes))
        ds = index.path
        from urllib.parse import urlencode

        items = [{
            "key": s.key, "caption": f"{s.product} · {s.file_name}",
            "classes": sorted({index.class_names[b.class_id] for b in s.labeled.boxes}),
            "boxes": len(s.labeled.boxes),
            "tile": "/img/sample?" + urlencode({"ds": ds, "key": s.key, "size": "tile"}),
            "full": "/img/sample?" + urlencode({"ds": ds, "key": s.key, "size": "full"}),
        } for s in chosen]
        return JSONResponse({"ok": True, "items": items, "seed": seed, "split": split, "class": wanted,
                             "candidates": candidates, "colours": index.colour_hex()})

    def img_sample(self, request: Request) -> Response:
        _, index, problem = self.dataset(request)
        key = request.query_params.get("key", "")
        if index is None or key not in index.samples:
            raise HTTPException(404, problem or "no such sample")
        side = LIGHTBOX_SIDE if request.query_params.get("size") == "full" else TILE_SIDE
        data = self.volume.render(index, key, side)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})

    def api_runs(self, request: Request) -> Response:
        runs, total, error = self._run_rows(request)
        return JSONResponse({"ok": error is None, "runs": runs, "total": total, "message": error or ""})

    async def api_create_run(self, request: Request) -> Response:
        refused = await self.refuse_write()
        if refused is not None:
            return refused
        try:
            form = await request.json()
            if not isinstance(form, dict):
                raise ValueError
        except ValueError:
            return JSONResponse({"ok": False, "message": "send the form as a JSON object"}, status_code=400)
        body = kube.training_run_body(form, pvc=self.settings.dataset_pvc)
        from starlette.concurrency import run_in_threadpool

        try:
            created = await run_in_threadpool(self.cluster.create_training_run, body)
        except Rejection as exc:
            return JSONResponse({"ok": False, **exc.as_dict()}, status_code=exc.status if exc.status >= 400 else 422)
        except ClusterUnavailable as exc:
            return JSONResponse({"ok": False, "message": f"{CPU_NOTE}: {exc}"}, status_code=503)
        name = created["metadata"]["name"]
        log.info("created TrainingRun %s/%s", self.cluster.namespace, name)
        return JSONResponse({"ok": True, "name": name, "url": f"/training/{name}",
                             "message": f"Created TrainingRun {name} in namespace {self.cluster.namespace}."},
                            status_code=201)

    def api_live(self, request: Request) -> Response:
        name = request.path_params["name"]
        run, error = self.guard(lambda: self.cluster.get_training_run(name))
        if run is None:
            return JSONResponse({"ok": False, "message": error or f"TrainingRun {name} does not exist (any more)"},
                                status_code=503 if error else 404)
        return JSONResponse({"ok": True, **self.live(name, run)})

    async def api_stop(self, request: Request) -> Response:
        refused = await self.refuse_write()
        if refused is not None:
            return refused
        try:
            what = (await request.json()).get("what", "job")
        except (ValueError, AttributeError):
            what = "job"
        if what not in ("job", "run"):
            return JSONResponse({"ok": False, "message": "what must be 'job' or 'run'"}, status_code=400)
        return await self._write(self.cluster.stop_training, request.path_params["name"], what == "run")

    async def api_promote(self, request: Request) -> Response:
        refused = await self.refuse_write()
        if refused is not None:
            return refused
        return await self._write(self.cluster.request_promotion, request.path_params["name"])

    async def api_check_now(self, request: Request) -> Response:
        refused = await self.refuse_write()
        if refused is not None:
            return refused
        return await self._write(self.cluster.check_now, request.path_params["name"])

    async def _write(self, fn: Callable[..., str], *args: Any) -> Response:
        from starlette.concurrency import run_in_threadpool

        try:
            message = await run_in_threadpool(fn, *args)
        except Rejection as exc:
            return JSONResponse({"ok": False, **exc.as_dict()}, status_code=exc.status if exc.status >= 400 else 422)
        except ClusterUnavailable as exc:
            return JSONResponse({"ok": False, "message": f"{CPU_NOTE}: {exc}"}, status_code=503)
        log.info("%s", message)
        return JSONResponse({"ok": True, "message": message})

    def api_deployments(self, request: Request) -> Response:
        """What the Deploy step's script polls while a rollout runs."""
        rows, error = self.deployments()
        primary = primary_deployment(rows, request.query_params.get("model") or self.settings.model_name,
                                     self.settings.inference_service)
        return JSONResponse({"ok": error is None, "deployments": rows, "primary": primary["name"] if primary else "",
                             "message": error or ""})

    async def form_production(self, request: Request) -> Response:
        """The Deploy step's "Set production" and "Roll back" forms: one patch of the ModelDeployment's spec.version,
        then back to the Deploy page (303), which says what was done or, when nothing was, why."""
        from starlette.concurrency import run_in_threadpool

        try:
            form = await request.form(max_files=0, max_fields=8)
        except Exception as exc:
            return JSONResponse({"ok": False, "message": f"not a form: {exc}"}, status_code=400)
        field = {k: str(form.get(k) or "").strip() for k in ("deployment", "action", "version", "model")}
        refused = "Production was not changed."
        if self.settings.read_only:
            outcome = ("error", refused, "The console is read-only (--read-only / console.readOnly): set production "
                                         "with `visionops deploy set` or kubectl.")
        elif reason := await run_in_threadpool(self.cluster.unavailable):
            outcome = ("error", refused, f"Setting production needs a Kubernetes cluster: {reason}.")
        else:
            try:
                message = await run_in_threadpool(self.cluster.set_production, field["deployment"],
                                                  field["action"], field["version"], field["model"])
                log.info("%s", message)
                title, _, detail = message.partition(": ")  # "Version N requested: what changed, what follows"
                outcome = ("good", title + ".", detail)
            except Rejection as exc:
                outcome = ("error", refused, exc.message)
            except ClusterUnavailable as exc:
                outcome = ("error", refused, f"Setting production needs a Kubernetes cluster: {exc}.")
        query = {"model": field["model"]} if field["model"] else {}
        query["notice"] = self.notices.put(*outcome)
        return RedirectResponse("/deploy?" + urlencode(query), status_code=303)

    async def api_predict(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        limit = self.settings.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is None:
            return JSONResponse({"ok": False, "message": "the upload has no Content-Length"}, status_code=411)
        if int(declared or 0) > limit + 64 * 1024:
            return JSONResponse({"ok": False, "message": f"the upload is {predict.human_size(int(declared))}, more "
                                 f"than the {predict.human_size(limit)} the console accepts: send a smaller image"},
                                status_code=413)
        try:
            form = await request.form(max_files=1, max_fields=4)
        except Exception as exc:
            return JSONResponse({"ok": False, "message": f"the upload is not a form with one image: {exc}"},
                                status_code=400)
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            return JSONResponse({"ok": False, "message": "choose an image file first"}, status_code=400)
        data = await upload.read(limit + 1)
        await form.close()
        try:
            image = predict.check_upload(data, upload.filename or "", limit, self.settings.max_upload_pixels)
        except predict.UploadError as exc:
            return JSONResponse({"ok": False, "message": str(exc)}, status_code=exc.status)
        isvc = None if self.settings.predictor_url else await run_in_threadpool(self.inference_service)
        url = self.predictor_url(isvc)
        if not url:
            return JSONResponse({"ok": False, "message": "no predictor to ask: the InferenceService has no address "
                                 "yet and no --predictor-url is set"}, status_code=503)
        model = request.query_params.get("model") or self.settings.model_name
        try:
            result = await run_in_threadpool(predict.predict, url, model, image, self.settings.request_timeout * 3)
        except predict.PredictorError as exc:
            return JSONResponse({"ok": False, "message": str(exc)}, status_code=exc.status)
        return JSONResponse({"ok": True, "width": image.width, "height": image.height, **result})

    def mlflow_artifact(self, request: Request) -> Response:
        run_id, path = request.path_params["run_id"], request.path_params["path"]
        suffix = Path(path).suffix.lower()
        if path.split("/", 1)[0] not in tracking.SERVED_DIRS or suffix not in tracking.IMAGE_TYPES:
            raise HTTPException(404, "not an artifact the console serves")
        local, _ = self.guard(lambda: self.mlflow.artifact_file(run_id, path))
        if local is None:
            raise HTTPException(404, f"run {run_id} has no artifact {path}")
        return FileResponse(local, media_type=tracking.IMAGE_TYPES[suffix],
                            headers={"Cache-Control": "private, max-age=3600"})

    def drift_report(self, request: Request) -> Response:
        name = request.path_params["name"]
        check, error = self.guard(lambda: self.cluster.get_drift_check(name))
        run_id = ((check or {}).get("status") or {}).get("mlflowRunId")
        if not run_id:
            raise HTTPException(404, error or f"DriftCheck {name} has no report yet")
        report, error = self.guard(lambda: self.mlflow.drift_report(run_id))
        if report is None:
            raise HTTPException(404, error or f"the MLflow run {run_id} of DriftCheck {name} has no HTML report")
        return FileResponse(report, media_type="text/html", headers={"Content-Security-Policy": REPORT_CSP,
                                                                     "Cache-Control": "private, max-age=60"})

    def healthz(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    def favicon(self, request: Request) -> Response:
        return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")

    async def not_found(self, request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith(("/api/", "/img/", "/mlflow/", "/static/")) or "/report" in request.url.path:
            return JSONResponse({"ok": False, "message": exc.detail}, status_code=exc.status_code)
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(self.render, request, "error.html", "", exc.status_code,
                                       title=f"{exc.status_code}", message=exc.detail)


def form_fields(schema: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The training form's hints per field (default, range, description) from the apiserver's published schema,
    else from the CRD itself (:func:`visionops.crds.spec_schema`: manifests/crds, the API's source of truth)."""
    crd = crds.spec_schema("trainingruns").get("properties") or {}
    props = (schema or {}).get("properties") or {}
    where = {
        "epochs": ("hyperparameters", "epochs"), "batch": ("hyperparameters", "batch"),
        "imgsz": ("hyperparameters", "imgsz"), "lr0": ("hyperparameters", "lr0"),
        "patience": ("hyperparameters", "patience"), "gpu": ("resources", "gpu"), "cpu": ("resources", "cpu"),
        "memory": ("resources", "memory"), "mode": ("promotion", "mode"),
        "map50Threshold": ("promotion", "map50Threshold"),
        "maxClassRegressionPoints": ("promotion", "maxClassRegressionPoints"),
        "inferenceService": ("promotion", "inferenceService"), "modelName": ("model", "name"),
        "datasetPath": ("dataset", "path"),
    }
    out: dict[str, dict[str, Any]] = {}
    for key, (group, name) in where.items():
        hint: dict[str, Any] = {}
        for source in (crd, props):  # the live schema wins
            node = ((source.get(group) or {}).get("properties") or {}).get(name) or {}
            hint |= {attr: node[attr] for attr in ("default", "minimum", "maximum", "multipleOf", "enum",
                                                   "description") if attr in node}
        if "minimum" in hint and "maximum" in hint:
            hint["range"] = f"{hint['minimum']:g}{DASH}{hint['maximum']:g}"
            if hint.get("multipleOf"):
                hint["range"] += f", step {hint['multipleOf']:g}"
        out[key] = hint
    out["schema_live"] = {"value": bool(props)}
    return out


def create_app(settings: ConsoleSettings, cluster: Cluster | None = None, mlflow: Tracking | None = None,
               volume: DatasetVolume | None = None) -> Starlette:
    """The ASGI app of one console (what ``visionops console`` serves with uvicorn)."""
    console = Console(settings, cluster, mlflow, volume)
    routes = [
        Route("/", console.home),
        Route("/data", console.page_data),
        Route("/datacard", console.page_datacard),
        Route("/training", console.page_training),
        Route("/training/{name}", console.page_run),
        Route("/evaluation", console.page_evaluation),
        Route("/analysis", console.page_analysis),
        Route("/deploy", console.page_deploy),
        Route("/drift", console.page_drift),
        Route("/drift/{name}/report", console.drift_report),
        Route("/img/sample", console.img_sample),
        Route("/mlflow/{run_id}/artifact/{path:path}", console.mlflow_artifact),
        Route("/api/samples", console.api_samples),
        Route("/api/trainingruns", console.api_runs, methods=["GET"]),
        Route("/api/trainingruns", console.api_create_run, methods=["POST"]),
        Route("/api/trainingruns/{name}/live", console.api_live),
        Route("/api/trainingruns/{name}/stop", console.api_stop, methods=["POST"]),
        Route("/api/trainingruns/{name}/promote", console.api_promote, methods=["POST"]),
        Route("/api/driftchecks/{name}/check", console.api_check_now, methods=["POST"]),
        Route("/api/modeldeployments", console.api_deployments, methods=["GET"]),
        Route("/deploy/production", console.form_production, methods=["POST"]),
        Route("/api/predict", console.api_predict, methods=["POST"]),
        Route("/healthz", console.healthz),
        Route("/favicon.ico", console.favicon),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        console.mlflow.close()
        console._pool.shutdown(wait=False, cancel_futures=True)

    app = Starlette(routes=routes, middleware=[Middleware(SecurityMiddleware, allowed_hosts=settings.allowed_hosts)],
                    exception_handlers={HTTPException: console.not_found}, lifespan=lifespan,
                    max_body_size=settings.max_upload_bytes + 1024 * 1024)
    app.state.console = console
    return app
