"""KServe's ModelServer with VisionOps' guards: transport limits, a 4xx for every client mistake, each
answer counted, one log line per refusal.

- :class:`PredictorServer` runs KServe's uvicorn with :class:`predictor.transport.LimitedProtocol` and
  decodes requests with :class:`ClientErrorDataPlane` (a malformed body or V2 binary header is the
  client's mistake: 400, never a 500). It also starts with a model that is not ready yet (KServe would
  refuse): the server is live, and readiness, model readiness and predictions answer 503 with the model's
  :attr:`~predictor.model.DefectDetector.waiting` message until it loads.
- :func:`install` adds to KServe's FastAPI app the :class:`RequestAccounting` middleware
  (``visionops_requests_total{code, reason}``, one log line per 4xx, a client gone mid-request ends
  quietly), compact handlers for :class:`~predictor.payload.PayloadError` (its own status: 400, 413, 415)
  and for schema errors (422), and a log filter turning KServe's tracebacks of client errors into nothing
  (the middleware's line says it once).
"""

from __future__ import annotations

import ctypes
import functools
import http
import logging
from typing import Any

import kserve
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady, ServerNotReady
from kserve.protocol.dataplane import DataPlane
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from predictor import metrics
from predictor.admission import InflightBudget, inflight_budget, memory_limit
from predictor.payload import PayloadError, bounded, schema_summary
from predictor.settings import ServingSettings
from predictor.transport import LimitedProtocol
from predictor.v2_body import request_from_body

MMAP_THRESHOLD = 1 << 20  # bytes: larger allocations are mapped, and unmapped when freed
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
REASON = "visionops.reason"  # scope keys: why a request was refused, and the message sent
MESSAGE = "visionops.message"
_DEFAULT_REASONS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 422: "invalid_schema",
                    500: "internal_error", 503: "not_ready"}

log = logging.getLogger("kserve.visionops.http")


def default_reason(status: int, scope: Scope) -> str:
    """The reason label of an answer no VisionOps handler named: ``ok`` below 400, else from the status."""
    if status < 400:
        return "ok"
    if status == 404 and scope.get("path_params", {}).get("model_name"):
        return "model_not_found"  # a route matched, the model name did not
    return _DEFAULT_REASONS.get(status) or http.HTTPStatus(status).phrase.lower().replace(" ", "_")


class RequestAccounting:
    """ASGI middleware: count every answer by status and reason, log one line per 4xx, and end quietly a
    request whose client went away (or was refused by the transport) while its body was read."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.app(scope, receive, self._count_websocket_refusal(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: int | None = None

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except ClientDisconnect:
            if status is None:
                return  # nobody to answer: the transport logged and counted a refusal, or the client left
            raise
        except Exception:
            if status is None:
                metrics.record_request(500, "internal_error")
            raise
        if status is None:
            return
        reason = scope.get(REASON) or default_reason(status, scope)
        metrics.record_request(status, reason)
        if 400 <= status < 500:
            message = scope.get(MESSAGE)
            log.warning("%s %s: %d %s%s", scope["method"], scope["path"], status, reason,
                        f": {message}" if message else "")


    @staticmethod
    def _count_websocket_refusal(send: Send) -> Send:
        """The app has no WebSocket route: a handshake closed before it is accepted is a 403 refusal."""
        accepted = False

        async def send_and_count(message: Message) -> None:
            nonlocal accepted
            accepted = accepted or message["type"] == "websocket.accept"
            if message["type"] == "websocket.close" and not accepted:
                metrics.record_request(403, "websocket_refused")
            await send(message)

        return send_and_count


def _refusal(request: Request, status: int, reason: str, message: str) -> JSONResponse:
    request.scope[REASON], request.scope[MESSAGE] = reason, message
    return JSONResponse({"error": message}, status_code=status)


async def payload_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """A :class:`PayloadError`: its own status and reason, ``{"error": message}`` (KServe's shape)."""
    assert isinstance(exc, PayloadError)
    return _refusal(request, exc.status, exc.code, str(exc))


def schema_message(exc: RequestValidationError, limit: int = 5) -> str:
    """A one-line summary of a body that does not fit the endpoint's schema (the values are not echoed)."""
    return bounded(schema_summary(({**e, "loc": tuple(e.get("loc", ()))[1:]} for e in exc.errors()), limit))


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own refusals (no such route: 404, wrong method: 405) in the same ``{"error": ...}`` shape."""
    assert isinstance(exc, HTTPException)
    response = _refusal(request, exc.status_code, default_reason(exc.status_code, request.scope), str(exc.detail))
    response.headers.update(exc.headers or {})
    return response


async def schema_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _refusal(request, 422, "invalid_schema", schema_message(exc))


class ClientErrorLogFilter(logging.Filter):
    """Drops KServe's ``Exception:`` traceback records of client errors (the middleware logs one line) and of
    "not ready" answers (readiness probes while the model waits: the model logs why, once)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, InvalidInput | ModelNotFound | ModelNotReady | ServerNotReady)


