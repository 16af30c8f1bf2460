"""Step 6, Deploy: the registered models and their versions, the ModelDeployments (what serves, what rolls out,
the history), "Set production" and "Roll back", and trying the served model with an image."""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from visionops import production
from visionops_console import kube, predict
from visionops_console.core import Console, log
from visionops_console.formatting import DASH, fmt_ago, fmt_num, fmt_time
from visionops_console.kube import ClusterUnavailable, Rejection
from visionops_console.steps.evaluation import METRIC_LABELS

PHASE_LABELS = {production.SERVING: "Serving", production.ROLLING_OUT: "Rolling out",
                production.ROLLOUT_FAILED: "Rollout failed", production.NO_MODEL: "No model"}
NOT_CHANGED = "Production was not changed."


# -- view models ----------------------------------------------------------------------------------------------


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
        "alert": deployment_alert(meta, phase, message, requested, model, isvc, rollout.get("version") or desired),
        "history": history,
    }


def deployment_alert(meta: dict[str, Any], phase: str, message: str, requested: str, model: str, isvc: str,
                     rolling: str) -> dict[str, str]:
    """What a person must see about a ModelDeployment first (``kind`` empty: nothing)."""
    if requested:
        return {"kind": "note", "title": f"Version {requested} requested.",
                "text": f"Waiting for the operator to move the production alias of {model or 'the model'} and to "
                        f"roll InferenceService {isvc} out to it." + (f" Now: {message}" if message else "")}
    if phase == production.ROLLOUT_FAILED:
        return {"kind": "error", "title": "Rollout failed.",
                "text": message or "the last requested version did not become ready"}
    if phase == production.ROLLING_OUT:
        return {"kind": "note", "title": f"Rolling out version {rolling}.", "text": message}
    if phase == production.NO_MODEL:
        return {"kind": "warn", "title": "No model in production yet.", "text": message}
    if not phase:
        return {"kind": "warn", "title": "No status yet.",
                "text": "The operator has not reported on this ModelDeployment: is it running and watching "
                        f"namespace {meta.get('namespace', '')}?"}
    return {"kind": "", "title": "", "text": ""}


def primary_deployment(rows: list[dict[str, Any]], model: str, inference_service: str) -> dict[str, Any] | None:
    """The ModelDeployment "Set production" acts on for ``model``: the one of the console's InferenceService,
    else the first that deploys ``model``."""
    mine = [r for r in rows if r["model"] == model]
    return next((r for r in mine if r["inferenceService"] == inference_service), mine[0] if mine else None)


def deployments(console: Console) -> tuple[list[dict[str, Any]], str | None]:
    """The namespace's ModelDeployments as :func:`deployment_row` shows them, or why there are none to show."""
    reason = console.cluster.unavailable()
    if reason:
        return [], reason
    try:
        return [deployment_row(md) for md in console.cluster.list_model_deployments()], None
    except (ClusterUnavailable, Rejection) as exc:
        return [], exc.message if isinstance(exc, Rejection) else str(exc)


def inference_service(console: Console) -> dict[str, Any] | None:
    """The InferenceService the "try it" asks, when the cluster answers and RBAC lets the console read it."""
    if console.cluster.unavailable() is not None:
        return None
    with contextlib.suppress(Rejection):  # may not read it (RBAC): no address, said by the caller
        isvc, _ = console.guard(lambda: console.cluster.get_inference_service(console.settings.inference_service))
        return isvc
    return None


def predictor_url(console: Console, isvc: dict[str, Any] | None) -> str:
    """Where to send an image: ``--predictor-url``, else the InferenceService's address."""
    if console.settings.predictor_url:
        return console.settings.predictor_url
    status = (isvc or {}).get("status") or {}
    return ((status.get("address") or {}).get("url")) or status.get("url") or ""


# -- handlers -------------------------------------------------------------------------------------------------


