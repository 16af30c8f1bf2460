"""Step 3, Training: the TrainingRuns of the namespace, the form that creates one (its defaults, ranges and help
from the CRD), and a run's live page (progress, curves, Events, the pod's log) with Stop and Promote."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from visionops import crds
from visionops.data.errors import DataError
from visionops_console import kube, tracking
from visionops_console.core import CPU_NOTE, Console, log, rejected
from visionops_console.formatting import DASH
from visionops_console.kube import ClusterUnavailable, Rejection
from visionops_console.tracking import LOSSES, SUMMARY

TERMINAL = {"Succeeded", "Failed"}
RUNS_SHOWN = 50  # the runs list shows the newest; ?all=1 shows every one

# the form's fields and where each sits in a TrainingRun's spec
FORM_FIELDS = {
    "epochs": ("hyperparameters", "epochs"), "batch": ("hyperparameters", "batch"),
    "imgsz": ("hyperparameters", "imgsz"), "lr0": ("hyperparameters", "lr0"),
    "patience": ("hyperparameters", "patience"), "gpu": ("resources", "gpu"), "cpu": ("resources", "cpu"),
    "memory": ("resources", "memory"), "mode": ("promotion", "mode"),
    "map50Threshold": ("promotion", "map50Threshold"),
    "maxClassRegressionPoints": ("promotion", "maxClassRegressionPoints"),
    "inferenceService": ("promotion", "inferenceService"), "modelName": ("model", "name"),
    "datasetPath": ("dataset", "path"),
}


# -- view models ----------------------------------------------------------------------------------------------


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


def form_fields(schema: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The training form's hints per field (default, range, description) from the apiserver's published schema,
    else from the CRD itself (:func:`visionops.crds.spec_schema`: manifests/crds, the API's source of truth)."""
    crd = crds.spec_schema("trainingruns").get("properties") or {}
    props = (schema or {}).get("properties") or {}
    out: dict[str, dict[str, Any]] = {}
    for key, (group, name) in FORM_FIELDS.items():
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


def run_rows(console: Console, request: Request) -> tuple[list[dict[str, Any]], int, str | None]:
    """The newest runs (:data:`RUNS_SHOWN`, or all with ``?all=1``), how many there are, and why none."""
    runs, error = console.guard(console.cluster.list_training_runs, [])
    shown = runs if request.query_params.get("all") == "1" else runs[:RUNS_SHOWN]
    return [run_row(r) for r in shown], len(runs), error


def live(console: Console, name: str, run: dict[str, Any]) -> dict[str, Any]:
    """What the run page shows and polls: status, progress, curves, events, the pod's log tail."""
    meta, status = run["metadata"], run.get("status") or {}
    row = run_row(run)
    run_id = status.get("mlflowRunId") or ""
    notes: list[str] = []
    series: dict[str, list] = {"loss": [], "metrics": []}
    latest: dict[str, float] = dict(status.get("metrics") or {})
    # the Kubernetes reads (pods, Events, log) run beside the MLflow reads (metric histories)
    cluster_part = console.pool.submit(_live_cluster, console, name, status, row["phase"])
    if console.mlflow.configured:
        if not run_id:
            run_id, err = console.guard(lambda: console.mlflow.find_run_for_uid(meta.get("uid", "")), "")
            if err:
                notes.append(err)
        if run_id:
            histories, err = console.guard(lambda: console.mlflow.histories(run_id, (*LOSSES, *SUMMARY)), {})
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