def install(app: FastAPI) -> None:
    """Add the middleware, handlers and log filter to KServe's app (once; before the server starts)."""
    if getattr(app.state, "visionops_guards", False):
        return
    app.add_middleware(RequestAccounting)
    app.add_exception_handler(PayloadError, payload_error_handler)
    app.add_exception_handler(RequestValidationError, schema_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    logging.getLogger(kserve.logging.KSERVE_LOGGER_NAME).addFilter(ClientErrorLogFilter())
    app.state.visionops_guards = True


class ClientErrorDataPlane(DataPlane):
    """KServe's data plane whose request decoding answers 400 for anything malformed in the body or headers
    (KServe lets e.g. ``int()`` of a non-numeric ``inference-header-content-length`` escape as a 500), never with
    the body's bytes in the message, and reads a V2 body that is not typed JSON with
    :func:`predictor.v2_body.request_from_body` (untyped JSON, binary ``BYTES`` elements that are image files)."""

    def decode(self, body: Any, headers: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().decode(body, headers, *args, **kwargs)
        except PayloadError:
            raise
        except InvalidInput as exc:
            code = "bad_json" if "Unrecognized request format" in str(exc) else "bad_request"
            raise PayloadError(code, str(exc)) from exc
        except Exception as exc:  # decoding only parses the client's bytes: whatever fails there is theirs
            module, name = type(exc).__module__, type(exc).__name__
            kind = name if module == "builtins" else f"{module}.{name}"
            raise PayloadError("bad_request", f"malformed request: {kind}: {exc}") from exc

    def decode_inference_request(self, body: Any, headers: Any, model_name: str) -> Any:
        """A V2 request; a body left as bytes is read by :func:`~predictor.v2_body.request_from_body`."""
        if isinstance(body, bytes):
            return request_from_body(body, headers.get(INFERENCE_CONTENT_LENGTH_HEADER), model_name)
        return super().decode_inference_request(body, headers, model_name)

    def _waiting(self) -> dict[str, str]:
        """``{name: why}`` of the registered models that are not ready."""
        return {name: getattr(model, "waiting", None) or "not loaded"
                for name, model in self.model_registry.get_models().items() if not model.ready}

    async def ready(self) -> bool:
        """Server readiness: every registered model is ready; else 503 saying why (KServe's says ready)."""
        waiting = self._waiting()
        if waiting:
            raise ServerNotReady("; ".join(f"model {name}: {why}" for name, why in waiting.items()))
        return await super().ready()

    async def model_ready(self, model_name: str, disable_predictor_health_check: bool = False) -> bool:
        """A registered model that is not ready answers 503 with why (V1 and V2 readiness, and before predict)."""
        why = self._waiting().get(model_name)
        if why is not None:
            raise ModelNotReady(model_name, why)
        return await super().model_ready(model_name, disable_predictor_health_check)

    async def get_model(self, name: str) -> Any:
        """The model to predict with; one not ready answers 503 (KServe would load it here, on the event loop)."""
        model = self.model_registry.get_model(name)
        if model is not None and not model.ready:
            raise ModelNotReady(name, self._waiting().get(name))
        return await super().get_model(name)


def return_large_frees_to_os() -> bool:
    """Make glibc map every allocation of :data:`MMAP_THRESHOLD` bytes or more (image planes, request bodies) and
    unmap it when freed. Its default threshold grows with the largest block freed, after which a big request's
    memory stays with the process for good. False where the C library has no ``mallopt`` (not glibc)."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    return bool(mallopt and mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


class PredictorServer(kserve.ModelServer):
    """``kserve.ModelServer`` with the transport limits and request guards of ``settings`` (one worker: the
    limits live in this process's uvicorn; scale with replicas)."""

    def __init__(self, settings: ServingSettings, inflight_bytes: int | None = None, **kwargs: Any):
        if kwargs.get("workers", 1) != 1:
            raise ValueError(f"--workers must be 1 (got {kwargs['workers']}): the transport limits are enforced in "
                             "this process's HTTP server; scale with replicas")
        super().__init__(timeout_keep_alive=settings.idle_timeout_seconds, **kwargs)
        self.settings = settings
        # request bodies in flight over every connection (predictor.admission); the CLI derives it from the memory
        self.budget = InflightBudget(inflight_bytes or inflight_budget(settings, memory_limit()))
        self.dataplane = ClientErrorDataPlane(model_registry=self.registered_models)
        install(kserve.model_server.app)
        return_large_frees_to_os()

    def start(self, models: list[Any]) -> None:
        """Serve ``models``, also those not ready yet (each waits for its model: see the module docstring)."""
        for model in models:
            if not model.ready:
                self.register_model(model)
                model.enable_latency_logging = self.enable_latency_logging
        super().start([model for model in models if model.ready])

    async def _serve(self) -> None:
        # start() has built the REST server's uvicorn.Config; uvicorn reads `http` when it begins serving,
        # which happens inside super()._serve()
        self._rest_server.config.http = functools.partial(LimitedProtocol, limits=self.settings, budget=self.budget)
        await super()._serve()
