"""The contract between the planes (visionops.contract) and the one Job runner (visionops.job_runner): fast."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from argparse import ArgumentParser, Namespace
from pathlib import Path

import pytest

from visionops import contract
from visionops.contract import TERMINATION_MESSAGE_LIMIT, ContractError, DriftResult, DriftStatus, TrainingResult
from visionops.job_runner import Attempt, FlagError, JobCli, one_line

ROOT = Path(__file__).resolve().parents[1]

TRAINED = {
    "run_id": "abc", "experiment_id": "1", "artifact_uri": "mlflow-artifacts:/1/abc/artifacts",
    "model_uri": "runs:/abc/model", "metrics": {"map50": 0.5, "map50_95": 0.3, "precision": 0.6, "recall": 0.4},
    "per_class_ap50": {"casting/inclusoes": 0.5}, "dataset_digest": "sha256:" + "0" * 64,
    "init_from": {"source": "models:/det@production", "version": "3"}, "epochs_completed": 2,
    "seconds_per_epoch": 1.5, "phase_seconds": {"train": 3.0}, "duration_s": 4.2,
}
CHECKED = {
    "status": "drift", "drift_detected": True, "drift_share": 0.75, "drift_share_threshold": 0.5,
    "group_shares": {"image": 0.75}, "drifted_features": ["brightness_mean"], "reference_count": 30,
    "current_count": 30, "unreadable_images": 0,
    "feature_scores": {"brightness_mean": {"score": 0.01, "method": "ks", "threshold": 0.05, "drifted": True,
                                           "group": "image"}},
    "reference_from": {"version": "3", "dataset_digest": "sha256:1"}, "run_id": "d1", "report_uri": "r.html",
}


# ---------------------------------------------------------------- documents

@pytest.mark.parametrize(("kind", "fields"), [(TrainingResult, TRAINED), (DriftResult, CHECKED)])
def test_documents_round_trip(kind, fields):
    document = kind.from_dict(fields, strict=True)
    assert document.to_dict() == fields
    assert kind.parse(document.to_json()) == document
    assert json.loads(document.to_json()) == fields


def test_a_failure_is_the_error_and_the_run_it_started():
    assert json.loads(TrainingResult.failure("boom").to_json()) == {"error": "boom"}
    assert TrainingResult.failure("boom", "r1").to_dict() == {"error": "boom", "run_id": "r1"}
    assert json.loads(DriftResult.failure("no images").to_json()) == {"status": "failed", "error": "no images"}
    assert TrainingResult.failure("x").failed and not TrainingResult(run_id="r").failed


def test_what_older_jobs_wrote_still_parses():
    # the training job's first format wrote nulls; the operator rebuilt one from MLflow with the run status
    old = TrainingResult.parse('{"run_id":"r","metrics":{"map50":1},"init_from":null,"seconds_per_epoch":null,'
                               '"history":[1,2],"truncated":true}')
    assert (old.run_id, old.metrics, old.init_from, old.truncated) == ("r", {"map50": 1.0}, None, True)
    assert TrainingResult.parse('{"run_id":"r","status":"FINISHED","metrics":{}}').status == "FINISHED"
    skipped = DriftResult.parse('{"status":"skipped","reason":"3 < 20 images","drift_detected":false,'
                                '"reference_count":3,"current_count":30,"report_uri":null}')
    assert skipped.status == DriftStatus.SKIPPED and skipped.report_uri is None
    assert DriftResult.parse('{"status":"failed","error":"gone"}').error == "gone"


@pytest.mark.parametrize(("kind", "text", "message"), [
    (TrainingResult, "not json", "TrainingResult is not JSON"),
    (TrainingResult, "[1]", "TrainingResult must be a JSON object, got list"),
    (TrainingResult, "{}", "TrainingResult needs run_id (a trained model) or error (a failed Job)"),
    (TrainingResult, '{"run_id":"r","metrics":{"map50":"high"}}', "metrics must be an object of numbers"),
    (TrainingResult, '{"run_id":"r","epochs_completed":-1}', "epochs_completed must be an integer >= 0, got -1"),
    (TrainingResult, '{"run_id":"r","duration_s":true}', "duration_s must be a number, got True"),
    (DriftResult, '{"drift_detected":true}', "DriftResult needs a status"),
    (DriftResult, '{"status":"maybe"}', "status must be one of drift, no_drift, skipped, failed, got 'maybe'"),
    (DriftResult, '{"status":"failed"}', "status failed needs an error"),
    (DriftResult, '{"status":"drift","error":"x"}', "status drift cannot carry an error"),
    (DriftResult, '{"status":"drift","drift_detected":true}', "needs reference_count, current_count"),
    (DriftResult, '{"status":"no_drift","drift_detected":true,"reference_count":1,"current_count":1}',
     "status no_drift contradicts drift_detected True"),
    (DriftResult, '{"status":"failed","error":"x","drifted_features":"brightness"}',
     "drifted_features must be a list of strings"),
])
def test_a_broken_document_says_what_is_wrong(kind, text, message):
    with pytest.raises(ContractError, match="^" + kind.__name__) as raised:
        kind.parse(text)
    assert message in str(raised.value)


def test_a_job_writing_its_own_document_cannot_add_fields_but_a_reader_ignores_them():
    with pytest.raises(ContractError, match="TrainingResult has no field colour"):
        TrainingResult.from_dict({"run_id": "r", "colour": "red"}, strict=True)
    assert TrainingResult.from_dict({"run_id": "r", "colour": "red"}).to_dict() == {"run_id": "r"}


def test_bulky_fields_go_first_to_fit_the_termination_message():
    many = {f"product/class-{i:04d}": 0.5 for i in range(400)}
    document = TrainingResult.from_dict({**TRAINED, "per_class_ap50": many})
    assert len(_dumps(document.to_dict()).encode()) > TERMINATION_MESSAGE_LIMIT
    text = document.to_json()
    kept = json.loads(text)
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT and kept["truncated"] is True
    assert "per_class_ap50" not in kept and kept["phase_seconds"] == TRAINED["phase_seconds"]  # only what it must
    assert TrainingResult.parse(text).metrics == TRAINED["metrics"]
    scores = {f"feature_{i:04d}": {"score": 0.1, "method": "ks", "drifted": False} for i in range(200)}
    drift = json.loads(DriftResult.from_dict({**CHECKED, "feature_scores": scores}).to_json())
    assert "feature_scores" not in drift and drift["reference_from"] == CHECKED["reference_from"]
    assert json.loads(document.to_json(limit=None))["per_class_ap50"] == many  # no limit: all of it (MLflow)


def test_what_cannot_fit_is_refused_not_cut():
    with pytest.raises(ContractError, match="over the 4096-byte limit even without"):
        TrainingResult(run_id="r", error="x" * 5000).to_json()


def _dumps(data: dict) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


# ---------------------------------------------------------------- the runner

def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="visionops toy")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--fail", default="")
    return parser


def _work(args: Namespace, attempt: Attempt) -> dict:
    attempt.run_id = "r1"
    if args.fail:
        raise KeyError(args.fail) if args.fail == "key" else ValueError(f"bad {args.fail}\nsecond line")
    return {"run_id": "r1", "epochs_completed": args.count}


def _no_zero(args: Namespace) -> None:
    if args.count == 0:
        raise FlagError("--count 0 makes no sense")


TOY = JobCli(_parser, _work, TrainingResult, prefix="toy: ", check=_no_zero)


def _run(tmp_path: Path, capsys, *argv: str) -> tuple[int, list[str], dict | None, str]:
    result_file = tmp_path / "result.json"
    code = TOY.main([*argv, "--result-file", str(result_file)])
    out, err = capsys.readouterr()
    return code, err.strip().splitlines(), json.loads(result_file.read_text()) if result_file.exists() else None, out


def test_success_writes_the_document_and_prints_it(tmp_path, capsys):
    code, err, result, out = _run(tmp_path, capsys, "--count", "3")
    assert (code, err, result) == (0, [], {"run_id": "r1", "epochs_completed": 3})
    assert json.loads(out) == result


def test_a_failure_is_one_line_exit_1_and_the_error_in_the_result(tmp_path, capsys):
    code, err, result, out = _run(tmp_path, capsys, "--fail", "input")
    assert (code, err, out) == (1, ["toy: error: bad input second line"], "")
    assert result == {"error": "bad input second line", "run_id": "r1"}
    code, err, result, _ = _run(tmp_path, capsys, "--fail", "key")
    assert (code, err[-1], result["error"]) == (1, "toy: error: KeyError: 'key'", "KeyError: 'key'")
    assert one_line(RuntimeError("x" * 5000)) == "x" * 1000


@pytest.mark.parametrize(("argv", "message"), [
    (["--count", "many"], "toy: error: argument --count: invalid int value: 'many' (see visionops toy --help)"),
    (["--count", "0"], "toy: error: --count 0 makes no sense (see visionops toy --help)"),
    (["--colour", "red"], "toy: error: unrecognized arguments: --colour red (see visionops toy --help)"),
])
def test_bad_flags_are_one_line_and_exit_2_without_a_result(tmp_path, capsys, argv, message):
    code, err, result, _ = _run(tmp_path, capsys, *argv)
    assert (code, err, result) == (2, [message], None)


def test_help_exits_0(capsys):
    assert TOY.main(["--help"]) == 0 and "--result-file" in capsys.readouterr().out


# A Job process that the kubelet stops: its own process (the test's pytest process never gets the signal, whose
# delivery would reach every library thread of the whole suite).
SIGTERMED_JOB = """
import json, os, signal, sys, time
from argparse import ArgumentParser
from visionops.contract import TrainingResult
from visionops.job_runner import JobCli

