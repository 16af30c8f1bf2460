"""The one writer of custom-resource status: read, decide (pure), write with optimistic concurrency, post Events.

Every reconciler (TrainingRun, DriftCheck, ModelDeployment, the progress loop) changes status the same way:
``update(plural, namespace, name, *decisions)``, each decision a :data:`Decision` (a pure function of the
:class:`Status` it changes). Two writers (a Job's handler and the resource's own) never overwrite each other's
conditions: the write carries the resourceVersion it was decided on, and a conflict re-reads and decides again.
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
Decision = Callable[[Status], None]
"""One step of a status change: a pure function of the :class:`Status` it records its changes in."""
ATTEMPTS = 8


def utcnow() -> datetime:
    """The operator's clock (handlers pass it to the pure decisions)."""
    return datetime.now(UTC)


def update(plural: str, namespace: str, name: str, *decisions: Decision, uid: str | None = None,
           current: Mapping[str, Any] | None = None, clock: Clock = utcnow) -> Status | None:
    """Apply ``decisions`` in order to the live resource's status and write their changes once.

    ``current`` (e.g. the body a kopf handler got) saves the first read; a conflict reads it afresh.
    Returns the decided :class:`Status` (``.changes`` what was written, ``.view`` the status after it), or
    ``None`` when the resource is gone, being deleted, or (with ``uid``) replaced by another of the same name.
    """
    for attempt in range(ATTEMPTS):
        obj = dict(current) if current is not None and attempt == 0 else kube.get_custom(namespace, plural, name)
        meta = (obj or {}).get("metadata") or {}
        if obj is None or meta.get("deletionTimestamp") or (uid and meta.get("uid") != uid):
            return None
        st = Status(obj.get("status") or {}, clock(), meta.get("generation"))
        for decision in decisions:
            decision(st)
        if st.changes:
            try:
                kube.patch_status(namespace, plural, name, st.changes, meta["resourceVersion"])
            except ApiException as exc:
                if exc.status == 409:
                    continue
                raise
        post(obj, st)
        return st
    raise kopf.TemporaryError(f"{plural}/{name}: status kept changing while being written", delay=1)


def post(obj: Mapping[str, Any], st: Status) -> None:
    """Post the decided Events on the resource (once its status is written)."""
    for event in st.events:
        kopf.event(dict(obj), type="Warning" if event.warning else "Normal", reason=event.reason,
                   message=event.message)
