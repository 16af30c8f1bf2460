"""Where kopf keeps its state (visionops_operator.persistence), against kopf's own storages: no cluster."""

from __future__ import annotations

import copy

import kopf
from visionops_operator.persistence import RETRY_PREFIX, MemoryDiffBaseStorage, RetryStorage

FOLLOWED = ("TrainingRun", "DriftCheck")
EXTRA = [("status", "jobCompletionTime"), ("metadata", "annotations", "visionops.io/promote")]


def training_run(uid: str = "u1", **status: str) -> kopf.Body:
    return kopf.Body({
        "apiVersion": "visionops.io/v1alpha1", "kind": "TrainingRun",
        "metadata": {
            "name": "tr", "namespace": "ns", "uid": uid, "resourceVersion": "7", "generation": 1,
            "labels": {"team": "a"},
            "annotations": {"visionops.io/promote": "true", "kubectl.kubernetes.io/last-applied-configuration": "{}",
                            f"{RETRY_PREFIX}/start": '{"retries": 1}'},
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:dataset": {}}}}] * 20,
        },
        "spec": {"dataset": {"pvc": "datasets", "path": "vision"}, "hyperparameters": {"epochs": 3}},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}], **status},
    })


def test_the_essence_is_kopfs_own_without_copying_what_it_drops():
    body = training_run(jobCompletionTime="2026-01-01T00:00:00Z")
    ours = MemoryDiffBaseStorage(followed_kinds=FOLLOWED).build(body=body, extra_fields=EXTRA)
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix="visionops.io").build(body=body, extra_fields=EXTRA)
    assert ours == kopfs
    assert ours["status"] == {"jobCompletionTime": "2026-01-01T00:00:00Z"}
    assert ours["metadata"]["annotations"]["visionops.io/promote"] == "true"


def test_kinds_no_handler_follows_get_an_empty_essence():
    job = kopf.Body({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"uid": "j1"}, "spec": {"template": {}}})
    storage = MemoryDiffBaseStorage(followed_kinds=FOLLOWED)
    assert storage.build(body=job, extra_fields=[]) == {}
    storage.store(body=job, patch=kopf.Patch(), essence=kopf.BodyEssence())
    assert storage.fetch(body=job) is None


def test_essences_are_kept_in_memory_by_uid_and_nothing_is_patched():
    storage = MemoryDiffBaseStorage(followed_kinds=FOLLOWED)
    body = training_run()
    assert storage.fetch(body=body) is None  # new (or after a restart): kopf calls the create handler
    essence = storage.build(body=body, extra_fields=EXTRA)
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=essence)
    assert not patch
    assert storage.fetch(body=body) == essence
    assert storage.fetch(body=training_run(uid="other")) is None


def test_the_least_recently_seen_essence_goes_first():
    storage = MemoryDiffBaseStorage(followed_kinds=FOLLOWED, capacity=2)
    first, second, third = (training_run(uid=uid) for uid in ("a", "b", "c"))
    for body in (first, second):
        storage.store(body=body, patch=kopf.Patch(), essence=storage.build(body=body))
    storage.fetch(body=first)  # seen again: kept
    storage.store(body=third, patch=kopf.Patch(), essence=storage.build(body=third))
    assert storage.fetch(body=second) is None
    assert storage.fetch(body=first) is not None and storage.fetch(body=third) is not None


def test_retries_live_under_kopfs_own_prefix_and_leave_ours_in_the_compared_state():
    storage = RetryStorage()
    body = training_run()
    patch = kopf.Patch()
    storage.store(key="start", record={"retries": 2}, body=body, patch=patch)
    assert set(patch["metadata"]["annotations"]) == {f"{RETRY_PREFIX}/start"}  # no "kopf-managed" marker
    storage.purge(key="start", body=kopf.Body({"metadata": {}}), patch=patch)
    assert not patch.get("metadata", {}).get("annotations")
    essence = storage.clear(essence=copy.deepcopy(MemoryDiffBaseStorage(followed_kinds=FOLLOWED).build(
        body=body, extra_fields=EXTRA)))
    assert essence["metadata"]["annotations"] == {"visionops.io/promote": "true"}
