"""Epoch progress of training pods, read from MLflow: the operator's only periodic work.

The training Job handler tells a :class:`ProgressTracker` which runs train right now; one loop per
operator (not a timer per resource, which would need a finalizer) reads their progress every
``--progress-seconds`` and writes ``status.progress`` through the one status writer, without Events.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from functools import partial

from . import decisions as d
from . import status, tracking
from .peering import Replica
from .settings import OperatorSettings


@dataclass
class _Tracked:
    uid: str
    run_id: str | None = None


class ProgressTracker:
    """The TrainingRuns whose pods train now, keyed by (namespace, name); thread-safe."""

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], _Tracked] = {}
        self._lock = threading.Lock()

    def track(self, namespace: str, name: str, uid: str) -> None:
        with self._lock:
            if self._runs.get((namespace, name), _Tracked("")).uid != uid:
                self._runs[(namespace, name)] = _Tracked(uid)

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._runs.pop((namespace, name), None)

    def found(self, namespace: str, name: str, run_id: str) -> None:
        with self._lock:
            if (namespace, name) in self._runs:
                self._runs[(namespace, name)].run_id = run_id

    def snapshot(self) -> list[tuple[str, str, str, str | None]]:
        with self._lock:
            return [(ns, name, t.uid, t.run_id) for (ns, name), t in self._runs.items()]


def read_once(tracker: ProgressTracker, mlflow_uri: str, logger: logging.Logger) -> None:
    """One pass: each training run's epoch progress from MLflow into its status."""
    mlflow = tracking.client(mlflow_uri)
    for namespace, name, uid, run_id in tracker.snapshot():
        try:
            run_id = run_id or tracking.find_run_id(mlflow, uid)
            if not run_id:
                continue
            tracker.found(namespace, name, run_id)
            epoch, epochs = tracking.epoch_progress(mlflow, run_id)
            status.update("trainingruns", namespace, name,
                          partial(d.training_progress, run_id=run_id, epoch=epoch, epochs=epochs), uid=uid)
        except Exception as exc:  # progress is best effort; the next pass tries again
            logger.warning(f"progress of {namespace}/{name}: {type(exc).__name__}: {exc}")


async def loop(tracker: ProgressTracker, settings: OperatorSettings, logger: logging.Logger, replica: Replica) -> None:
    """Read progress every ``settings.progress_seconds`` while this replica acts, until cancelled (at operator
    cleanup)."""
    while True:
        await asyncio.sleep(settings.progress_seconds)
        if settings.mlflow_uri and tracker.snapshot() and await asyncio.to_thread(replica.acting, logger):
            await asyncio.to_thread(read_once, tracker, settings.mlflow_uri, logger)
