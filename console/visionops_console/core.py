"""What every step's handlers share: one :class:`Console` per process (settings, its cluster, MLflow and dataset
volume), the page renderer, and the one way to call the blocking clients from an ``async`` handler.

Handlers are plain functions ``(console, request) -> Response`` in :mod:`visionops_console.steps`. A plain
``def`` handler runs in Starlette's thread pool; an ``async def`` handler (one that reads a request body) calls
the cluster or MLflow only through :meth:`Console.blocking`, so a hanging apiserver never stalls the event loop.
Each page degrades on its own: no cluster -> the cluster parts say so and the rest is served; no MLflow -> the same.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from visionops.data.errors import DataError
from visionops_console.datasets import DatasetIndex, DatasetVolume
from visionops_console.formatting import FILTERS
from visionops_console.kube import Cluster, ClusterUnavailable, Rejection
from visionops_console.monitoring import Prometheus
from visionops_console.settings import ConsoleSettings
from visionops_console.signin import Session, Sessions, session_key
from visionops_console.tracking import Tracking, TrackingUnavailable

HERE = Path(__file__).resolve().parent
log = logging.getLogger("visionops.console")
T = TypeVar("T")

STEPS = (
    # (id, number, title, path, what it needs)
    ("data", "1", "Data", "/data", "dataset volume"),
    ("datacard", "2", "Data card", "/datacard", "dataset volume"),
    ("training", "3", "Training", "/training", "cluster"),
    ("evaluation", "4", "Evaluation", "/evaluation", "MLflow"),
    ("analysis", "5", "Analysis", "/analysis", "MLflow"),
    ("deploy", "6", "Deploy", "/deploy", "MLflow"),
    ("production", "", "Production", "/production", "Prometheus"),
    ("drift", "", "Drift", "/drift", "cluster"),
)
CPU_NOTE = "training and rollout need a Kubernetes cluster"
SIGN_IN_NOTE = ("sign in with your Kubernetes token to make changes (they are made as you, and your RBAC decides); "
                "until then the console only reads")


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


class Console:
    """One console process: settings + its cluster, MLflow and dataset volume, and what its handlers share."""

    def __init__(self, settings: ConsoleSettings, cluster: Cluster | None = None, mlflow: Tracking | None = None,
                 volume: DatasetVolume | None = None):
        self.settings = settings
        self.cluster = cluster or Cluster(settings.kubeconfig, settings.namespace, settings.request_timeout)
        self.mlflow = mlflow or Tracking(settings.mlflow_uri, timeout=settings.request_timeout)
        self.volume = volume or DatasetVolume(settings.datasets or None)
        self.prometheus = Prometheus(settings.prometheus_url, timeout=settings.request_timeout)
        # a step's template sits beside its handlers (steps/); the frame and the macros in templates/
        loader = ChoiceLoader([FileSystemLoader(HERE / "templates"), FileSystemLoader(HERE / "steps")])
        self.env = Environment(loader=loader, autoescape=select_autoescape(
            enabled_extensions=("html",), default_for_string=True, default=True), trim_blocks=True,
            lstrip_blocks=True)
        self.env.filters.update(FILTERS)
        self.started = time.time()
        self.notices = Notices()
        self.sessions = Sessions()
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="console")

    def close(self) -> None:
        self.mlflow.close()
        self.prometheus.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    # rendering and guarding ----------------------------------------------------------------------------------

    def person(self, request: Request) -> Session | None:
        """The signed-in person of this request (``--sign-in token``), or None."""
        return self.sessions.get(session_key(request)) if self.settings.sign_in == "token" else None

    def may_write(self, request: Request) -> bool:
        """Whether writes are offered at all: not read-only, and signed in where sign-in is required."""
        return not self.settings.read_only and (self.settings.sign_in == "none" or self.person(request) is not None)

    def render(self, request: Request, template: str, page: str, status_code: int = 200, **context: Any) -> Response:
        """A page in the console's frame (blocking: it asks whether the cluster answers)."""
        cluster_reason = self.cluster.unavailable()
        person = self.person(request)
        context.update(
            page=page, steps=STEPS, settings=self.settings, csrf_token=request.state.csrf_token,
            request_path=request.url.path,
            namespace=self.cluster.namespace, cluster_reason=cluster_reason,
            mlflow_reason=self.mlflow.unavailable(), read_only=self.settings.read_only,
            writes_enabled=self.may_write(request) and cluster_reason is None,
            signed_in=person.user if person else "", sign_in=self.settings.sign_in,
            needs_sign_in=self.settings.sign_in == "token" and person is None and not self.settings.read_only,
            datasets_configured=self.volume.configured,
        )
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})

    @staticmethod
    def guard(fn: Callable[[], T], default: Any = None) -> tuple[T | Any, str | None]:
        """``(fn(), None)``, or ``(default, why)`` when the cluster or MLflow is not there."""
        try:
            return fn(), None
        except (ClusterUnavailable, TrackingUnavailable) as exc:
            return default, str(exc)

    @staticmethod
    async def blocking(fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` off the event loop: how an ``async`` handler calls the cluster, MLflow or a predictor."""
        return await run_in_threadpool(fn, *args)

    # writes --------------------------------------------------------------------------------------------------

    def acting(self, request: Request) -> Cluster:
        """The connection a write of this request uses: the signed-in person's (``--sign-in token``), else the
        console's own."""
        person = self.person(request)
        return person.cluster if person is not None else self.cluster

    async def refuse_write(self, request: Request) -> JSONResponse | None:
        """Why a write cannot be made (read-only, not signed in, no cluster), or None."""
        if self.settings.read_only:
            return JSONResponse({"ok": False, "message": "the console is read-only (--read-only / console.readOnly)"
                                 ": writes go through kubectl"}, status_code=403)
        if not self.may_write(request):
            return JSONResponse({"ok": False, "message": SIGN_IN_NOTE, "signIn": "/signin"}, status_code=401)
        reason = await self.blocking(self.cluster.unavailable)
        if reason:
            return JSONResponse({"ok": False, "message": f"{CPU_NOTE}: {reason}"}, status_code=503)
        return None

    async def write(self, request: Request, action: str, *args: Any) -> Response:
        """One cluster write of the JSON API (the :class:`Cluster` method ``action``, on the acting connection),
        refused or made: ``{"ok", "message"}`` (the apiserver's words when it refuses, with its status code)."""
        refused = await self.refuse_write(request)
        if refused is not None:
            return refused
        try:
            message = await self.blocking(getattr(self.acting(request), action), *args)
        except Rejection as exc:
            return rejected(exc)
        except ClusterUnavailable as exc:
            return JSONResponse({"ok": False, "message": f"{CPU_NOTE}: {exc}"}, status_code=503)
        user = self.acting(request).user
        log.info("%s%s", message, f" (as {user})" if user else "")
        return JSONResponse({"ok": True, "message": message})

    # what several steps read -------------------------------------------------------------------------------

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


def rejected(exc: Rejection) -> JSONResponse:
    """The JSON API's answer to an apiserver refusal: its message and field causes, with its status code."""
    return JSONResponse({"ok": False, **exc.as_dict()}, status_code=exc.status if exc.status >= 400 else 422)