def work(args, attempt):
    attempt.run_id = "r1"
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    return {"run_id": "r1"}

previous = signal.getsignal(signal.SIGTERM)
started = time.monotonic()
code = JobCli(lambda: ArgumentParser(prog="visionops toy"), work, TrainingResult, prefix="toy: ").main(
    ["--result-file", sys.argv[1]])
print(json.dumps({"code": code, "seconds": time.monotonic() - started,
                  "restored": signal.getsignal(signal.SIGTERM) == previous}))
"""


def test_sigterm_ends_the_work_with_a_terminated_result_and_143(tmp_path):
    result_file = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "-c", SIGTERMED_JOB, str(result_file)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["code"] == 143 and seen["seconds"] < 4 and seen["restored"]  # the work stopped at once
    assert proc.stderr.strip().splitlines()[-1] == "toy: error: terminated by SIGTERM"
    assert json.loads(result_file.read_text()) == {"error": "terminated by SIGTERM", "run_id": "r1"}


def test_both_job_clis_use_the_runner(capsys):
    from drift_job import cli as drift_cli
    from training_job import cli as training_cli

    assert training_cli.main(["--epochs", "many"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: argument --epochs: invalid int value: 'many' (see visionops train --help)")
    assert drift_cli.main(["--current", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("drift: error: one of the arguments --reference --reference-from-model is required")
    assert {training_cli.JOB.document, drift_cli.JOB.document} == {TrainingResult, DriftResult}


# ---------------------------------------------------------------- no re-typed names

# The modules that once typed these names themselves; each must import them from visionops.contract.
GUARDED = [
    "visionops/registry.py", "visionops/lineage.py", "visionops/job_runner.py",
    "predictor/artifacts.py", "training_job/cli.py", "training_job/job.py",
    "training_job/metrics.py", "training_job/epoch_logger.py", "training_job/warm_start.py",
    "visionops/model_versions.py", "visionops/production.py",
    *(f"console/visionops_console/{name}.py" for name in ("kube", "tracking")),
    *(f"operator/visionops_operator/{name}.py" for name in ("jobs", "tracking", "drift", "builders", "decisions")),
    *(str(path.relative_to(ROOT)) for path in sorted((ROOT / "drift_job").glob("*.py"))),
]
# Literals another change owns (the registry's body reads the metric by name).
ALLOWED = {("visionops/registry.py", contract.MAP50),
           ("console/visionops_console/kube.py", contract.MAP50)}  # the CRD's field map50Threshold


def _distinctive_names() -> dict[str, str]:
    """Contract values that cannot be an ordinary word: tag names, env names, file names, metric keys."""
    names = {value: name for name, value in vars(contract).items()
             if name.isupper() and isinstance(value, str) and not value.isalpha()}
    assert {"MLFLOW_TRACKING_URI", "best.onnx", "visionops.io/", "map50", "ap50/"} <= set(names)
    return names


def _literals(tree: ast.Module) -> list[tuple[int, str]]:
    """String constants that are not docstrings (f-string parts included)."""
    docstrings = {id(body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and (body := node.body) and isinstance(body[0], ast.Expr)
                  and isinstance(body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_contract_names_are_not_retyped():
    names = _distinctive_names()
    found = []
    for module in GUARDED:
        for line, text in _literals(ast.parse((ROOT / module).read_text())):
            for value, name in names.items():
                if value in text and (module, value) not in ALLOWED:
                    found.append(f"{module}:{line}: {text!r} holds {value!r} (visionops.contract.{name})")
    assert not found, "\n".join(found)
