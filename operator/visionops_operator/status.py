"""The one writer of custom-resource status: read, decide (pure), write with optimistic concurrency, post Events.

Every handler and the progress loop change a TrainingRun's or DriftCheck's status through :func:`update`,
so two writers (a Job's handler and the resource's own) never overwrite each other's conditions: the
write carries the resourceVersion it was decided on, and a conflict re-reads and decides again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.rest import ApiException

from . import kube
from .decisions import Status

Clock = Callable[[], datetime]
Decide = Callable[[Mapping[str, Any], Status], None]
ATTEMPTS = 8


def utcnow() -> datetime:
    """The operator's clock (handlers pass it to the pure decisions)."""
    return datetime.now(UTC)


def update(plural: str, namespace: str, name: str, decide: Decide, *, uid: str | None = None,
           current: Mapping[str, Any] | None = None, clock: Clock = utcnow) -> tuple[dict[str, Any], Status] | None:
    """Apply ``decide(resource, status)`` to the live resource and write its changes once.

    ``current`` (e.g. the body a kopf handler got) saves the first read; a conflict reads it afresh.
    Returns the resource as decided on and the decided :class:`Status`, or ``None`` when the resource is
    gone, being deleted, or (with ``uid``) replaced by another of the same name.
    """
    for attempt in range(ATTEMPTS):
        obj = dict(current) if current is not None and attempt == 0 else kube.get_custom(namespace, plural, name)
        meta = (obj or {}).get("metadata") or {}
        if obj is None or meta.get("deletionTimestamp") or (uid and meta.get("uid") != uid):
            return None
        st = Status(obj.get("status") or {}, clock(), meta.get("generation"))
        decide(obj, st)
        if st.changes:
            try:
                kube.patch_status(namespace, plural, name, st.changes, meta["resourceVersion"])
            except ApiException as exc:
                if exc.status == 409:
                    continue
                raise
        post(obj, st)
        return obj, st
    raise kopf.TemporaryError(f"{plural}/{name}: status kept changing while being written", delay=1)


def post(obj: Mapping[str, Any], st: Status) -> None:
    """Post the decided Events on the resource (once its status is written)."""
    for event in st.events:
        kopf.event(dict(obj), type="Warning" if event.warning else "Normal", reason=event.reason,
                   message=event.message)
