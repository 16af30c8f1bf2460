"""Whether this replica acts (``operator.replicas`` > 1, docs/operator.md).

kopf pauses a standby replica's handlers through its peering object, but not the operator's own loops (the
ModelDeployment sync, the training progress): a replica that acted for a moment at start-up, before it saw a peer
with a higher priority, kept them running and moved production twice. Each loop asks :meth:`Replica.acting` before
a pass; it reads the same peering record and applies kopf's rule (:func:`acts`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from . import kube

KOPF_DEFAULT_LIFETIME = 60  # seconds: a record without its own lifetime (kopf's default)


def acts(peers: Mapping[str, Mapping[str, Any]], identity: str, priority: int, now: datetime) -> bool:
    """kopf's rule on a peering record's ``status`` (``{identity: {priority, lifetime, lastseen}}``): a replica
    pauses while another live peer's priority is at least its own; a peer whose ``lastseen`` + ``lifetime`` has
    passed is dead. ``identity`` empty: this replica is the peer of its own ``priority``."""
    for peer, record in peers.items():
        mine = peer == identity if identity else int(record.get("priority", 0)) == priority
        if mine or _dead(record, now):
            continue
        if int(record.get("priority", 0)) >= priority:
            return False
    return True


def _dead(record: Mapping[str, Any], now: datetime) -> bool:
    lastseen = record.get("lastseen")
    if not lastseen:
        return False
    seen = datetime.fromisoformat(str(lastseen))
    seen = seen if seen.tzinfo else seen.replace(tzinfo=UTC)
    return seen + timedelta(seconds=int(record.get("lifetime", KOPF_DEFAULT_LIFETIME))) <= now


@dataclass(frozen=True)
class Replica:
    """This replica in the peering object ``name`` (``""``: standalone, always acts): one record per watched
    namespace, or the cluster-wide one (``namespaces`` None)."""

    name: str = ""
    priority: int = 0
    namespaces: Sequence[str] | None = ()
    identity: str = ""

    @classmethod
    def of(cls, name: str, priority: int, namespaces: Sequence[str], all_namespaces: bool) -> Replica:
        """kopf's own identity of a replica is ``POD_ID`` (the chart sets it to the pod's name)."""
        return cls(name=name, priority=priority, namespaces=None if all_namespaces else tuple(namespaces),
                   identity=os.environ.get("POD_ID", ""))

    @property
    def scopes(self) -> list[str | None]:
        """The namespaces this replica watches; ``[None]`` for the whole cluster."""
        return list(self.namespaces) if self.namespaces is not None else [None]

    def acting(self, logger: logging.Logger | None = None) -> bool:
        """Whether this replica acts now; not while a record cannot be read (the API server decides either way)."""
        if not self.name:
            return True
        now = datetime.now(UTC)
        try:
            for namespace in self.scopes:
                record = kube.get_peering(namespace, self.name) or {}
                if not acts(record.get("status") or {}, self.identity, self.priority, now):
                    return False
        except Exception as exc:
            if logger:
                logger.warning(f"reading the peering record {self.name} failed ({type(exc).__name__}): not acting")
            return False
        return True
