"""``visionops data …`` through the top-level dispatcher."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from visionops.cli import main
from visionops.data.prepare import PreparedDataset


def test_synth_prepare_card(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, out = tmp_path / "vision", tmp_path / "prepared"
    assert main(["data", "synth", "--out", str(source), "--products", "Casting,Screw", "--seed", "3",
                 "--train-images", "4", "--val-images", "2", "--inference-images", "0", "--imgsz", "64"]) == 0
    assert capsys.readouterr().out.strip() == str(source)

    assert main(["data", "prepare", "--source", str(source), "--out", str(out), "--products", "screw"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out / "dataset.yaml")
    assert "read Screw/train: 4 images" in captured.err
    assert PreparedDataset.load(out).names == ["screw/defect"]

    assert main(["data", "card", "--dataset", str(out)]) == 0
    table = capsys.readouterr().out
    assert "screw/defect" in table and "Screw" in table and "warnings: none" in table
    assert main(["data", "card", "--dataset", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["names"] == ["screw/defect"]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["prepare", "--source", "{tmp}/nope", "--out", "{tmp}/out"], 1, "source root {tmp}/nope does not exist"),
        (["prepare", "--source", "{tmp}"], 2, "the following arguments are required: --out"),
        (["prepare", "--source", "{tmp}", "--out", "{tmp}/out", "--products", ","], 2, "--products must list"),
        (["synth", "--out", "{tmp}/s", "--products", "Bolt"], 1, "unknown VISION product 'Bolt'"),
        (["synth", "--out", "{tmp}/s", "--train-images", "0"], 2, "expected an integer >= 1, got '0'"),
        (["card", "--dataset", "{tmp}"], 1, "is not a prepared dataset"),
        (["drift-batch", "--source", "{tmp}", "--out", "{tmp}/b", "--kind", "fog"], 2, "invalid choice: 'fog'"),
        (["drift-batch", "--source", "{tmp}", "--out", "{tmp}/b", "--fraction", "0"], 2, "--fraction must be in"),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    ],
)
def test_errors_are_one_line_with_an_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    assert main(["data", *(a.format(tmp=tmp_path) for a in argv)]) == code
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert message.format(tmp=tmp_path) in captured.err
    assert not (tmp_path / "out").exists()


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "drift-batch", "--help"]) == 0
    assert "(default: brightness)" in capsys.readouterr().out


HAS_DRIFT_BATCH = importlib.util.find_spec("visionops.data.drift_batch") is not None


@pytest.mark.skipif(not HAS_DRIFT_BATCH, reason="visionops.data.drift_batch not written yet")
def test_drift_batch_uses_the_config_defaults(
    synth_vision_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "batch"
    assert main(["data", "drift-batch", "--source", str(synth_vision_root / "Screw" / "val"), "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "brightness"
    assert result["severity"] == 0.5 and result["fraction"] == 0.3
    assert (out / "metadata.json").is_file()
