"""The console's pure parts and its HTTP surface without a cluster (Starlette's test client on the real app, the
real dataset code on real files): settings, request bodies, apiserver rejections, CSRF, uploads, charts, data."""

from __future__ import annotations

import io
import json
import shutil
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

with warnings.catch_warnings():  # starlette 1.x nags about httpx in its test client; it works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient
from visionops_console import app as console_app
from visionops_console import charts, core, formatting, kube, predict, security, settings, signin, tracking
from visionops_console.datasets import DatasetVolume, scan, vision_roots
from visionops_console.steps import deploy, training

# -- settings ----------------------------------------------------------------------------------------------


def test_settings_flags_win_over_the_environment_and_bad_values_exit_2(tmp_path: Path) -> None:
    env = {"VISIONOPS_MLFLOW_URI": "http://mlflow:5000", "VISIONOPS_CONSOLE_READ_ONLY": "true",
           "VISIONOPS_CONSOLE_PORT": "9000", "KUBECONFIG": "/k"}
    parsed = settings.parse(["--port", "8123", "--datasets", str(tmp_path)], env)
    assert (parsed.port, parsed.mlflow_uri, parsed.read_only, parsed.kubeconfig) == (8123, "http://mlflow:5000",
                                                                                     True, "/k")
    assert parsed.datasets == str(tmp_path)
    assert settings.parse(["--max-upload-mb", "2.5"], {}).max_upload_bytes == int(2.5 * 1024 * 1024)
    assert settings.parse([], {"MLFLOW_TRACKING_URI": "http://m"}).mlflow_uri == "http://m"
    assert settings.parse([], {}).sign_in == "none" and settings.parse(["--sign-in", "token"], {}).sign_in == "token"
    assert settings.parse([], {"VISIONOPS_CONSOLE_SIGN_IN": "token"}).sign_in == "token"
    for bad in (["--port", "70000"], ["--datasets", str(tmp_path / "missing")], ["--max-upload-mb", "0"],
                ["--sign-in", "password"]):
        with pytest.raises(SystemExit) as exc:
            settings.parse(bad, {})
        assert exc.value.code == 2


# -- Kubernetes request bodies and answers -------------------------------------------------------------------


def test_training_run_body_leaves_empty_fields_to_the_crd_and_passes_values_as_typed() -> None:
    body = kube.training_run_body({
        "name": " my-run ", "datasetPath": "vision", "products": ["Casting", "Screw"], "epochs": "12",
        "batch": "", "imgsz": "640", "lr0": "0.005", "patience": "ten", "cpu": "2", "memory": "4Gi", "gpu": "",
        "mode": "manual", "map50Threshold": "0.3", "inferenceService": "", "modelName": "detector",
    }, pvc="datasets")
    assert body["metadata"] == {"name": "my-run", "labels": {kube.CREATED_BY_LABEL: kube.CREATED_BY}}
    assert body["spec"] == {
        "dataset": {"pvc": "datasets", "path": "vision", "products": ["Casting", "Screw"]},
        "hyperparameters": {"epochs": 12, "imgsz": 640, "lr0": 0.005, "patience": "ten"},
        "resources": {"cpu": 2, "memory": "4Gi"}, "model": {"name": "detector"},
        "promotion": {"mode": "manual", "map50Threshold": 0.3},
    }
    minimal = kube.training_run_body({}, pvc="datasets")
    assert minimal["metadata"]["generateName"] == "console-" and minimal["spec"] == {"dataset": {"pvc": "datasets"}}
    assert kube.training_run_body({"cpu": "500m", "epochs": "1e400"}, pvc="d")["spec"] == {
        "dataset": {"pvc": "d"}, "hyperparameters": {"epochs": "1e400"}, "resources": {"cpu": "500m"}}


TOO_MANY = "Invalid value: 5000: spec.hyperparameters.epochs in body should be less than or equal to 1000"