def page_deploy(console: Console, request: Request) -> Response:
    models, error = console.guard(lambda: console.mlflow.registered_models(), [])
    model = request.query_params.get("model") or (
        console.settings.model_name if console.settings.model_name in models or not models else models[0])
    (versions, aliases), verr = console.guard(lambda: console.mlflow.model_versions(model), ([], {}))
    isvc, cerr = None, console.cluster.unavailable()
    if cerr is None:
        try:
            isvc, cerr = console.guard(
                lambda: console.cluster.get_inference_service(console.settings.inference_service))
        except Rejection as exc:
            cerr = exc.message
    rows, rows_error = deployments(console)
    primary = primary_deployment(rows, model, console.settings.inference_service)
    return console.render(request, "deploy.html", "deploy", models=models, model=model, versions=versions,
                          aliases=aliases, error=error or verr, isvc=isvc, isvc_error=cerr,
                          isvc_ready=kube.condition(isvc, "Ready") if isvc else {},
                          served=kube.served_version(isvc), predictor_url=predictor_url(console, isvc),
                          labels=METRIC_LABELS, max_upload=predict.human_size(console.settings.max_upload_bytes),
                          deployments=rows, deployments_error=rows_error, primary=primary,
                          notice=console.notices.pop(request.query_params.get("notice", "")))


def api_deployments(console: Console, request: Request) -> Response:
    """What the Deploy step's script polls while a rollout runs."""
    rows, error = deployments(console)
    primary = primary_deployment(rows, request.query_params.get("model") or console.settings.model_name,
                                 console.settings.inference_service)
    return JSONResponse({"ok": error is None, "deployments": rows, "primary": primary["name"] if primary else "",
                         "message": error or ""})


async def form_production(console: Console, request: Request) -> Response:
    """The "Set production" and "Roll back" forms: one patch of the ModelDeployment's spec.version, then back to
    the Deploy page (303), which says what was done or, when nothing was, why."""
    try:
        form = await request.form(max_files=0, max_fields=8)
    except Exception as exc:
        return JSONResponse({"ok": False, "message": f"not a form: {exc}"}, status_code=400)
    field = {k: str(form.get(k) or "").strip() for k in ("deployment", "action", "version", "model")}
    if console.settings.read_only:
        outcome = ("error", NOT_CHANGED, "The console is read-only (--read-only / console.readOnly): set production "
                                         "with `visionops deploy set` or kubectl.")
    elif not console.may_write(request):
        outcome = ("error", NOT_CHANGED, "Sign in with your Kubernetes token to set production: the change is made "
                                         "as you, and your RBAC decides.")
    elif reason := await console.blocking(console.cluster.unavailable):
        outcome = ("error", NOT_CHANGED, f"Setting production needs a Kubernetes cluster: {reason}.")
    else:
        try:
            message = await console.blocking(console.acting(request).set_production, field["deployment"],
                                             field["action"], field["version"], field["model"])
            log.info("%s", message)
            title, _, detail = message.partition(": ")  # "Version N requested: what changed, what follows"
            outcome = ("good", title + ".", detail)
        except Rejection as exc:
            outcome = ("error", NOT_CHANGED, exc.message)
        except ClusterUnavailable as exc:
            outcome = ("error", NOT_CHANGED, f"Setting production needs a Kubernetes cluster: {exc}.")
    query = {"model": field["model"]} if field["model"] else {}
    query["notice"] = console.notices.put(*outcome)
    return RedirectResponse("/deploy?" + urlencode(query), status_code=303)


async def api_predict(console: Console, request: Request) -> Response:
    """One uploaded image, checked (size, pixels, type), sent to the predictor; its boxes back."""
    limit = console.settings.max_upload_bytes
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
        image = predict.check_upload(data, upload.filename or "", limit, console.settings.max_upload_pixels)
    except predict.UploadError as exc:
        return JSONResponse({"ok": False, "message": str(exc)}, status_code=exc.status)
    isvc = None if console.settings.predictor_url else await console.blocking(inference_service, console)
    url = predictor_url(console, isvc)
    if not url:
        return JSONResponse({"ok": False, "message": "no predictor to ask: the InferenceService has no address "
                             "yet and no --predictor-url is set"}, status_code=503)
    model = request.query_params.get("model") or console.settings.model_name
    try:
        result = await console.blocking(predict.predict, url, model, image, console.settings.request_timeout * 3)
    except predict.PredictorError as exc:
        return JSONResponse({"ok": False, "message": str(exc)}, status_code=exc.status)
    return JSONResponse({"ok": True, "width": image.width, "height": image.height, **result})
