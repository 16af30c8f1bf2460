"""The console in a real browser: Debian's chromium driven by Playwright (the ``browser`` fixture of
:mod:`fixtures.browser`), against console processes (``python -m visionops_console``) that talk to the real local
control plane, a real MLflow server, the real operator (a process) and real Job pods played by
:class:`fixtures.pod_runner.PodRunner`.

Every page a test opens fails the test on a browser console error, an uncaught page error, a failed request or an
HTTP error answer, unless the test declared that exact answer beforehand
(:meth:`fixtures.browser.BrowserGuard.expect`).
Screenshots land in ``.visionops/screenshots/``; ``make pictures`` runs these tests with the demo's training recipe
and writes them to ``docs/console/`` (the README shows them).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from consoletools import DATASET_PVC, REPO
from fixtures.cluster import KubeCluster

from visionops.local_mlflow import free_port

# -- the world the console looks at --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def volume(synth_vision_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset volume: the synthetic VISION tree, a tree with problems, and a brightness-drifted batch."""
    from fixtures.datasets import ann, write_split

    from visionops.data.drift_batch import simulate

    root = tmp_path_factory.mktemp("console-volume")
    shutil.copytree(synth_vision_root, root / "vision")
    broken = root / "vision-broken"
    shutil.copytree(synth_vision_root / "Screw", broken / "Screw")
    cats = [{"id": 1, "name": "crack"}]
    write_split(broken, "Ring", "train", [{"file_name": "r0.png", "size": (64, 48), "json_size": (60, 40)}], cats,
                [ann(1, 0, 1, bbox=[50, 30, 40, 40])])
    (broken / "Ring" / "val").mkdir(parents=True)
    (broken / "Ring" / "val" / "_annotations.coco.json").write_text('{"images": [')  # not JSON
    simulate(root / "vision", root / "batches" / "bright", kind="brightness", severity=1.0, fraction=1.0, seed=3)
    return root


@pytest.fixture(scope="module")
def console_namespace(kube_cluster: KubeCluster, visionops_crds: list[str]) -> Iterator[str]:
    """A namespace for the module's TrainingRuns and DriftChecks (deleted afterwards)."""
    name = f"console-{uuid.uuid4().hex[:6]}"
    kube_cluster.kubectl("create", "namespace", name)
    kube_cluster.kubectl("label", "namespace", name, "visionops.io/test=true")
    deadline = time.monotonic() + 60
    while kube_cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode:
        assert time.monotonic() < deadline, "no default ServiceAccount"
        time.sleep(0.3)
    try:
        yield name
    finally:
        kube_cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def operator_process(kube_cluster: KubeCluster, console_namespace: str, mlflow_uri: str,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen]:
    """The real operator (``python -m visionops_operator``) watching the module's namespace. No node runs pods
    here: the tests play the predictor pods a rollout waits for (Ready pod objects), so the operator takes a
    Ready pod of the new version as serving it instead of asking its /metrics."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISIONOPS_")}
    env |= {"KUBECONFIG": str(kube_cluster.kubeconfig), "VISIONOPS_MLFLOW_URI": mlflow_uri,
            "VISIONOPS_WATCH_NAMESPACES": console_namespace, "VISIONOPS_PROGRESS_SECONDS": "1",
            "VISIONOPS_MLFLOW_RETRY_SECONDS": "2", "VISIONOPS_METRICS_PORT": "0",
            "VISIONOPS_DEPLOY_SYNC_SECONDS": "1", "VISIONOPS_ROLLOUT_CHECK_SECONDS": "1",
            "VISIONOPS_PROBE_PREDICTORS": "false",
            "VISIONOPS_LIVENESS": f"http://127.0.0.1:{free_port()}/healthz"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "visionops_operator"], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        time.sleep(2)
        assert proc.poll() is None, log.read_text()[-3000:]
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def pods(kube_cluster: KubeCluster, console_namespace: str, volume: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Plays the kubelet for the module's namespace: Job pods run for real with the volume as their PVC."""
    from fixtures.pod_runner import PodRunner

    return PodRunner(namespace=console_namespace, claims={DATASET_PVC: volume},
                     workdir=tmp_path_factory.mktemp("console-pods"))
