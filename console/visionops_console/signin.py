"""Who is at the keyboard: sign-in with the person's own Kubernetes bearer token (``--sign-in token``), as the
Kubernetes Dashboard does.

The console checks a token by asking the API server who it belongs to (a ``SelfSubjectReview`` made with that
token) and keeps it server-side, in memory, under a random session id (the ``visionops_session`` cookie:
HttpOnly, SameSite=Strict; the token itself never goes back to the browser). Every change a signed-in person makes
is made *with their token*, so Kubernetes RBAC decides whether they may, the API server's audit log and
ModelDeployment history name them, and a refusal is theirs. Pages are read with the console's own (read-only)
identity. Without a session the console only reads. A console restart signs everyone out.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from starlette.requests import Request

from visionops_console.kube import Cluster
from visionops_console.security import cookie

COOKIE = "visionops_session"
TTL_SECONDS = 8 * 3600  # a working shift; then sign in again
MAX_SESSIONS = 500


@dataclass
class Session:
    user: str
    groups: tuple[str, ...]
    cluster: Cluster  # the person's own connection (their token)
    expires: float


class Sessions:
    """The signed-in people of one console process (bounded; the oldest goes first)."""

    def __init__(self, ttl: float = TTL_SECONDS, limit: int = MAX_SESSIONS):
        self._items: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.ttl, self.limit = ttl, limit

    def open(self, user: str, groups: tuple[str, ...], cluster: Cluster) -> str:
        key = secrets.token_urlsafe(32)
        with self._lock:
            self._expire()
            while len(self._items) >= self.limit:
                self._items.pop(next(iter(self._items))).cluster.close()
            self._items[key] = Session(user, groups, cluster, time.monotonic() + self.ttl)
        return key

    def get(self, key: str | None) -> Session | None:
        if not key:
            return None
        with self._lock:
            found = self._items.get(key)
            if found is not None and found.expires <= time.monotonic():
                self._items.pop(key).cluster.close()
                return None
            return found

    def close(self, key: str | None) -> None:
        with self._lock:
            found = self._items.pop(key or "", None)
        if found is not None:
            found.cluster.close()

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self._items.items() if s.expires <= now]:
            self._items.pop(key).cluster.close()


def session_key(request: Request) -> str | None:
    return cookie(request.headers.get("cookie"), COOKIE)


def session_cookie(request: Request, key: str, max_age: int) -> str:
    """The ``Set-Cookie`` value of a session (empty key and max_age 0: sign out)."""
    secure = "; Secure" if request.url.scheme == "https" else ""
    return f"{COOKIE}={key}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"


def local_path(target: str) -> str:
    """Where to go after signing in: a path of this console only (never another site)."""
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else "/data"
