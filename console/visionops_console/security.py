"""Cross-site request protection and response headers, as one ASGI middleware.

- Every request must name an allowed host (``--allowed-hosts``; by default localhost and loopback, which is what
  ``kubectl port-forward`` gives): a page of another site that rebinds its DNS name to the console's address
  cannot use it (``/healthz`` is exempt, kubelet probes send the pod IP).
- State-changing requests (anything but GET/HEAD/OPTIONS) must come from the console's own pages: the
  ``Origin`` header (or, without it, the ``Referer``) must name the host the request was sent to, and the
  ``X-CSRF-Token`` header must equal the ``visionops_csrf`` cookie (HttpOnly, SameSite=Strict), whose value
  the pages carry in a ``<meta>`` tag. A foreign site can neither read the token nor set the header. A plain
  HTML form (``application/x-www-form-urlencoded``, a few KB at most) may carry the token as its ``csrf_token``
  field instead of the header; the Origin/Referer check is the same.
- Every response gets a strict Content-Security-Policy (scripts, styles, images and frames from the console
  itself; nothing inline), ``nosniff``, no referrer across origins and no framing by other sites.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

COOKIE = "visionops_csrf"
HEADER = "x-csrf-token"
FORM_FIELD = "csrf_token"  # a urlencoded form's field carrying the token (the page's hidden input)
FORM_TYPE = "application/x-www-form-urlencoded"
FORM_LIMIT = 16 * 1024  # bytes of a form body read to find the token (the console's forms are a few hundred)
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "frame-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'self'")
# The Evidently report is a self-contained page with inline scripts and styles: it is served sandboxed (an
# opaque origin: no access to the console's cookies, storage or DOM), and still may load nothing from outside.
REPORT_CSP = ("sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
              "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; frame-ancestors 'self'")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def new_token() -> str:
    return secrets.token_urlsafe(32)


DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "[::1]")
EXEMPT_PATHS = ("/healthz",)


def host_allowed(host: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a Host header names an allowed host; an entry without a port allows any port, ``*`` allows all."""
    if "*" in allowed:
        return True
    if not host:
        return False
    host = host.lower()
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return any(entry in (host, name) for entry in (a.lower() for a in allowed))


def same_origin(source: str | None, host: str | None) -> bool:
    """Whether an ``Origin``/``Referer`` value names ``host`` (the request's Host header, port included)."""
    if not source or not host or source == "null":
        return False
    parts = urlsplit(source)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


def check_request(method: str, headers: dict[str, str], cookie_token: str | None,
                  form_token: str | None = None) -> str | None:
    """Why a request must be refused (a sentence), or ``None`` when it may proceed. ``form_token``: the token a
    urlencoded form sent in its :data:`FORM_FIELD` (used when there is no header)."""
    if method.upper() in SAFE_METHODS:
        return None
    host = headers.get("host")
    origin = headers.get("origin")
    if origin is not None:
        if not same_origin(origin, host):
            return f"cross-site request refused: Origin {origin!r} is not this console ({host})"
    elif not same_origin(headers.get("referer"), host):
        return "cross-site request refused: no Origin or Referer naming this console"
    sent = headers.get(HEADER) or form_token
    if not cookie_token or not sent or not hmac.compare_digest(sent, cookie_token):
        return "cross-site request refused: missing or wrong CSRF token (reload the page)"
    return None


def cookie(raw: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header, or None (no header, no such cookie, unparsable)."""
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel else None


def _cookie_token(headers: dict[str, str]) -> str | None:
    token = cookie(headers.get("cookie"), COOKIE)
    return token if token and len(token) >= 16 else None


async def _buffered(receive: Receive, limit: int) -> tuple[bytes | None, Receive]:
    """The request body (``None`` past ``limit`` bytes) and a ``receive`` that hands the app the same messages."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if size > limit:
            return None, receive
        if not message.get("more_body"):
            break
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return body, replay


class SecurityMiddleware:
    """Refuses cross-site writes (403, JSON) and sets the CSRF cookie and security headers on every response."""

    def __init__(self, app: ASGIApp, allowed_hosts: tuple[str, ...] = DEFAULT_ALLOWED_HOSTS):
        self.app = app
        self.allowed_hosts = tuple(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        token = _cookie_token(headers)
        if scope.get("path") not in EXEMPT_PATHS and not host_allowed(headers.get("host"), self.allowed_hosts):
            await self._refuse(scope, send, 421, f"host {headers.get('host')!r} is not one this console serves "
                                                 "(--allowed-hosts / console.allowedHosts)")
            return
        form_token = None
        if (scope["method"].upper() not in SAFE_METHODS and HEADER not in headers
                and headers.get("content-type", "").split(";")[0].strip().lower() == FORM_TYPE):
            body, receive = await _buffered(receive, FORM_LIMIT)
            if body is None:
                await self._refuse(scope, send, 413, f"a form of more than {FORM_LIMIT} bytes is not one of the "
                                                     "console's")
                return
            form_token = (parse_qs(body.decode("latin-1")).get(FORM_FIELD) or [None])[0]
        reason = check_request(scope["method"], headers, token, form_token)
        if reason is not None:
            await self._refuse(scope, send, 403, reason)
            return
        fresh = token is None
        token = token or new_token()
        scope.setdefault("state", {})["csrf_token"] = token

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = self._security_headers(scope)
                if fresh:
                    cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
                    extra.append((b"set-cookie", cookie.encode()))
                existing = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in existing
                                                                         or h[0] == b"set-cookie")]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, scope: Scope, send: Send, status: int, reason: str) -> None:
        import json

        body = json.dumps({"ok": False, "message": reason}).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            *self._security_headers(scope)]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _security_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
        return [
            (b"content-security-policy", CSP.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
            (b"x-frame-options", b"SAMEORIGIN"),
        ]
