"""The one way the project talks to the Kubernetes API: plain REST calls on the official client's connection.

The official ``kubernetes`` client gives the connection (kubeconfig or ServiceAccount, TLS, token refresh) and
the HTTP pool; the requests are plain REST calls with JSON bodies and dict answers. The client's generated API
methods validate every argument with pydantic and turn dict bodies into model objects and back: several times the
CPU of the request itself (bench/bench_operator.py), for callers (the operator's handlers, the console's pages)
that build and read dicts anyway. The operator and the console both call :func:`call`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

JSON, MERGE_PATCH, STRATEGIC_MERGE_PATCH = (
    "application/json", "application/merge-patch+json", "application/strategic-merge-patch+json")


def api_path(group: str, version: str, namespace: str | None, plural: str, name: str = "", sub: str = "") -> str:
    """The REST path of a collection or an object: ``group`` "" for the core API (``/api/v1``)."""
    root = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    parts = [root] + ([f"namespaces/{quote(namespace)}"] if namespace else []) + [plural]
    parts += [quote(name)] if name else []
    parts += [sub] if sub else []
    return "/".join(parts)


def call(client: Any, method: str, path: str, body: Any = None, *, query: dict[str, Any] | None = None,
         content_type: str = JSON, timeout: float | None = None, text: bool = False) -> Any:
    """One REST call on ``client`` (a ``kubernetes.client.ApiClient``): ``body`` sent as JSON, the answer decoded
    (``text=True``: returned as text, e.g. a pod log); ``ApiException`` on a non-2xx status.

    The answer is read to its end, which hands the connection back to the pool (an unread answer keeps its
    connection, and the next call opens a new one: a TLS handshake each).
    """
    from kubernetes.client.rest import ApiException

    params = [(k, v) for k, v in (query or {}).items() if v is not None]
    method, url, headers, _, _ = client.param_serialize(
        method, path, query_params=params or None,
        header_params={"Accept": "*/*" if text else JSON, "Content-Type": content_type}, auth_settings=["BearerToken"])
    response = client.call_api(method, url, headers, body, _request_timeout=timeout)
    response.read()
    if not 200 <= response.status <= 299:
        ApiException.from_response(http_resp=response, body=None, data=None)  # raises, by the status's kind
    if text:
        return response.data.decode(errors="replace")
    return json.loads(response.data) if response.data else None