def _live_cluster(console: Console, name: str, status: dict[str, Any],
                  phase: str) -> tuple[list, str, str, str, str]:
    """``(events, log text, why no log, pod name, problem)`` of a TrainingRun: its pods, Events, log tail."""
    events: list[dict[str, str]] = []
    log_text, log_note, pod_name = "", "", ""
    try:
        objects = [("TrainingRun", name)]
        if status.get("jobName"):
            objects.append(("Job", status["jobName"]))
        pods = console.cluster.training_pods(name)
        objects += [("Pod", p["metadata"]["name"]) for p in pods[:3]]
        events = event_rows(console.cluster.events(objects))
        if pods:
            pod_name = pods[0]["metadata"]["name"]
            log_text, log_note = console.cluster.pod_log_tail(pods[0])
        else:
            log_note = "no pod yet" if phase not in TERMINAL else "the pod is gone (the Job was deleted)"
    except ClusterUnavailable as exc:
        return events, log_text, log_note, pod_name, str(exc)
    except Exception as exc:  # an RBAC gap for events or logs must not take the page down
        return events, log_text, log_note, pod_name, f"{type(exc).__name__}: {exc}"
    return events, log_text, log_note, pod_name, ""


# -- handlers -------------------------------------------------------------------------------------------------


def page_training(console: Console, request: Request) -> Response:
    runs, total, error = run_rows(console, request)
    schema = None
    if error is None and console.cluster.unavailable() is None:
        schema = console.cluster.training_run_schema()
    products_by_root = {}
    for root in console.volume.roots() if console.volume.configured else []:
        try:
            products_by_root[root] = console.volume.index(root).products
        except (DataError, OSError):
            products_by_root[root] = []
    return console.render(request, "training.html", "training", runs=runs, total=total, error=error,
                          form=form_fields(schema), products_by_root=products_by_root,
                          show_all=request.query_params.get("all") == "1")


def page_run(console: Console, request: Request) -> Response:
    name = request.path_params["name"]
    run, error = console.guard(lambda: console.cluster.get_training_run(name))
    if run is None:
        message = error or f"TrainingRun {name} does not exist in namespace {console.cluster.namespace}"
        return console.render(request, "error.html", "training", status_code=404 if error is None else 503,
                              title=f"TrainingRun {name}", message=message)
    return console.render(request, "run.html", "training", run=run, row=run_row(run), live=live(console, name, run),
                          spec=run.get("spec") or {})


def api_runs(console: Console, request: Request) -> Response:
    runs, total, error = run_rows(console, request)
    return JSONResponse({"ok": error is None, "runs": runs, "total": total, "message": error or ""})


async def api_create_run(console: Console, request: Request) -> Response:
    refused = await console.refuse_write(request)
    if refused is not None:
        return refused
    try:
        form = await request.json()
        if not isinstance(form, dict):
            raise ValueError
    except ValueError:
        return JSONResponse({"ok": False, "message": "send the form as a JSON object"}, status_code=400)
    body = kube.training_run_body(form, pvc=console.settings.dataset_pvc)
    try:
        created = await console.blocking(console.acting(request).create_training_run, body)
    except Rejection as exc:
        return rejected(exc)
    except ClusterUnavailable as exc:
        return JSONResponse({"ok": False, "message": f"{CPU_NOTE}: {exc}"}, status_code=503)
    name = created["metadata"]["name"]
    log.info("created TrainingRun %s/%s", console.cluster.namespace, name)
    return JSONResponse({"ok": True, "name": name, "url": f"/training/{name}",
                         "message": f"Created TrainingRun {name} in namespace {console.cluster.namespace}."},
                        status_code=201)


def api_live(console: Console, request: Request) -> Response:
    name = request.path_params["name"]
    run, error = console.guard(lambda: console.cluster.get_training_run(name))
    if run is None:
        return JSONResponse({"ok": False, "message": error or f"TrainingRun {name} does not exist (any more)"},
                            status_code=503 if error else 404)
    return JSONResponse({"ok": True, **live(console, name, run)})


async def api_stop(console: Console, request: Request) -> Response:
    try:
        what = (await request.json()).get("what", "job")
    except (ValueError, AttributeError):
        what = "job"
    if what not in ("job", "run"):
        return JSONResponse({"ok": False, "message": "what must be 'job' or 'run'"}, status_code=400)
    return await console.write(request, "stop_training", request.path_params["name"], what == "run")


async def api_promote(console: Console, request: Request) -> Response:
    return await console.write(request, "request_promotion", request.path_params["name"])