def test_rejection_keys_messages_by_field_without_list_indices() -> None:
    body = json.dumps({"kind": "Status", "message": 'TrainingRun.visionops.io "x" is invalid: [...]', "details": {
        "causes": [
            {"reason": "FieldValueInvalid", "field": "spec.hyperparameters.epochs", "message": TOO_MANY},
            {"reason": "FieldValueDuplicate", "field": "spec.dataset.products[1]", "message": 'Duplicate value: "A"'},
        ]}})
    found = kube.rejection(422, body)
    assert found.status == 422 and found.message.startswith("TrainingRun.visionops.io")
    assert found.fields == {"spec.hyperparameters.epochs": [TOO_MANY],
                            "spec.dataset.products": ['Duplicate value: "A"']}
    taken = kube.rejection(409, json.dumps({"message": 'trainingruns.visionops.io "x" already exists'}))
    assert taken.fields == {"metadata.name": ['trainingruns.visionops.io "x" already exists']}
    assert kube.rejection(500, b"<html>oops", "Internal Server Error").message == "Internal Server Error"


def test_check_now_job_copies_the_checks_own_template_without_controller_labels() -> None:
    check = {"metadata": {"name": "nightly", "uid": "u-1"}}
    template = {
        "metadata": {"labels": {"visionops.io/drift-check": "nightly", "job-name": "nightly-check-g1",
                                "app.kubernetes.io/component": "drift-check"},
                     "annotations": {"visionops.io/generation": "1", "other": "x"}},
        "spec": {"backoffLimit": 0, "selector": {"matchLabels": {"controller-uid": "c"}},
                 "template": {"metadata": {"labels": {"controller-uid": "c", "visionops.io/drift-check": "nightly"}},
                              "spec": {"containers": [{"name": "drift"}]}}},
    }
    job = kube.check_now_job(check, template, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert job["metadata"]["name"] == "nightly-now-20260102030405"
    assert job["metadata"]["labels"] == {"visionops.io/drift-check": "nightly",
                                         "app.kubernetes.io/component": "drift-check"}
    assert job["metadata"]["annotations"] == {"visionops.io/generation": "1",
                                              kube.ANNOTATION_TRIGGERED_BY: kube.CREATED_BY}
    assert job["metadata"]["ownerReferences"][0] | {"uid": ""} == {
        "apiVersion": "visionops.io/v1alpha1", "kind": "DriftCheck", "name": "nightly", "uid": "", "controller": True}
    assert "selector" not in job["spec"] and job["spec"]["template"]["metadata"]["labels"] == {
        "visionops.io/drift-check": "nightly"}
    assert template["spec"]["selector"], "the template is not modified"
    long_name = kube.check_now_job({"metadata": {"name": "x" * 63, "uid": "u"}}, template, datetime.now(UTC))
    assert len(long_name["metadata"]["name"]) <= 63


def test_served_version_reads_the_model_uri_and_the_version_annotation() -> None:
    isvc = {"metadata": {"annotations": {kube.ANNOTATION_MODEL_VERSION: "4"}}, "spec": {"predictor": {"containers": [
        {"name": "kserve-container", "env": [{"name": kube.MODEL_URI_ENV, "value": "models:/m/4"}]}]}}}
    assert kube.served_version(isvc) == {"modelUri": "models:/m/4", "version": "4"}
    assert kube.served_version(None) == {}


def test_no_cluster_is_a_sentence_not_a_crash(tmp_path: Path) -> None:
    cluster = kube.Cluster(kubeconfig=str(tmp_path / "missing"), timeout=2)
    reason = cluster.unavailable()
    assert reason and "no usable Kubernetes configuration" in reason
    with pytest.raises(kube.ClusterUnavailable):
        cluster.list_training_runs()
    assert cluster.namespace == "default"


# -- CSRF ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "headers", "cookie", "refused"), [
    ("GET", {}, None, False),
    ("POST", {"host": "c:8090", "origin": "http://c:8090", "x-csrf-token": "t" * 20}, "t" * 20, False),
    ("POST", {"host": "c:8090", "referer": "http://c:8090/training", "x-csrf-token": "t" * 20}, "t" * 20, False),
    ("POST", {"host": "c:8090", "origin": "http://evil:8090", "x-csrf-token": "t" * 20}, "t" * 20, True),
    ("POST", {"host": "c:8090", "origin": "null", "x-csrf-token": "t" * 20}, "t" * 20, True),
    ("POST", {"host": "c:8090", "x-csrf-token": "t" * 20}, "t" * 20, True),
    ("POST", {"host": "c:8090", "origin": "http://c:8090"}, "t" * 20, True),
    ("POST", {"host": "c:8090", "origin": "http://c:8090", "x-csrf-token": "u" * 20}, "t" * 20, True),
    ("DELETE", {"host": "c:8090", "origin": "http://c:8090", "x-csrf-token": "t" * 20}, None, True),
])
def test_check_request(method: str, headers: dict, cookie: str | None, refused: bool) -> None:
    assert (security.check_request(method, headers, cookie) is not None) is refused


