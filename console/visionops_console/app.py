"""The console's web app (Starlette): six step pages and a drift page, server-rendered with Jinja2 (autoescaped),
plus the small JSON API their script polls and posts to, and the Deploy step's "Set production" / "Roll back" forms
(a plain POST, then a redirect back to the page).

The route table below is the index: each route names the step module (:mod:`visionops_console.steps`) whose
handler serves it; :mod:`visionops_console.core` holds what they share.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from functools import partial

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from visionops_console import account
from visionops_console.core import HERE, Console
from visionops_console.datasets import DatasetVolume
from visionops_console.kube import Cluster
from visionops_console.security import SecurityMiddleware
from visionops_console.settings import ConsoleSettings
from visionops_console.steps import analysis, data, deploy, drift, evaluation, production, training
from visionops_console.tracking import Tracking


def home(console: Console, request: Request) -> Response:
    return RedirectResponse("/data", status_code=307)


def healthz(console: Console, request: Request) -> Response:
    return JSONResponse({"ok": True})


def favicon(console: Console, request: Request) -> Response:
    return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")


async def not_found(console: Console, request: Request, exc: HTTPException) -> Response:
    """An error page for a person, JSON for the API, the images and the reports."""
    if request.url.path.startswith(("/api/", "/img/", "/mlflow/", "/static/")) or "/report" in request.url.path:
        return JSONResponse({"ok": False, "message": exc.detail}, status_code=exc.status_code)
    return await console.blocking(partial(console.render, request, "error.html", "", exc.status_code,
                                          title=f"{exc.status_code}", message=exc.detail))


def create_app(settings: ConsoleSettings, cluster: Cluster | None = None, mlflow: Tracking | None = None,
               volume: DatasetVolume | None = None) -> Starlette:
    """The ASGI app of one console (what ``visionops console`` serves with uvicorn)."""
    console = Console(settings, cluster, mlflow, volume)

    def on(handler: Callable[..., Response]) -> Callable[..., Response]:
        return partial(handler, console)

    routes = [
        Route("/", on(home)),
        Route("/data", on(data.page_data)),
        Route("/datacard", on(data.page_datacard)),
        Route("/training", on(training.page_training)),
        Route("/training/{name}", on(training.page_run)),
        Route("/evaluation", on(evaluation.page_evaluation)),
        Route("/analysis", on(analysis.page_analysis)),
        Route("/deploy", on(deploy.page_deploy)),
        Route("/production", on(production.page_production)),
        Route("/drift", on(drift.page_drift)),
        Route("/drift/{name}/report", on(drift.drift_report)),
        Route("/img/sample", on(data.img_sample)),
        Route("/mlflow/{run_id}/artifact/{path:path}", on(evaluation.mlflow_artifact)),
        Route("/api/samples", on(data.api_samples)),
        Route("/api/trainingruns", on(training.api_runs), methods=["GET"]),
        Route("/api/trainingruns", on(training.api_create_run), methods=["POST"]),
        Route("/api/trainingruns/{name}/live", on(training.api_live)),
        Route("/api/trainingruns/{name}/stop", on(training.api_stop), methods=["POST"]),
        Route("/api/trainingruns/{name}/promote", on(training.api_promote), methods=["POST"]),
        Route("/api/driftchecks/{name}/check", on(drift.api_check_now), methods=["POST"]),
        Route("/api/modeldeployments", on(deploy.api_deployments), methods=["GET"]),
        Route("/deploy/production", on(deploy.form_production), methods=["POST"]),
        Route("/api/predict", on(deploy.api_predict), methods=["POST"]),
        Route("/signin", on(account.page_signin), methods=["GET"]),
        Route("/signin", on(account.form_signin), methods=["POST"]),
        Route("/signout", on(account.form_signout), methods=["POST"]),
        Route("/healthz", on(healthz)),
        Route("/favicon.ico", on(favicon)),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        console.close()

    app = Starlette(routes=routes, middleware=[Middleware(SecurityMiddleware, allowed_hosts=settings.allowed_hosts)],
                    exception_handlers={HTTPException: partial(not_found, console)}, lifespan=lifespan,
                    max_body_size=settings.max_upload_bytes + 1024 * 1024)
    app.state.console = console
    return app
