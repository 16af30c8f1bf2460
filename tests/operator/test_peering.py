"""Two operator replicas (``python -m visionops_operator --peering``, as the chart runs operator.replicas: 2) against
the real control plane: one acts, the other waits; the active one is killed (SIGKILL: no goodbye) in the middle of
a burst of TrainingRuns; the other takes over within the peering lifetime, and every run ends with exactly one Job.
Before it, kopf's rule as the operator's own loops read it (visionops_operator.peering.acts)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from k8s import create, custom, jobs, wait_until
from visionops_operator.peering import acts

from visionops.local_mlflow import free_port

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

REPO = Path(__file__).resolve().parents[2]
PEERING = "visionops-operator"
LIFETIME = 4  # seconds: how long the standby waits for a replica that died silently
RUNS = 200
SPEC = {"dataset": {"pvc": "datasets", "path": "vision"}, "hyperparameters": {"epochs": 1, "imgsz": 64},
        "model": {"name": "peering-detector"}}


def record(priority: int, seen_ago: float = 1, lifetime: int = 10) -> dict:
    return {"priority": priority, "lifetime": lifetime, "lastseen": (NOW - timedelta(seconds=seen_ago)).isoformat()}


def test_a_replica_acts_unless_a_live_peer_has_its_priority_or_more() -> None:
    assert acts({"a": record(9), "b": record(5)}, "a", 9, NOW)
    assert not acts({"a": record(9), "b": record(5)}, "b", 5, NOW)
    assert not acts({"a": record(5), "b": record(5)}, "a", 5, NOW), "equal priorities: kopf pauses both"
    assert acts({"a": record(9, seen_ago=11), "b": record(5)}, "b", 5, NOW), "a's record expired: it is dead"
    assert acts({}, "a", 5, NOW) and acts({"a": record(5)}, "a", 5, NOW)


def test_without_an_identity_a_replica_is_the_peer_of_its_priority() -> None:
    assert acts({"x": record(9), "y": record(5)}, "", 9, NOW)
    assert not acts({"x": record(9), "y": record(5)}, "", 5, NOW)


def replica(name: str, namespace: str, kubeconfig: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "POD_ID": name, "VISIONOPS_METRICS_PORT": "0",
           "VISIONOPS_PROBE_PREDICTORS": "false"}
    cmd = [sys.executable, "-m", "visionops_operator", "--namespace", namespace, "--peering", PEERING,
           "--peering-lifetime", str(LIFETIME), "--liveness", f"http://127.0.0.1:{free_port()}/healthz"]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def peers(namespace: str) -> dict[str, dict]:
    body = custom().get_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", PEERING)
    return body.get("status") or {}


def paused(log: str) -> bool:
    """Whether kopf's last word on the peering in ``log`` leaves the replica paused (it starts so)."""
    said = [line for line in log.splitlines() if "Pausing operations" in line or "Resuming operations" in line]
    return not said or "Pausing operations" in said[-1]


def job_counts(namespace: str) -> Counter:
    """TrainingRun name -> how many Jobs it has."""
    label = "visionops.io/training-run"
    return Counter(job.metadata.labels.get(label) for job in jobs(namespace, label))


@pytest.mark.cluster
@pytest.mark.slow
def test_two_replicas_one_acts_and_the_other_takes_over_when_it_dies(visionops_crds, kube_cluster, k8s_namespace,
                                                                     tmp_path: Path) -> None:
    ns = k8s_namespace
    kube_cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/kopfpeerings.kopf.dev")
    kube_cluster.apply(json.dumps({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                                   "metadata": {"name": PEERING}}), ns)
    logs = {name: tmp_path / f"{name}.log" for name in ("replica-a", "replica-b")}
    procs = {name: replica(name, ns, kube_cluster.kubeconfig, log) for name, log in logs.items()}
    try:
        def both() -> dict | None:
            found = peers(ns)
            return found if set(found) == set(procs) else None

        found = wait_until(both, 60, 0.5, "both replicas in the peering record")
        active = max(found, key=lambda name: found[name]["priority"])
        standby = next(name for name in procs if name != active)
        # kopf starts each replica paused; one that sees no peer yet resumes, and pauses again as soon as it sees a
        # higher one: wait for that to settle before the burst
        wait_until(lambda: "Resuming operations" in logs[active].read_text(), 30, 0.5, "the active one to resume")
        wait_until(lambda: paused(logs[standby].read_text()), 30, 0.2, "the standby to be paused")

        for i in range(RUNS // 3):
            create(ns, "trainingruns", f"burst-{i:03d}", SPEC)
        wait_until(lambda: len(job_counts(ns)) >= 10, 120, 0.5, "the active replica to create Jobs")
        standby_log = logs[standby].read_text()
        assert paused(standby_log) and "Handler" not in standby_log, \
            f"the standby acted while the active one lived:\n{standby_log[-2000:]}"
        procs[active].send_signal(signal.SIGKILL)  # no goodbye: the standby waits for its record to expire
        killed = time.monotonic()
        for i in range(RUNS // 3, RUNS):
            create(ns, "trainingruns", f"burst-{i:03d}", SPEC)
        wait_until(lambda: "Resuming operations" in logs[standby].read_text(), 60, 0.2, "the standby to take over")
        took_over = time.monotonic() - killed
        def all_jobs() -> Counter | None:
            counts = job_counts(ns)
            return counts if len(counts) == RUNS else None

        done = wait_until(all_jobs, 300, 1, f"a Job for each of the {RUNS} TrainingRuns")
        all_done = time.monotonic() - killed
        assert set(done.values()) == {1}, {run: n for run, n in done.items() if n != 1}
        print(f"\n[peering] took over {took_over:.1f} s after SIGKILL (lifetime {LIFETIME} s); all {RUNS} runs had "
              f"their one Job {all_done:.1f} s after it")
        assert took_over <= LIFETIME + 15
        assert "Traceback" not in logs[standby].read_text()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        kube_cluster.kubectl("delete", "trainingruns", "--all", "-n", ns, "--wait=false", check=False)
