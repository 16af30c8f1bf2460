"""The predictor refuses to start, with one line, when uvicorn or KServe lack a private part its limits use."""

from __future__ import annotations

import pytest
from uvicorn.protocols.http import httptools_impl

from predictor import internals
from predictor.cli import main


def test_the_pinned_versions_have_every_private_part():
    assert internals.missing() == []
    assert internals.check() is None


def test_a_renamed_parser_callback_or_state_is_named(monkeypatch):
    monkeypatch.delattr(httptools_impl.HttpToolsProtocol, "send_400_response")
    source = "def __init__(self):\n    self.message_event = None\n"  # a cycle without its other state
    monkeypatch.setattr(internals.inspect, "getsource", lambda fn, real=internals.inspect.getsource:
                        source if fn is httptools_impl.RequestResponseCycle.__init__ else real(fn))
    assert internals.missing() == ["uvicorn HttpToolsProtocol.send_400_response",
                                   "uvicorn RequestResponseCycle.response_started",
                                   "uvicorn RequestResponseCycle.response_complete",
                                   "uvicorn RequestResponseCycle.disconnected"]


def test_the_cli_refuses_to_start_with_one_line(monkeypatch, capsys: pytest.CaptureFixture[str], tmp_path):
    monkeypatch.delattr(httptools_impl.HttpToolsProtocol, "on_header")
    assert main(["--model-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lack uvicorn HttpToolsProtocol.on_header" in err[0] and "pyproject.toml" in err[0]
