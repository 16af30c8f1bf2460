"""Where kopf keeps its state of each resource: the last handled state in memory, retries in annotations.

**The last handled state.** kopf tells a resource's changes (which fire ``on.update``/``on.field``
handlers) by comparing its "essence" (spec, labels, annotations and the status fields a handler follows)
with the one of the last handling. By default it stores that essence in an annotation: one more PATCH of
every new resource, one more watch event for every client watching it, and a JSON blob in
``kubectl get -o yaml``. It also builds the essence for every watch event of every watched kind by
deep-copying the whole body, ``managedFields`` and status included, before dropping them; a training Job's
pod template made that copy the operator's largest CPU cost in a burst of TrainingRuns.

:class:`MemoryDiffBaseStorage` keeps the essences in memory, by uid, and builds them from the fields they
keep only; for kinds no handler follows by their changes (Jobs, ModelDeployments: their handlers see every
event as it is) it builds none. After a restart, or for an essence dropped for room, kopf finds none and
treats the resource as new: its create handler runs again, which every create handler of this operator is
written for (it is also its resume handler, and each step is idempotent).

**Retries.** A handler that fails is retried by kopf, which keeps the count and the time of the next try in
annotations (they must survive a restart, and writing them wakes the resource up when the time comes).
Their prefix, ``kopf.visionops.io``, is kopf's alone: kopf leaves every annotation under that prefix out of
the state it compares, and with the API group's own prefix that hid ``visionops.io/promote``, so annotating
a run for manual promotion never reached its handler. kopf's "kopf-managed" marker (a note for other kopf
operators, written by one more PATCH of every new resource) is not written.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable
from typing import Any

import kopf

RETRY_PREFIX = "kopf.visionops.io"
KEPT_METADATA = ("labels", "annotations")  # the metadata the essence keeps
CAPACITY = 10_000  # essences kept (a few hundred bytes each); the least recently seen go first


class MemoryDiffBaseStorage(kopf.DiffBaseStorage):
    """kopf's diff base of the kinds in ``followed_kinds``, in memory; an empty essence for other kinds."""

    def __init__(self, *, followed_kinds: Collection[str], capacity: int = CAPACITY) -> None:
        super().__init__()
        self.followed_kinds = frozenset(followed_kinds)
        self.capacity = capacity
        self._essences: OrderedDict[str, kopf.BodyEssence] = OrderedDict()

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        if body.get("kind") not in self.followed_kinds:
            return kopf.BodyEssence()
        metadata = body.get("metadata") or {}
        slim = {key: value for key, value in body.items() if key != "metadata"}
        slim["metadata"] = {key: metadata[key] for key in KEPT_METADATA if key in metadata}
        return super().build(body=kopf.Body(slim), extra_fields=extra_fields)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        uid = (body.get("metadata") or {}).get("uid")
        essence = self._essences.get(uid)
        if essence is not None:
            self._essences.move_to_end(uid)
        return essence

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        uid = (body.get("metadata") or {}).get("uid")
        if not uid or body.get("kind") not in self.followed_kinds:
            return
        self._essences[uid] = essence
        self._essences.move_to_end(uid)
        while len(self._essences) > self.capacity:
            self._essences.popitem(last=False)


class RetryStorage(kopf.AnnotationsProgressStorage):
    """kopf's retry state of each handler in annotations under ``kopf.visionops.io``, without the marker."""

    def __init__(self) -> None:
        super().__init__(prefix=RETRY_PREFIX)

    def _store_marker(self, **_: Any) -> None:
        """No "kopf-managed" marker: nothing reads it here, and writing it costs a PATCH per new resource."""
