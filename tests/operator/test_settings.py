"""Operator settings: flags win over environment variables, bad values stop it with a clear message."""

from __future__ import annotations

import pytest
from visionops_operator import __main__ as entry
from visionops_operator.settings import OperatorSettings, parse


def test_defaults_without_flags_or_environment():
    assert parse([], {}) == OperatorSettings()


def test_environment_fallbacks_and_flags_winning():
    env = {"VISIONOPS_MLFLOW_URI": "http://env:5000", "VISIONOPS_PROGRESS_SECONDS": "3",
           "VISIONOPS_WATCH_NAMESPACES": "a, b", "VISIONOPS_METRICS_PORT": "0", "VISIONOPS_ALL_NAMESPACES": "false"}
    config = parse([], env)
    assert config.mlflow_uri == "http://env:5000" and config.progress_seconds == 3.0
    assert config.namespaces == ("a", "b") and config.metrics_port == 0 and not config.all_namespaces
    flagged = parse(["--mlflow-uri", "http://flag:5000", "-n", "c", "--progress-seconds", "7"], env)
    assert flagged.mlflow_uri == "http://flag:5000" and flagged.namespaces == ("c",)
    assert flagged.progress_seconds == 7.0


@pytest.mark.parametrize(("argv", "env", "names"), [
    ([], {"VISIONOPS_PROGRESS_SECONDS": "soon"}, "VISIONOPS_PROGRESS_SECONDS"),
    ([], {"VISIONOPS_METRICS_PORT": "70000"}, "VISIONOPS_METRICS_PORT"),
    ([], {"VISIONOPS_IMAGE_PULL_POLICY": "Sometimes"}, "VISIONOPS_IMAGE_PULL_POLICY"),
    (["--mlflow-retry-seconds", "0"], {}, "--mlflow-retry-seconds"),
])
def test_bad_values_exit_2_naming_the_setting(argv, env, names, capsys):
    with pytest.raises(SystemExit) as stop:
        parse(argv, env)
    assert stop.value.code == 2
    assert names in capsys.readouterr().err


def test_the_entry_point_needs_a_scope(capsys, monkeypatch):
    for name in ("VISIONOPS_WATCH_NAMESPACES", "VISIONOPS_ALL_NAMESPACES"):
        monkeypatch.delenv(name, raising=False)
    assert entry.main([]) == 2
    assert "--namespace" in capsys.readouterr().err