def test_host_allowed() -> None:
    allowed = ("localhost", "127.0.0.1", "[::1]", "console.ns.svc:8090")
    for host in ("localhost:8090", "LOCALHOST", "127.0.0.1:1", "[::1]:8090", "console.ns.svc:8090"):
        assert security.host_allowed(host, allowed), host
    for host in ("evil.example", "evil.example:8090", "console.ns.svc:9999", "", None):
        assert not security.host_allowed(host, allowed), host
    assert security.host_allowed("anything", ("*",))
    assert settings.parse(["--allowed-hosts", "a, b:1"], {}).allowed_hosts == ("a", "b:1")


# -- uploads -------------------------------------------------------------------------------------------------


def png(size: tuple[int, int] = (32, 24)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_check_upload_says_what_is_wrong() -> None:
    image = predict.check_upload(png(), "a.png", 10_000, 1_000_000)
    assert (image.format, image.width, image.height) == ("PNG", 32, 24)
    cases = [(b"", 10_000, 400, "is empty"), (b"x" * 20_000, 10_000, 413, "more than the 9.8 KB"),
             (b"GIF89a not really", 10_000, 415, "not an image the console can read"),
             (png((2000, 2000)), 10**6, 413, "more than 1,000,000")]
    for data, max_bytes, status, words in cases:
        with pytest.raises(predict.UploadError) as exc:
            predict.check_upload(data, "up.png", max_bytes, 1_000_000)
        assert exc.value.status == status and words in str(exc.value), str(exc.value)
    gif = io.BytesIO()
    Image.new("P", (4, 4)).save(gif, format="GIF")
    with pytest.raises(predict.UploadError, match="a GIF image; send JPEG"):
        predict.check_upload(gif.getvalue(), "g.gif", 10_000, 1_000_000)


def test_parse_prediction_keeps_well_formed_boxes() -> None:
    answer = {"predictions": [{"detections": [
        {"class_name": "casting/inclusoes", "confidence": 0.9, "bbox": [1, 2, 3, 4]},
        {"class_name": "bad", "confidence": 0.5, "bbox": [1, 2]}], "image_size": {"width": 5, "height": 6},
        "inference_time_ms": 12.5}]}
    parsed = predict.parse_prediction(answer)
    assert parsed["detections"] == [
        {"class_name": "casting/inclusoes", "confidence": 0.9, "bbox": [1.0, 2.0, 3.0, 4.0]}]
    with pytest.raises(predict.PredictorError):
        predict.parse_prediction({"error": "x"})


def test_predictor_that_does_not_answer_is_a_504() -> None:
    from visionops.local_mlflow import free_port

    image = predict.check_upload(png(), "a.png", 10_000, 1_000_000)
    with pytest.raises(predict.PredictorError) as exc:
        predict.predict(f"http://127.0.0.1:{free_port()}", "m", image, timeout=2)
    assert exc.value.status == 504 and "does not answer" in str(exc.value)


# -- charts, formatting, tracking helpers ----------------------------------------------------------------------


def test_bar_charts() -> None:
    chart = charts.class_distribution([
        {"name": "b/x", "instances": {"total": 3}}, {"name": "a/y", "instances": {"total": 42}},
        {"name": "a/z", "instances": {"total": 0}}], {"a/y": "#ff0000"})
    assert [b.label for b in chart.bars] == ["a/y", "b/x", "a/z"]
    assert chart.scale_max == 50 and chart.bars[0].width == pytest.approx(charts.BAR_W * 42 / 50)
    assert chart.bars[0].colour == "#ff0000" and chart.bars[2].width == 0
    bands = charts.ap50_bands([{"class": "p/c", "ap50": 0.55, "band": "fair"}])
    assert bands.bars[0].text == "55.0 %" and [label for _, label in bands.guides] == ["40 %", "70 %", "100 %"]
    assert [charts.nice_max(v) for v in (0, 0.7, 3, 42, 120)] == [1.0, 1.0, 5, 50, 200]


def test_formatting() -> None:
    assert formatting.fmt_pct(0.4567) == "45.7 %" and formatting.fmt_pct(None) == formatting.DASH
    assert formatting.fmt_duration(3725) == "1h 02m 05s" and formatting.fmt_duration(65) == "1m 05s"
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert formatting.fmt_ago("2026-01-01T11:00:00Z", now) == "1 h ago"
    assert formatting.fmt_ago(None, now) == formatting.DASH
    assert tracking.order_plots(["z.png", "BoxPR_curve.png", "results.png"]) == ["results.png", "BoxPR_curve.png",
                                                                                  "z.png"]
    assert tracking.history_series({"a": [(1, 0.5)], "b": []}, ["a", "b"]) == [{"name": "a", "points": [[1, 0.5]]}]
    assert not tracking.valid_run_id("../etc") and tracking.valid_run_id("0123456789abcdef0123456789abcdef")


def test_form_hints_come_from_the_published_schema() -> None:
    schema = {"properties": {"hyperparameters": {"properties": {"epochs": {
        "type": "integer", "minimum": 1, "maximum": 50, "default": 7, "description": "Number of epochs."}}}}}
    hints = training.form_fields(schema)
    assert hints["epochs"]["range"] == f"1{formatting.DASH}50" and hints["epochs"]["default"] == 7
    assert hints["imgsz"]["range"] == f"32{formatting.DASH}2048, step 32"  # the CRD's own values without a schema
    assert hints["schema_live"]["value"] is True and training.form_fields(None)["schema_live"]["value"] is False


# -- the dataset volume --------------------------------------------------------------------------------------


def test_scan_lists_every_problem_prepare_would_meet(synth_vision_root: Path, tmp_path: Path) -> None:
    from fixtures.datasets import ann, write_split

    volume = tmp_path / "volume"
    shutil.copytree(synth_vision_root / "Screw", volume / "bad" / "Screw")
    write_split(volume / "bad", "Ring", "train", [{"file_name": "r.png", "size": (40, 30)}], [{"id": 1, "name": "c"}],
                [ann(1, 0, 1, bbox=[1, 1, float("nan"), 3])])
    shutil.copytree(synth_vision_root, volume / "team" / "vision")
    (volume / ".hidden").mkdir()
    assert vision_roots(volume) == ["bad", "team/vision"]
    index = scan(volume, "bad")
    errors = {(p.product, p.split, p.kind) for p in index.errors}
    assert ("Ring", "train", "unreadable") in errors and ("Ring", "val", "missing_split") in errors
    assert index.products == ["Ring", "Screw"] and index.class_names == ["screw/defect"]
    assert all(str(volume) not in p.message for p in index.problems), "paths are shown relative to the volume"
    good = DatasetVolume(volume).index("team/vision")
    assert not good.problems and good.card["totals"]["images"] == 90
    with pytest.raises(KeyError):
        DatasetVolume(volume).index("../etc")


def test_pages_and_uploads_without_cluster_or_mlflow(synth_vision_root: Path, tmp_path: Path) -> None:
    shutil.copytree(synth_vision_root, tmp_path / "vol" / "vision")
    config = settings.ConsoleSettings(datasets=str(tmp_path / "vol"), kubeconfig=str(tmp_path / "none"),
                                      max_upload_bytes=50_000, predictor_url="http://127.0.0.1:9",
                                      allowed_hosts=("console.test",))
    with TestClient(console_app.create_app(config), base_url="http://console.test") as client:
        for path in ("/data", "/datacard", "/training", "/evaluation", "/analysis", "/deploy", "/drift"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "Training needs a Kubernetes cluster" in client.get("/training").text
        samples = client.get("/api/samples", params={"ds": "vision", "n": 5, "seed": 1}).json()
        assert len(samples["items"]) == 5
        tile = client.get(samples["items"][0]["tile"])
        assert tile.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(tile.content)).width == 320
        assert client.get("/img/sample", params={"ds": "vision", "key": "../../etc/passwd"}).status_code == 404
        assert client.get("/mlflow/0123456789abcdef/artifact/../secret.png").status_code == 404

        token = client.cookies.get(security.COOKIE)
        headers = {"Origin": "http://console.test", "X-CSRF-Token": token}
        not_image = client.post("/api/predict", files={"image": ("x.png", b"hello", "image/png")}, headers=headers)
        assert not_image.status_code == 415 and "not an image" in not_image.json()["message"]
        big = client.post("/api/predict", files={"image": ("x.png", b"0" * 200_000, "image/png")}, headers=headers)
        assert big.status_code == 413 and "more than the 48.8 KB" in big.json()["message"]
        down = client.post("/api/predict", files={"image": ("x.png", png(), "image/png")}, headers=headers)
        assert down.status_code == 504 and "does not answer" in down.json()["message"]
        no_cluster = client.post("/api/trainingruns", json={}, headers=headers)
        assert no_cluster.status_code == 503 and "need a Kubernetes cluster" in no_cluster.json()["message"]
        forged = client.post("/api/trainingruns", json={}, headers={"Origin": "http://evil.test"})
        assert forged.status_code == 403
        assert client.get("/healthz").json() == {"ok": True}
        rebound = client.get("/data", headers={"Host": "evil.test"})  # DNS rebinding: another name, same address
        assert rebound.status_code == 421 and "evil.test" in rebound.json()["message"]
        assert client.get("/healthz", headers={"Host": "10.1.2.3:8090"}).status_code == 200  # kubelet probes


# -- the Deploy step: ModelDeployments, "Set production" forms ---------------------------------------------------


def model_deployment(version: str = "2", **status: object) -> dict:
    return {"metadata": {"name": "predictor", "namespace": "ns", "generation": 3},
            "spec": {"model": {"name": "detector"}, "inferenceService": "predictor", "version": version},
            "status": status}


SERVED = [{"version": "1", "time": "2026-01-01T10:00:00Z", "movedBy": "mlflow-alias", "outcome": "Served"},
          {"version": "2", "time": "2026-01-02T10:00:00Z", "movedBy": "visionops-cli", "cause": "why",
           "outcome": "Served"}]


def test_deployment_row_says_what_serves_what_is_requested_and_what_a_rollback_goes_back_to() -> None:
    serving = deploy.deployment_row(model_deployment(
        phase="Serving", desiredVersion="2", servingVersion="2", previousVersion="1", history=SERVED,
        rollout={"version": "2", "outcome": "Succeeded", "seconds": 12.34}))
    assert (serving["phase"], serving["phaseLabel"], serving["phaseClass"]) == ("Serving", "Serving", "phase-serving")
    assert (serving["requested"], serving["rollbackTo"], serving["active"]) == ("", "1", False)
    assert serving["alert"]["kind"] == "" and serving["rollout"] == "version 2 \u00b7 Succeeded in 12.3 s"
    assert [h["version"] for h in serving["history"]] == ["2", "1"], "newest first"
    assert serving["history"][0] == {"time": "2026-01-02 10:00:00 UTC", "version": "2", "movedBy": "visionops-cli",
                                     "cause": "why", "outcome": "Served"}

    requested = deploy.deployment_row(model_deployment(
        "3", phase="Serving", desiredVersion="2", servingVersion="2", previousVersion="1", history=SERVED))
    assert requested["requested"] == "3" and requested["active"] and requested["alert"]["kind"] == "note"
    assert requested["alert"]["title"] == "Version 3 requested."

    rolling = deploy.deployment_row(model_deployment(
        "3", phase="RollingOut", desiredVersion="3", servingVersion="2", message="rolling out version 3 (4/300 s)",
        rollout={"version": "3", "outcome": "InProgress", "startTime": "2026-01-03T10:00:00Z"}))
    assert rolling["active"] and rolling["alert"] == {"kind": "note", "title": "Rolling out version 3.",
                                                      "text": "rolling out version 3 (4/300 s)"}
    assert rolling["rollout"].startswith("version 3 \u00b7 InProgress, started ")
    labels = [r["askedLabel"] for r in (serving, requested, rolling)]
    assert labels == ["Serving", "Requested", "Rolling out"], "what the button of the version asked for says"

    failed = deploy.deployment_row(model_deployment(
        "2", phase="RolloutFailed", desiredVersion="2", servingVersion="2", previousVersion="1",
        message="version 3 did not become ready within 300 s; production went back to version 2"))
    assert not failed["active"] and failed["alert"]["kind"] == "error"
    assert "did not become ready" in failed["alert"]["text"] and failed["rollbackTo"] == "1"

    back = deploy.deployment_row(model_deployment(
        "1", phase="Serving", desiredVersion="2", servingVersion="2", previousVersion="1"))
    assert back["rollbackTo"] == "", "no rollback button for the version already asked for"
    fresh = deploy.deployment_row(model_deployment(""))
    assert (fresh["phaseLabel"], fresh["alert"]["kind"], fresh["rollbackTo"]) == ("No status", "warn", "")
    rows = [dict(fresh, name="a", inferenceService="other"), dict(fresh, name="b")]
    assert deploy.primary_deployment(rows, "detector", "predictor")["name"] == "b"
    assert deploy.primary_deployment(rows, "detector", "elsewhere")["name"] == "a"
    assert deploy.primary_deployment(rows, "another-model", "predictor") is None


def test_notices_are_shown_once() -> None:
    notices = core.Notices(limit=2)
    first = notices.put("good", "Done.", "text")
    assert notices.pop(first) == {"kind": "good", "title": "Done.", "text": "text"} and notices.pop(first) is None
    keys = [notices.put("error", str(i), "") for i in range(3)]
    assert notices.pop(keys[0]) is None and notices.pop(keys[2])["title"] == "2"
    assert notices.pop("made-up") is None


def test_a_plain_form_may_carry_the_csrf_token_as_a_field() -> None:
    headers = {"host": "c:8090", "origin": "http://c:8090"}
    assert security.check_request("POST", headers, "t" * 20, form_token="t" * 20) is None
    assert security.check_request("POST", headers, "t" * 20, form_token="u" * 20) is not None
    assert security.check_request("POST", {"host": "c:8090", "origin": "http://evil"}, "t" * 20, "t" * 20)


def test_set_production_without_a_cluster_changes_nothing_and_says_why(tmp_path: Path) -> None:
    config = settings.ConsoleSettings(kubeconfig=str(tmp_path / "none"), allowed_hosts=("console.test",))
    with TestClient(console_app.create_app(config), base_url="http://console.test") as client:
        page = client.get("/deploy")
        assert "Set production / roll back</strong> need a Kubernetes cluster" in page.text
        assert 'class="set-production"' not in page.text
        token = client.cookies.get(security.COOKIE)
        form = {"csrf_token": token, "deployment": "predictor", "model": "detector", "action": "set", "version": "3"}
        origin = {"Origin": "http://console.test"}
        answer = client.post("/deploy/production", data=form, headers=origin, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/deploy?model=detector&notice=")
        shown = client.get(answer.headers["location"]).text
        assert 'id="deploy-notice"' in shown and "Production was not changed." in shown
        assert "Setting production needs a Kubernetes cluster" in shown
        assert 'id="deploy-notice"' not in client.get(answer.headers["location"]).text, "shown once"
        forged = client.post("/deploy/production", data={**form, "csrf_token": "x" * 20}, headers=origin,
                             follow_redirects=False)
        assert forged.status_code == 403 and "CSRF" in forged.json()["message"]
        huge = client.post("/deploy/production", data={**form, "pad": "x" * 20_000}, headers=origin,
                           follow_redirects=False)
        assert huge.status_code == 413
        polled = client.get("/api/modeldeployments").json()
        assert polled["ok"] is False and polled["deployments"] == [] and polled["message"]


def test_sessions_expire_are_bounded_and_go_back_only_to_this_console() -> None:
    class Conn:
        closed = 0

        def close(self) -> None:
            Conn.closed += 1

    sessions = signin.Sessions(ttl=60, limit=2)
    first = sessions.open("alice", ("qe",), Conn())
    second = sessions.open("bob", (), Conn())
    assert sessions.get(first).user == "alice" and sessions.get("made-up") is None and sessions.get(None) is None
    sessions.open("carol", (), Conn())  # the oldest goes
    assert sessions.get(first) is None and sessions.get(second).user == "bob" and Conn.closed == 1
    sessions.close(second)
    assert sessions.get(second) is None and Conn.closed == 2
    expired = signin.Sessions(ttl=0)
    assert expired.get(expired.open("dave", (), Conn())) is None
    assert signin.local_path("/deploy?model=x") == "/deploy?model=x"
    for foreign in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "deploy"):
        assert signin.local_path(foreign) == "/data"


def test_time_chart_draws_the_window_marks_rollouts_and_reads_as_a_person_does() -> None:
    from visionops_console.steps.production import rollout_markers

    start, end = 1_800_000_000.0, 1_800_003_600.0
    chart = charts.time_chart([("scratch", [(start, 10.0), (start + 1800, 40.0), (end + 60, 99.0)]),
                               ("dent", [(start + 600, 1234.5)]), ("empty", [])],
                              start, end, markers=[(start + 900, "v3"), (start - 10, "v2")], unit="")
    assert [line.label for line in chart.lines] == ["dent", "scratch"], "the busiest first; the empty left out"
    scratch = chart.lines[1]
    assert scratch.path.startswith(f"M{chart.left:.1f},") and scratch.path.count("L") == 1, "outside: left out"
    assert scratch.last == "40.0" and chart.lines[0].last == "1,234"
    assert [label for _, label, _ in chart.markers] == ["v3"] and chart.left < chart.markers[0][0] < chart.right
    # rollouts a minute apart in a 6-hour window: their labels take turns over three rows, not one smudge
    close = charts.time_chart([], start, start + 6 * 3600, markers=[(start + 60 * k, f"v{k}") for k in range(1, 6)])
    assert [row for _, _, row in close.markers] == [0, 1, 2, 0, 1]
    assert charts.label_rows([100.0, 200.0, 210.0, 400.0]) == [0, 0, 1, 0]
    assert chart.y_ticks[-1][1] == "2,000" and chart.x_ticks[0][1] == "08:00"
    history = [{"status": {"history": [{"time": "2027-01-15T08:15:00Z", "version": "3"}, {"time": "", "version": "4"},
                                       {"time": "2027-01-15T08:05:00Z", "version": "2"}]}}, {"status": {}}]
    assert [label for _, label in rollout_markers(history)] == ["v2", "v3"]
    from visionops_console.monitoring import rate_window

    assert rate_window(7.5) == "60s" and rate_window(720) == "1440s"
