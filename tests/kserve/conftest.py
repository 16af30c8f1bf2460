"""The real KServe controller (``hack/kserve.sh``) running against the session's control plane.

``kserve_controller`` (module) builds or reuses the manager binary, runs ``hack/kserve.sh up`` against
``kube_cluster`` (Standard deployment mode, webhooks on loopback) and ``hack/kserve.sh down`` after the
module, checking that no manager process is left. Module scope, because KServe's admission webhooks change
how the apiserver answers for every InferenceService: other tests of the session see a cluster without them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixtures.cluster import REPO, KubeCluster

KSERVE_SCRIPT = REPO / "hack" / "kserve.sh"
# Developer settings that must not leak into the test's controller (it picks its own free ports).
_KSERVE_ENV = ("KSERVE_WEBHOOK_PORT", "KSERVE_METRICS_PORT", "KSERVE_PROBE_PORT", "VISIONOPS_KSERVE_BIN")


@dataclass(frozen=True)
class KServeController:
    """Handle on a running KServe manager: its state dir (pid, log, certificates) and binary."""

    state_dir: Path
    binary: Path

    @property
    def log(self) -> Path:
        return self.state_dir / "manager.log"

    def pid(self) -> int:
        return int((self.state_dir / "manager.pid").read_text().split()[0])  # "PID STARTTIME" (hack/lib/proc.sh)


def _script(*args: str, env: dict[str, str], timeout: float) -> str:
    """Run hack/kserve.sh; return stdout, or fail with its stderr (it carries the manager's log tail)."""
    proc = subprocess.run([str(KSERVE_SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"hack/kserve.sh {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-6000:]}")
    return proc.stdout


@pytest.fixture(scope="module")
def kserve_controller(
    kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KServeController]:
    """The KServe manager in Standard mode for one test module; stopped and uninstalled after it."""
    env = {k: v for k, v in os.environ.items() if k not in _KSERVE_ENV}
    state_dir = tmp_path_factory.mktemp("kserve")
    env |= {
        "KUBECONFIG": str(kube_cluster.kubeconfig),
        "VISIONOPS_K8S_BIN": str(kube_cluster.bin_dir),
        "VISIONOPS_KSERVE_DIR": str(state_dir),
    }
    binary = Path(_script("build", env=env, timeout=3600).strip().splitlines()[-1])  # fast when cached
    # The CRDs other tests share are installed the fixture's way first, so `down` (which removes only
    # what `up` created) leaves them for the rest of the session.
    kube_cluster.install_kserve_crds("full")
    try:
        _script("up", env=env, timeout=300)
        controller = KServeController(state_dir=state_dir, binary=binary)
        pid = controller.pid()
        yield controller
    finally:
        _script("down", env=env, timeout=300)
    if Path(f"/proc/{pid}").exists():
        raise RuntimeError(f"hack/kserve.sh down left the manager running (pid {pid})")
