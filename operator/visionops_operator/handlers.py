"""kopf entry module: the operator's settings and long-lived parts at start-up, then the handlers."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf

# Importing deployments, drift and training registers their handlers.
from . import GROUP, deployments, drift, kube, metrics, peering, progress, training
from . import conditions as c
from . import settings as operator_settings
from .persistence import MemoryDiffBaseStorage, RetryStorage

deployments.on_rollout_change(training.follow_rollout)  # a TrainingRun is done once its version is served


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    """kopf's retries under kopf.visionops.io, its last handled state in memory, no chatter as Events;
    settings parsed once; the progress loop."""
    settings.persistence.progress_storage = RetryStorage()
    settings.persistence.diffbase_storage = MemoryDiffBaseStorage(followed_kinds=(c.TRAINING_RUN, c.DRIFT_CHECK))
    settings.persistence.finalizer = f"{GROUP}/finalizer"  # only ever added for on.delete handlers: none
    settings.posting.level = logging.WARNING  # our Events are posted explicitly, one per transition
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 32  # handlers mostly wait on the API server and MLflow
    config = memo.get("settings") or operator_settings.parse([], os.environ)  # `kopf run -m ...`: env only
    memo.settings = config
    settings.peering.lifetime = max(1, round(config.peering_lifetime))  # read by each keep-alive of the replicas
    memo.progress = progress.ProgressTracker()
    # The loops below run beside kopf's handlers, which kopf pauses on a standby replica: they ask this first.
    memo.replica = peering.Replica.of(config.peering, settings.peering.priority, config.namespaces,
                                      config.all_namespaces)
    metrics.serve(config.metrics_port)
    await asyncio.to_thread(kube.warm_up)  # before the first event, not during it
    memo.progress_loop = asyncio.create_task(progress.loop(memo.progress, config, logger, memo.replica))
    memo.drift_gauges_loop = asyncio.create_task(drift.gauges_loop(memo.replica, logger))
    memo.deployments = deployments.Deployments()  # its loop starts with the first ModelDeployment seen
    logger.info(f"visionops operator configuration: {config.public()}")


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Stop the progress, deployment and drift gauge loops."""
    for key in ("progress_loop", "deployment_loop", "drift_gauges_loop"):
        task = memo.get(key)
        if task:
            task.cancel()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: its ServiceAccount; elsewhere: ``$KUBECONFIG`` as it is at login time."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
