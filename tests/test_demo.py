"""``visionops demo`` (the README's main command) end to end, offline: no process it starts phones home, and with
its default recipe the model it trains finds the synthetic defects (val map50 >= 0.6, its sample answered right).

The demo, its MLflow server and workers, the training and drift jobs and the predictor run under the
network audit of tests/fixtures/netaudit.py with every telemetry switch and CI marker removed from the
environment: whatever stays quiet does so because of ``visionops.telemetry``. A control shows that the
audit sees MLflow's usage telemetry when those switches are missing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from fixtures.netaudit import NetAudit

pytestmark = [pytest.mark.slow]

_NO_PROXY = {name: "" for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}


DEMO_MAP50 = 0.6  # what the demo's model must reach on the val split (issue 21)


def test_demo_trains_a_model_that_finds_its_defects_and_makes_no_outside_attempt(tmp_path: Path) -> None:
    audit = NetAudit.create(tmp_path / "audit")
    proc = audit.run([sys.executable, "-m", "visionops.cli", "demo", "--workdir", str(tmp_path / "demo")],
                     cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[7/7] summary" in proc.stdout
    metrics = json.loads((tmp_path / "demo" / "train-result.json").read_text())["metrics"]
    assert metrics["map50"] >= DEMO_MAP50, proc.stdout[-3000:]
    assert "PROMOTED" in proc.stdout and "  correct: " in proc.stdout, proc.stdout[-3000:]
    drawn = tmp_path / "demo" / "prediction.png"
    assert drawn.is_file() and f"drawn: {drawn}" in proc.stdout, proc.stdout[-2000:]
    assert audit.attempts() == []


@pytest.mark.mlflow
def test_control_mlflow_phones_home_without_the_switches(tmp_path: Path, mlflow_uri: str) -> None:
    """Without visionops imported first, MLflow's first tracked call looks up its telemetry host: the audit
    sees it (so the empty log of the demo means something)."""
    audit = NetAudit.create(tmp_path / "audit")
    code = ("import sys, time, uuid, mlflow; mlflow.set_tracking_uri(sys.argv[1]); "
            "mlflow.create_experiment(uuid.uuid4().hex); time.sleep(3)")
    proc = audit.run([sys.executable, "-c", code, mlflow_uri], cwd=tmp_path, timeout=300, extra_env=_NO_PROXY)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert any("mlflow-telemetry" in line for line in audit.attempts()), audit.attempts()
