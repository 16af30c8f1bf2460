"""The alerting rules (charts/visionops/rules/visionops.rules.yaml): valid, unit-tested by promtool (every alert
firing and quiet), each with a runbook in docs/alerts.md, and every metric they read exported by our code."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "charts" / "visionops" / "rules" / "visionops.rules.yaml"
UNIT_TESTS = Path(__file__).with_name("visionops.rules.test.yaml")
RUNBOOKS = REPO / "docs" / "alerts.md"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="no promtool: as root `hack/node-deps.sh monitoring` "
                                                             "installs Debian's prometheus package, which has it")


def alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@needs_promtool
def test_the_rule_file_is_valid():
    proc = promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in proc.stdout


@needs_promtool
def test_promtool_unit_tests_pass():
    proc = promtool("test", "rules", str(UNIT_TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_is_tested_firing_and_quiet():
    cases = [case for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for alert in alerts():
        mine = [case for case in cases if case["alertname"] == alert["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{alert['alert']} is never tested firing"
        assert any(not case["exp_alerts"] for case in mine), f"{alert['alert']} is never tested quiet"


def test_every_alert_has_a_runbook():
    docs = RUNBOOKS.read_text()
    for alert in alerts():
        name, notes = alert["alert"], alert["annotations"]
        assert {"summary", "description", "runbook"} <= set(notes), name
        assert notes["runbook"] == f"docs/alerts.md#{name.lower()}"
        section = re.search(rf"^## {name}\n(.*?)(?=^## |\Z)", docs, re.M | re.S)
        assert section, f"docs/alerts.md has no section '## {name}'"
        for part in ("**What it means.**", "**What to look at.**", "**What to do.**"):
            assert part in section.group(1), f"the runbook of {name} lacks {part}"
        assert alert["labels"]["severity"] in ("critical", "warning")


def test_every_metric_the_alerts_read_is_exported():
    import visionops_operator.metrics  # noqa: F401  (and the operator's)
    from prometheus_client import REGISTRY

    import predictor.metrics  # noqa: F401  (registers the predictor's metrics)

    exported = set()
    for family in REGISTRY.collect():  # the sample names, as Prometheus sees them
        exported |= {family.name, f"{family.name}_total", f"{family.name}_bucket"}
    for alert in alerts():
        for name in re.findall(r"\bvisionops_[a-z_]+", alert["expr"]):
            assert name in exported, f"{alert['alert']} reads {name}, which nothing exports"


@needs_promtool
def test_the_operators_exposition_passes_promtool_check_metrics():
    """What the operator's /metrics serves (its process's default registry, one series of each family), linted."""
    import sys

    code = ("from visionops_operator import metrics as m; from prometheus_client import generate_latest; "
            "m.DRIFT_SHARE.labels('ns', 'dc').set(0.5); m.DRIFT_DETECTED.labels('ns', 'dc').set(1); "
            "m.RETRAININGS.labels('ns', 'dc').inc(); m.TRAINING_RUNS.labels('ns', 'Failed').inc(); "
            "m.PROMOTIONS.labels('ns', 'Promoted').inc(); m.ROLLOUTS.labels('ns', 'md', 'Failed').inc(); "
            "import sys; sys.stdout.write(generate_latest().decode())")
    exposition = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "visionops_rollouts_finished_total" in exposition.stdout
    lint = subprocess.run([PROMTOOL, "check", "metrics"], input=exposition.stdout, capture_output=True, text=True,
                          timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr
